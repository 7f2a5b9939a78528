import { Gauge, Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { Queue } from '../ports/queue.js';
import type { Storage } from '../ports/storage.js';

/**
 * Ticket gauges cover only the most recent events (by sales opening), so that the number of series stays
 * bounded however many events a database holds: at most TICKET_EVENTS × their ticket types (≤ 50 each).
 */
export const TICKET_EVENTS = 10;
/** Scrapes closer together than this reuse the last reading instead of querying again. */
const FRESH_MS = 1_000;

interface Reading {
  depth: number;
  oldestAgeSeconds: number;
  deadLetters: number;
  tickets: Array<{ event: string; ticketType: string; available: number; sold: number }>;
}

/**
 * Gauges of the state all processes share: the queue, the stock, the dead letters. Summing them across
 * processes would be wrong, so they are not in the per-process registry: the web server that is scraped
 * reads them once, at scrape time, from the database and the queue. If that read fails, they are left
 * out of this scrape (and the failure logged); the rest of /metrics is still served.
 */
export function sharedStateRegistry(storage: Storage, queue: Queue, logger: Logger): Registry {
  const registry = new Registry();
  let last: { at: number; reading: Promise<Reading | null> } | null = null;

  function reading(): Promise<Reading | null> {
    if (last && Date.now() - last.at < FRESH_MS) return last.reading;
    const next = read(storage, queue).catch((error: unknown) => {
      logger.warn({ err: error }, 'metrics: cannot read the queue and stock gauges');
      return null;
    });
    last = { at: Date.now(), reading: next };
    return next;
  }

  const registers = [registry];
  new Gauge({
    name: 'onsale_queue_depth',
    help: 'Purchases accepted and not yet allocated (dead letters not counted)',
    registers,
    async collect() {
      const r = await reading();
      if (r) this.set(r.depth);
      else this.reset();
    },
  });
  new Gauge({
    name: 'onsale_queue_oldest_age_seconds',
    help: 'Age of the oldest queued purchase (0 when the queue is empty)',
    registers,
    async collect() {
      const r = await reading();
      if (r) this.set(r.oldestAgeSeconds);
      else this.reset();
    },
  });
  new Gauge({
    name: 'onsale_dead_letters',
    help: 'Purchases in the dead-letter place, waiting for `onsale dlq replay`',
    registers,
    async collect() {
      const r = await reading();
      if (r) this.set(r.deadLetters);
      else this.reset();
    },
  });
  new Gauge({
    name: 'onsale_tickets_available',
    help: `Tickets left per ticket type, for the ${TICKET_EVENTS} most recent events`,
    labelNames: ['event', 'ticket_type'] as const,
    registers,
    async collect() {
      const r = await reading();
      this.reset();
      for (const t of r?.tickets ?? []) this.set({ event: t.event, ticket_type: t.ticketType }, t.available);
    },
  });
  new Gauge({
    name: 'onsale_tickets_sold',
    help: `Tickets sold per ticket type, for the ${TICKET_EVENTS} most recent events`,
    labelNames: ['event', 'ticket_type'] as const,
    registers,
    async collect() {
      const r = await reading();
      this.reset();
      for (const t of r?.tickets ?? []) this.set({ event: t.event, ticket_type: t.ticketType }, t.sold);
    },
  });
  return registry;
}

async function read(storage: Storage, queue: Queue): Promise<Reading> {
  const [{ depth, oldestAcceptedAt }, events] = await Promise.all([queue.depth(), storage.listEvents()]);
  const oldestAgeSeconds = oldestAcceptedAt
    ? Math.max(0, (Date.now() - Date.parse(oldestAcceptedAt)) / 1000)
    : 0;
  // Dead letters are counted over every event: a stuck purchase of an old event still needs an operator.
  const perEvent = await Promise.all(events.map((e) => queue.depthOf(e.id)));
  const deadLetters = perEvent.reduce((sum, d) => sum + d.deadLetters, 0);
  const recent = [...events]
    .sort((a, b) => (a.salesOpenAt < b.salesOpenAt ? 1 : a.salesOpenAt > b.salesOpenAt ? -1 : 0))
    .slice(0, TICKET_EVENTS);
  const tickets: Reading['tickets'] = [];
  for (const stats of await Promise.all(recent.map((e) => storage.getStats(e.id)))) {
    for (const t of stats?.ticketTypes ?? []) {
      tickets.push({ event: stats!.eventId, ticketType: t.id, available: t.available, sold: t.sold });
    }
  }
  return { depth, oldestAgeSeconds, deadLetters, tickets };
}
