import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { planCrowd, readStock, type Arrival, type PlannedRequest } from './crowd.js';
import { checkInvariants, type FinalPurchase, type SentPurchase, type Violation } from './invariants.js';
import { percentiles, type Percentiles } from './stats.js';

/** What `onsale simulate` is asked to play (see the CLI for each flag). */
export interface SimulateOptions {
  url: string;
  adminToken: string;
  /** Target this event; otherwise one is created with `ticketTypes` types sharing `tickets`. */
  eventId?: string;
  buyers: number;
  /** Fraction of buyers who send a second purchase. */
  repeat: number;
  arrival: Arrival;
  durationSec: number;
  ticketTypes: number;
  tickets: number;
  maxPerBuyer: number;
  maxQuantity: number;
  connections: number;
  followers: number;
  follow: 'poll' | 'sse';
  /** Seconds to wait, once every request is answered, for accepted purchases to become final. */
  settleSec: number;
  /** Polite retries per request on 429, 503 or a broken connection. */
  retries: number;
  seed: number;
}

/** What the live display shows; sent to `onProgress` about four times a second. */
export interface Progress {
  elapsedSec: number;
  sent: number;
  accepted: number;
  refused: number;
  /** Purchases the server still has queued (its stats), and accepted purchases not yet seen final. */
  queued: number;
  following: number;
  confirmed: number;
  rejected: number;
  requestsPerSec: number;
  ackP50Ms: number;
  ackP99Ms: number;
  ticketsLeft: number | null;
  planned: number;
  answered: number;
}

export interface SecondFigures {
  second: number;
  sent: number;
  accepted: number;
  refused: number;
  confirmed: number;
  rejected: number;
  ticketsLeft: number | null;
}

export interface SimulationReport {
  version: 1;
  url: string;
  eventId: string;
  eventName: string;
  options: Omit<SimulateOptions, 'adminToken'>;
  startedAt: string;
  durationSec: number;
  totals: {
    buyers: number;
    requests: number;
    attempts: number;
    accepted: number;
    /** Requests given up after their retries, or refused for good (4xx other than 429). */
    gaveUp: number;
    confirmed: number;
    rejected: number;
    notFinal: number;
    ticketsSold: number;
    capacity: number;
  };
  requestsPerSec: number;
  /** Answers other than an acceptance, per attempt, by error code (network_error: no answer at all). */
  refusals: Record<string, number>;
  /** Final rejections by reason. */
  rejections: Record<string, number>;
  ackLatencyMs: Percentiles;
  endToEndLatencyMs: Percentiles;
  timeToSellOutSec: number | null;
  timeline: SecondFigures[];
  stock: Array<{ id: string; name: string; capacity: number; sold: number; held: number; available: number }>;
  invariants: { ok: boolean; checked: Array<Violation['invariant']>; violations: Violation[] };
}

const FINAL = new Set(['confirmed', 'rejected', 'expired', 'cancelled']);
const REJECTION_CODES = new Set(['sold_out', 'insufficient_inventory', 'limit_exceeded']);
const INVARIANTS: Array<Violation['invariant']> = [
  'no_oversell',
  'nothing_lost',
  'no_double_effect',
  'per_buyer_limit',
  'first_come_first_served',
];

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A first-in first-out hand-over between the buyers who got a 202 and the lanes that follow purchases. */
class Handover<T> {
  private items: T[] = [];
  private head = 0;
  private waiting: Array<(item: T | undefined) => void> = [];
  private closed = false;
  push(item: T): void {
    const w = this.waiting.shift();
    if (w) w(item);
    else this.items.push(item);
  }
  close(): void {
    this.closed = true;
    for (const w of this.waiting.splice(0)) w(undefined);
  }
  next(): Promise<T | undefined> {
    if (this.head < this.items.length) return Promise.resolve(this.items[this.head++]);
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((r) => this.waiting.push(r));
  }
}

interface Accepted {
  record: SentPurchase;
  firstSentAt: number;
}

/**
 * Plays a flash sale against a running onsale (or anything speaking api.md): creates or reads the event,
 * sends the crowd on keep-alive pools, retries politely, follows every accepted purchase until it is final,
 * then checks the invariants from outside. Never throws for what the server answers; throws if it cannot
 * reach the server or read the event.
 */
export async function simulate(
  opts: SimulateOptions,
  onProgress: (p: Progress) => void = () => undefined,
): Promise<SimulationReport> {
  const origin = new URL(opts.url).origin;
  const base = new URL(opts.url).pathname.replace(/\/$/, '');
  // Two pools: long SSE streams and polls must not queue behind the crowd's purchases, nor the reverse.
  const sendPool = new Pool(origin, { connections: opts.connections, pipelining: 1 });
  const followPool = new Pool(origin, { connections: opts.followers, pipelining: 1 });
  const admin = { authorization: `Bearer ${opts.adminToken}` };
  try {
    const event = opts.eventId
      ? await readEvent(sendPool, base, opts.eventId)
      : await createEvent(sendPool, base, opts, admin);
    const plan = planCrowd({
      buyers: opts.buyers,
      repeat: opts.repeat,
      types: event.ticketTypes,
      maxQuantity: opts.maxQuantity,
      arrival: opts.arrival,
      durationMs: opts.arrival === 'burst' ? 0 : opts.durationSec * 1000,
      seed: opts.seed,
      buyerPrefix: `sim-${opts.seed}-${Date.now().toString(36)}`,
    });

    const startedAt = new Date();
    const t0 = performance.now();
    const timeline: SecondFigures[] = [];
    const bucket = (t: number): SecondFigures => {
      const second = Math.max(0, Math.floor((t - t0) / 1000));
      while (timeline.length <= second) {
        timeline.push({
          second: timeline.length,
          sent: 0,
          accepted: 0,
          refused: 0,
          confirmed: 0,
          rejected: 0,
          ticketsLeft: null,
        });
      }
      return timeline[second]!;
    };
    const c = { sent: 0, accepted: 0, refused: 0, answered: 0, gaveUp: 0, confirmed: 0, rejected: 0 };
    const refusals: Record<string, number> = {};
    const rejections: Record<string, number> = {};
    const ackLatencies: number[] = [];
    const endToEnd: number[] = [];
    const records: SentPurchase[] = [];
    const finals = new Map<string, FinalPurchase | null>();
    let ticketsLeft: number | null = null;
    let serverQueued: number | null = null;
    let soldOutAt: number | null = null;
    let syncIds = 0;

    const settle = (id: string, final: FinalPurchase | null, firstSentAt: number) => {
      finals.set(id, final);
      if (!final || !FINAL.has(final.status)) return;
      const now = performance.now();
      endToEnd.push(now - firstSentAt);
      if (final.status === 'confirmed') {
        c.confirmed++;
        bucket(now).confirmed++;
      } else {
        c.rejected++;
        bucket(now).rejected++;
        const reason = final.reason ?? final.status;
        rejections[reason] = (rejections[reason] ?? 0) + 1;
      }
    };

    // Following: lanes take accepted purchases in the order they were accepted, which is the order onsale
    // allocates them in, so a lane waits right behind the allocation front instead of polling the whole crowd.
    const handover = new Handover<Accepted>();
    let settleDeadline = Infinity;
    async function followLane(): Promise<void> {
      for (let a = await handover.next(); a; a = await handover.next()) {
        const id = a.record.purchaseId!;
        const final =
          opts.follow === 'sse'
            ? await followSse(followPool, base, id, () => settleDeadline)
            : await followPoll(followPool, base, id, () => settleDeadline);
        settle(id, final, a.firstSentAt);
      }
    }

    let nextIndex = 0;
    async function sendLane(): Promise<void> {
      while (nextIndex < plan.length) {
        const req = plan[nextIndex++]!;
        const due = t0 + req.at;
        if (due > performance.now()) await sleep(due - performance.now());
        await buy(req);
      }
    }
    async function buy(req: PlannedRequest): Promise<void> {
      const firstSentAt = performance.now();
      const body = JSON.stringify({ buyerId: req.buyerId, items: req.items });
      for (let attempt = 0; ; attempt++) {
        const sentAt = performance.now();
        c.sent++;
        bucket(sentAt).sent++;
        const answer = await post(
          sendPool,
          `${base}/api/events/${event.id}/purchases`,
          body,
          req.idempotencyKey,
        );
        const answeredAt = performance.now();
        if (answer.status !== 0) {
          c.answered++;
          ackLatencies.push(answeredAt - sentAt);
          windowLatencies.push(answeredAt - sentAt);
        }
        const record: SentPurchase = {
          buyerId: req.buyerId,
          items: req.items,
          sentAt,
          answeredAt,
          status: answer.status,
        };
        const b = answer.body as (Partial<FinalPurchase> & { error?: { code?: string } }) | undefined;
        if ((answer.status === 202 || answer.status === 200) && b?.purchaseId) {
          c.accepted++;
          bucket(answeredAt).accepted++;
          record.purchaseId = b.purchaseId;
          records.push(record);
          // A synchronous shop answers with the final purchase itself (bench/shops).
          if (b.status && FINAL.has(b.status) && Array.isArray(b.tickets)) {
            record.synchronous = true;
            settle(b.purchaseId, b as FinalPurchase, firstSentAt);
          } else handover.push({ record, firstSentAt });
          return;
        }
        const code = answer.status === 0 ? 'network_error' : (b?.error?.code ?? `http_${answer.status}`);
        if (answer.status === 409 && REJECTION_CODES.has(code)) {
          // A synchronous refusal for lack of stock or over the limit: final at once, and dated like a 202.
          const id = `sync-${++syncIds}`;
          Object.assign(record, { purchaseId: id, synchronous: true });
          records.push(record);
          settle(
            id,
            {
              purchaseId: id,
              buyerId: req.buyerId,
              status: 'rejected',
              reason: code,
              items: req.items,
              tickets: [],
            },
            firstSentAt,
          );
          return;
        }
        c.refused++;
        bucket(answeredAt).refused++;
        refusals[code] = (refusals[code] ?? 0) + 1;
        const retryable = answer.status === 429 || answer.status === 503 || answer.status === 0;
        if (!retryable || attempt >= opts.retries) {
          c.gaveUp++;
          records.push(record);
          return;
        }
        // Polite: wait what Retry-After says (plus up to 20 % so that retries do not arrive as one wave), with
        // the same Idempotency-Key, so a retry after a lost answer never makes a second purchase.
        const wait = (answer.retryAfterSec ?? Math.min(2 ** attempt * 0.1, 2)) * 1000;
        await sleep(wait * (1 + Math.random() * 0.2));
      }
    }

    // The monitor reads the exact stock a few times a second: tickets left, and when the sale sold out.
    let monitoring = true;
    const monitor = (async () => {
      while (monitoring) {
        const read = await readStats(followPool, base, event.id, admin);
        const now = performance.now();
        if (read !== null) {
          const left = read.left;
          serverQueued = read.queued;
          ticketsLeft = left;
          bucket(now).ticketsLeft = left;
          if (left === 0 && soldOutAt === null) soldOutAt = now;
        }
        await sleep(250);
      }
    })();

    let windowLatencies: number[] = [];
    let lastSent = 0;
    let lastTick = t0;
    const tick = () => {
      const now = performance.now();
      const sorted = windowLatencies.sort((x, y) => x - y);
      onProgress({
        elapsedSec: (now - t0) / 1000,
        sent: c.sent,
        accepted: c.accepted,
        refused: c.refused,
        queued: serverQueued ?? c.accepted - c.confirmed - c.rejected,
        following: c.accepted - c.confirmed - c.rejected,
        confirmed: c.confirmed,
        rejected: c.rejected,
        requestsPerSec: ((c.sent - lastSent) * 1000) / Math.max(1, now - lastTick),
        ackP50Ms: sorted[Math.floor(sorted.length * 0.5)] ?? 0,
        ackP99Ms: sorted[Math.floor(sorted.length * 0.99)] ?? 0,
        ticketsLeft,
        planned: plan.length,
        answered: c.answered,
      });
      windowLatencies = [];
      lastSent = c.sent;
      lastTick = now;
    };
    const ticker = setInterval(tick, 250);

    const followers = Promise.all(Array.from({ length: opts.followers }, followLane));
    await Promise.all(Array.from({ length: Math.min(opts.connections, plan.length) }, sendLane));
    const sendSeconds = (performance.now() - t0) / 1000;
    settleDeadline = performance.now() + opts.settleSec * 1000;
    handover.close();
    await followers;
    monitoring = false;
    await monitor;
    clearInterval(ticker);
    tick();

    const { stock } = await readStock(opts.url.replace(/\/$/, ''), event.id, opts.adminToken);
    const violations = checkInvariants({ sent: records, purchases: finals, stock });
    const notFinal = [...finals.values()].filter((p) => !p || !FINAL.has(p.status)).length;
    const ticketsSold = stock.reduce((n, s) => n + s.sold + s.held, 0);
    const durationSec = (performance.now() - t0) / 1000;
    const { adminToken: _secret, ...shown } = opts;
    return {
      version: 1,
      url: opts.url,
      eventId: event.id,
      eventName: event.name,
      options: shown,
      startedAt: startedAt.toISOString(),
      durationSec: round(durationSec),
      totals: {
        buyers: opts.buyers,
        requests: plan.length,
        attempts: c.sent,
        accepted: c.accepted,
        gaveUp: c.gaveUp,
        confirmed: c.confirmed,
        rejected: c.rejected,
        notFinal,
        ticketsSold,
        capacity: stock.reduce((n, s) => n + s.capacity, 0),
      },
      requestsPerSec: round(c.sent / Math.max(sendSeconds, 0.001)),
      refusals,
      rejections,
      ackLatencyMs: percentiles(ackLatencies),
      endToEndLatencyMs: percentiles(endToEnd),
      timeToSellOutSec: soldOutAt === null ? null : round((soldOutAt - t0) / 1000),
      timeline,
      stock: stock.map((s) => ({
        id: s.id,
        name: event.ticketTypes.find((t) => t.id === s.id)?.name ?? s.id,
        capacity: s.capacity,
        sold: s.sold,
        held: s.held,
        available: s.available,
      })),
      invariants: { ok: violations.length === 0, checked: INVARIANTS, violations },
    };
  } finally {
    await Promise.all([sendPool.destroy(), followPool.destroy()]);
  }
}

const round = (n: number) => Math.round(n * 1000) / 1000;

interface EventView {
  id: string;
  name: string;
  ticketTypes: Array<{ id: string; name: string; maxPerBuyer: number; capacity: number }>;
}

async function readEvent(pool: Pool, base: string, eventId: string): Promise<EventView> {
  const res = await pool.request({
    path: `${base}/api/events/${encodeURIComponent(eventId)}`,
    method: 'GET',
  });
  const body = await res.body.text();
  if (res.statusCode !== 200)
    throw new Error(`event ${eventId}: the server answered ${res.statusCode} ${body}`);
  return JSON.parse(body) as EventView;
}

async function createEvent(
  pool: Pool,
  base: string,
  opts: SimulateOptions,
  admin: Record<string, string>,
): Promise<EventView> {
  const each = Math.floor(opts.tickets / opts.ticketTypes);
  const names = ['General admission', 'Early entry', 'Balcony', 'Front row', 'Backstage'];
  const res = await pool.request({
    path: `${base}/api/events`,
    method: 'POST',
    headers: { 'content-type': 'application/json', ...admin },
    body: JSON.stringify({
      name: `Simulated sale ${new Date().toISOString()}`,
      ticketTypes: Array.from({ length: opts.ticketTypes }, (_, i) => ({
        name: names[i] ?? `Type ${i + 1}`,
        priceCents: 2500 * (i + 1),
        // The first type takes the remainder, so the capacities add up to --tickets.
        capacity: each + (i === 0 ? opts.tickets - each * opts.ticketTypes : 0),
        maxPerBuyer: opts.maxPerBuyer,
      })),
    }),
  });
  const body = await res.body.text();
  if (res.statusCode !== 201)
    throw new Error(`creating the event: the server answered ${res.statusCode} ${body}`);
  return JSON.parse(body) as EventView;
}

async function post(
  pool: Pool,
  path: string,
  body: string,
  idempotencyKey: string,
): Promise<{ status: number; body: unknown; retryAfterSec?: number }> {
  try {
    const res = await pool.request({
      path,
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': idempotencyKey },
      body,
    });
    const text = await res.body.text();
    const retryAfter = Number(res.headers['retry-after']);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return {
      status: res.statusCode,
      body: parsed,
      ...(Number.isFinite(retryAfter) && retryAfter >= 0 ? { retryAfterSec: retryAfter } : {}),
    };
  } catch {
    return { status: 0, body: undefined };
  }
}

/** Polls the purchase until it is final or the deadline passes; returns what was last seen (null: never found). */
async function followPoll(
  pool: Pool,
  base: string,
  id: string,
  deadline: () => number,
): Promise<FinalPurchase | null> {
  let last: FinalPurchase | null = null;
  for (let wait = 20; ; wait = Math.min(wait * 1.5, 500)) {
    try {
      const res = await pool.request({ path: `${base}/api/purchases/${id}`, method: 'GET' });
      const text = await res.body.text();
      if (res.statusCode === 200) last = JSON.parse(text) as FinalPurchase;
    } catch {
      // the server may be restarting: poll again
    }
    if ((last && FINAL.has(last.status)) || performance.now() > deadline()) return last;
    await sleep(wait);
  }
}

/** Follows the purchase's server-sent events until a final status (reconnecting if the stream ends early). */
async function followSse(
  pool: Pool,
  base: string,
  id: string,
  deadline: () => number,
): Promise<FinalPurchase | null> {
  let last: FinalPurchase | null = null;
  while (performance.now() <= deadline()) {
    try {
      const res = await pool.request({
        path: `${base}/api/purchases/${id}/events`,
        method: 'GET',
        headers: { accept: 'text/event-stream' },
      });
      if (res.statusCode !== 200) {
        // No stream for it (a server without SSE, or a purchase it does not know): poll instead.
        await res.body.dump();
        return followPoll(pool, base, id, deadline);
      }
      // A stream that stays open past the deadline (a purchase that never ends) is cut.
      const guard = setInterval(() => {
        if (performance.now() > deadline()) res.body.destroy();
      }, 250);
      let buffer = '';
      try {
        for await (const chunk of res.body) {
          buffer += (chunk as Buffer).toString();
          let end: number;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const message = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const data = message
              .split('\n')
              .filter((l) => l.startsWith('data:'))
              .map((l) => l.slice(5).trim())
              .join('\n');
            if (data) last = JSON.parse(data) as FinalPurchase;
          }
          if (last && FINAL.has(last.status)) break;
        }
      } finally {
        clearInterval(guard);
        res.body.destroy();
      }
      if (last && FINAL.has(last.status)) return last;
    } catch {
      await sleep(100);
    }
  }
  return last;
}

/** Tickets left (available or held) and purchases queued, from the event's exact stats; null if unreadable. */
async function readStats(
  pool: Pool,
  base: string,
  eventId: string,
  admin: Record<string, string>,
): Promise<{ left: number; queued: number } | null> {
  try {
    const res = await pool.request({
      path: `${base}/api/events/${eventId}/stats`,
      method: 'GET',
      headers: admin,
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) return null;
    const stats = JSON.parse(text) as {
      ticketTypes: Array<{ available: number; held: number }>;
      purchases?: { queued?: number };
    };
    return {
      left: stats.ticketTypes.reduce((n, t) => n + t.available + t.held, 0),
      queued: stats.purchases?.queued ?? 0,
    };
  } catch {
    return null;
  }
}
