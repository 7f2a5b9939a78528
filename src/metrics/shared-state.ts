import type { Logger } from 'pino';
import type { Outbox } from '../ports/outbox.js';
import type { Queue } from '../ports/queue.js';
import type { Storage } from '../ports/storage.js';

/**
 * Ticket gauges cover only the most recent events (by sales opening), so that the number of series stays
 * bounded however many events a database holds: at most TICKET_EVENTS × their ticket types (≤ 50 each).
 */
const TICKET_EVENTS = 10;
/** Scrapes closer together than this reuse the last reading instead of querying again. */
export const FRESH_MS = 1_000;

interface Reading {
  depth: number;
  oldestAgeSeconds: number;
  deadLetters: number;
  tickets: Array<{ event: string; ticketType: string; available: number; sold: number }>;
  /** Purchases waiting for held tickets to come back, per recent event. */
  waitlists: Array<{ event: string; length: number }>;
  /** The database shard of each of the recent events, when events are sharded. */
  shards: Array<{ event: string; shard: number }>;
  /** Null when this process has no outbox to read. */
  outbox: { depth: number; oldestAgeSeconds: number } | null;
}

/**
 * Gauges of the state all processes share: the queue, the stock, the dead letters. Summing them across
 * processes would be wrong, so they are not in the per-process registry: the web server that is scraped
 * reads them once, at scrape time, from the database and the queue, and writes them in the text format
 * itself. If that read fails they are left out of the scrape (a gauge of 0 would claim an empty queue)
 * and the failure is logged; the rest of /metrics is still served.
 */
export function sharedStateMetrics(
  storage: Storage,
  queue: Queue,
  logger: Logger,
  outboxes: readonly Outbox[] = [],
): () => Promise<string> {
  let last: { at: number; reading: Promise<Reading | null> } | null = null;

  function reading(): Promise<Reading | null> {
    if (last && Date.now() - last.at < FRESH_MS) return last.reading;
    const next = read(storage, queue, outboxes).catch((error: unknown) => {
      logger.warn({ err: error }, 'metrics: cannot read the queue and stock gauges');
      return null;
    });
    last = { at: Date.now(), reading: next };
    return next;
  }

  return async () => {
    const r = await reading();
    if (!r) return '';
    const tickets = (value: (t: Reading['tickets'][number]) => number) =>
      r.tickets.map(
        (t) => [`{event="${label(t.event)}",ticket_type="${label(t.ticketType)}"}`, value(t)] as const,
      );
    return [
      gauge('onsale_queue_depth', 'Purchases accepted and not yet allocated (dead letters not counted)', [
        ['', r.depth],
      ]),
      gauge(
        'onsale_queue_oldest_age_seconds',
        'Age of the oldest queued purchase (0 when the queue is empty)',
        [['', r.oldestAgeSeconds]],
      ),
      gauge('onsale_dead_letters', 'Purchases in the dead-letter place, waiting for `onsale dlq replay`', [
        ['', r.deadLetters],
      ]),
      gauge(
        'onsale_tickets_available',
        `Tickets left per ticket type, for the ${TICKET_EVENTS} most recent events`,
        tickets((t) => t.available),
      ),
      gauge(
        'onsale_tickets_sold',
        `Tickets sold per ticket type, for the ${TICKET_EVENTS} most recent events`,
        tickets((t) => t.sold),
      ),
      gauge(
        'onsale_waitlist_length',
        `Purchases waitlisted for held tickets to come back, for the ${TICKET_EVENTS} most recent events`,
        r.waitlists.map((w) => [`{event="${label(w.event)}"}`, w.length] as const),
      ),
      r.shards.length === 0
        ? ''
        : gauge(
            'onsale_event_shard',
            `The database shard (counted from 0) of each of the ${TICKET_EVENTS} most recent events`,
            r.shards.map((s) => [`{event="${label(s.event)}"}`, s.shard] as const),
          ),
      ...(r.outbox
        ? [
            gauge('onsale_outbox_depth', 'Ticket emails waiting to be sent (retries included)', [
              ['', r.outbox.depth],
            ]),
            gauge(
              'onsale_outbox_oldest_age_seconds',
              'Age of the oldest ticket email waiting to be sent (0 when none waits)',
              [['', r.outbox.oldestAgeSeconds]],
            ),
          ]
        : []),
    ].join('');
  };
}

/** One gauge family in the text exposition format. */
function gauge(name: string, help: string, samples: ReadonlyArray<readonly [string, number]>): string {
  const lines = [`# HELP ${name} ${help.replaceAll('\\', '\\\\')}`, `# TYPE ${name} gauge`];
  for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
  return `${lines.join('\n')}\n`;
}

/** The outboxes of every shard as one: their emails summed, the oldest of them. */
function together(stats: Array<{ depth: number; oldestCreatedAt: string | null }>) {
  const oldest = stats.flatMap((s) => (s.oldestCreatedAt ? [s.oldestCreatedAt] : [])).sort()[0] ?? null;
  return { depth: stats.reduce((sum, s) => sum + s.depth, 0), oldestCreatedAt: oldest };
}

/** A label value, escaped as the text format requires. */
function label(value: string): string {
  return value.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n');
}

async function read(storage: Storage, queue: Queue, outboxes: readonly Outbox[]): Promise<Reading> {
  const [{ depth, oldestAcceptedAt }, events, mail] = await Promise.all([
    queue.depth(),
    storage.listEvents(),
    outboxes.length > 0 ? Promise.all(outboxes.map((o) => o.stats())).then(together) : null,
  ]);
  const ageOf = (at: string | null) => (at ? Math.max(0, (Date.now() - Date.parse(at)) / 1000) : 0);
  const oldestAgeSeconds = ageOf(oldestAcceptedAt);
  // Dead letters are counted over every event: a stuck purchase of an old event still needs an operator.
  const perEvent = await Promise.allSettled(events.map((e) => queue.depthOf(e.id)));
  const deadLetters = perEvent.reduce(
    (sum, d) => sum + (d.status === 'fulfilled' ? d.value.deadLetters : 0),
    0,
  );
  const recent = [...events]
    .sort((a, b) => (a.salesOpenAt < b.salesOpenAt ? 1 : a.salesOpenAt > b.salesOpenAt ? -1 : 0))
    .slice(0, TICKET_EVENTS);
  const tickets: Reading['tickets'] = [];
  const shards: Reading['shards'] = [];
  const waitlists: Reading['waitlists'] = [];
  // Allsettled: with one shard down, the events of the others still get their gauges.
  const settled = await Promise.allSettled(recent.map((e) => storage.getStats(e.id)));
  for (const stats of settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []))) {
    if (stats?.shard !== undefined) shards.push({ event: stats.eventId, shard: stats.shard });
    if (stats) waitlists.push({ event: stats.eventId, length: stats.purchases.waitlisted });
    for (const t of stats?.ticketTypes ?? []) {
      tickets.push({ event: stats!.eventId, ticketType: t.id, available: t.available, sold: t.sold });
    }
  }
  const outboxReading = mail ? { depth: mail.depth, oldestAgeSeconds: ageOf(mail.oldestCreatedAt) } : null;
  return { depth, oldestAgeSeconds, deadLetters, tickets, shards, waitlists, outbox: outboxReading };
}
