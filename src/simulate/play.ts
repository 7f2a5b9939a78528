import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { requests, type RequestSpec } from '../client/index.js';
import { ANSWER_TIMEOUT_MS, type CheckoutMix } from './checkout.js';
import { followAtCheckout, type Follow, type Trail } from './checkout-follow.js';
import type { PlannedRequest } from './crowd.js';
import type { FinalPurchase, SentPurchase } from './invariants.js';

/**
 * Playing a share of the crowd: sending its requests on keep-alive pools, retrying politely, following every
 * accepted purchase until it is final. One process plays the whole crowd with it, or each child process of
 * `--processes` plays its share (child.ts); the caller merges the shares and checks the invariants once.
 */

/**
 * The simulator's clock: milliseconds since the epoch, at performance.now()'s resolution. performance.now()
 * alone counts from each process's own start; the first-come-first-served check compares the times of
 * requests sent by different processes, so every time it sees is on this shared clock.
 */
export const clock = (): number => performance.timeOrigin + performance.now();

export interface ShareOptions {
  url: string;
  eventId: string;
  /** This share's requests, sorted by due time; `at` is milliseconds after `t0`. */
  plan: readonly PlannedRequest[];
  /** The opening instant on `clock()`, the same for every share. */
  t0: number;
  connections: number;
  followers: number;
  follow: 'poll' | 'sse';
  retries: number;
  settleSec: number;
  /** Prefix of the ids given to synchronous refusals (409), unique per share. */
  syncPrefix: string;
  /** What buyers do with held purchases (events with holds); absent: they only follow. */
  checkout?: CheckoutMix;
}

export interface ShareCounts {
  sent: number;
  accepted: number;
  refused: number;
  answered: number;
  gaveUp: number;
  confirmed: number;
  rejected: number;
  /** Expired or cancelled (events with holds). */
  ended: number;
}

/** A share's counts before it has sent anything. */
export function zeroCounts(): ShareCounts {
  return { sent: 0, accepted: 0, refused: 0, answered: 0, gaveUp: 0, confirmed: 0, rejected: 0, ended: 0 };
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

/** What a share did: everything the report and the invariant checks need, times on clock(). */
export interface ShareResult {
  counts: ShareCounts;
  refusals: Record<string, number>;
  rejections: Record<string, number>;
  ackLatencies: number[];
  endToEnd: number[];
  records: SentPurchase[];
  finals: Array<[string, FinalPurchase | null]>;
  timeline: SecondFigures[];
  /** When the last request of the share was answered (or given up). */
  sendEndAt: number;
  /** CPU time (user + system) of this process from the call until sendEndAt. */
  sendCpuMs: number;
  /** What each accepted purchase went through at checkout (events with holds and a mix only). */
  trails: Array<[string, Trail]>;
  /** When a purchase was last seen confirmed, and seen final (null: none was). */
  lastConfirmedAt: number | null;
  lastFinalAt: number | null;
}

/** A share being played: live counts for the progress display, and its result once everything is final. */
export interface PlayingShare {
  counts: ShareCounts;
  /** Acknowledgement latencies since the last call (for the live p50/p99). */
  takeWindow(): number[];
  /** Resolves when every request of the share was answered or given up. */
  sent: Promise<void>;
  done: Promise<ShareResult>;
}

export const FINAL = new Set(['confirmed', 'rejected', 'expired', 'cancelled']);
const REJECTION_CODES = new Set(['sold_out', 'insufficient_inventory', 'limit_exceeded']);

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

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

/** One second's figures of a timeline that starts at t0, growing it as needed. */
export function bucketOf(timeline: SecondFigures[], t0: number, t: number): SecondFigures {
  return secondOf(timeline, Math.max(0, Math.floor((t - t0) / 1000)));
}

/** The figures of second `second` of a timeline, growing it as needed. */
export function secondOf(timeline: SecondFigures[], second: number): SecondFigures {
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
}

/** Plays `opts.plan` (see the module comment). Never throws for what the server answers. */
export function playShare(opts: ShareOptions): PlayingShare {
  const cpuAtStart = process.cpuUsage();
  const origin = new URL(opts.url).origin;
  const base = new URL(opts.url).pathname.replace(/\/$/, '');
  // Two pools: long SSE streams and polls must not queue behind the crowd's purchases, nor the reverse.
  const sendPool = new Pool(origin, { connections: opts.connections, pipelining: 1 });
  const followPool = new Pool(origin, { connections: opts.followers, pipelining: 1 });
  const { t0, plan } = opts;
  const timeline: SecondFigures[] = [];
  const bucket = (t: number) => bucketOf(timeline, t0, t);
  const c = zeroCounts();
  const refusals: Record<string, number> = {};
  const rejections: Record<string, number> = {};
  const ackLatencies: number[] = [];
  const endToEnd: number[] = [];
  const records: SentPurchase[] = [];
  const finals = new Map<string, FinalPurchase | null>();
  let windowLatencies: number[] = [];
  let syncIds = 0;
  let lastConfirmedAt: number | null = null;
  let lastFinalAt: number | null = null;

  const settle = (id: string, final: FinalPurchase | null, firstSentAt: number) => {
    finals.set(id, final);
    if (!final || !FINAL.has(final.status)) return;
    const now = clock();
    endToEnd.push(now - firstSentAt);
    lastFinalAt = now;
    if (final.status === 'confirmed') {
      lastConfirmedAt = now;
      c.confirmed++;
      bucket(now).confirmed++;
    } else if (final.status !== 'rejected') {
      c.ended++;
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
  const follow: Follow = (id, until) =>
    opts.follow === 'sse'
      ? followSse(followPool, base, id, () => settleDeadline, until)
      : followPoll(followPool, base, id, () => settleDeadline, until);
  const checkout = opts.checkout
    ? followAtCheckout({ mix: opts.checkout, pool: followPool, url: opts.url, follow, clock })
    : null;
  async function followLane(): Promise<void> {
    for (let a = await handover.next(); a; a = await handover.next()) {
      const id = a.record.purchaseId!;
      const { firstSentAt } = a;
      if (checkout) await checkout.follow(id, (final) => settle(id, final, firstSentAt));
      else settle(id, await follow(id), firstSentAt);
    }
  }

  let nextIndex = 0;
  async function sendLane(): Promise<void> {
    while (nextIndex < plan.length) {
      const req = plan[nextIndex++]!;
      const due = t0 + req.at;
      if (due > clock()) await sleep(due - clock());
      await buy(req);
    }
  }
  async function buy(req: PlannedRequest): Promise<void> {
    const firstSentAt = clock();
    // Built once, sent again as is on each retry (the same Idempotency-Key).
    const spec = requests.purchase(opts.eventId, req, { idempotencyKey: req.idempotencyKey });
    spec.path = base + spec.path;
    for (let attempt = 0; ; attempt++) {
      const sentAt = clock();
      c.sent++;
      bucket(sentAt).sent++;
      const answer = await post(sendPool, spec);
      const answeredAt = clock();
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
        const id = `${opts.syncPrefix}-${++syncIds}`;
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

  const followers = Promise.all(Array.from({ length: opts.followers }, followLane));
  let sendEndAt = t0;
  let sendCpuMs = 0;
  const sent = Promise.all(Array.from({ length: Math.min(opts.connections, plan.length) }, sendLane)).then(
    () => {
      sendEndAt = clock();
      const cpu = process.cpuUsage(cpuAtStart);
      sendCpuMs = (cpu.user + cpu.system) / 1000;
      settleDeadline = clock() + opts.settleSec * 1000;
      handover.close();
    },
  );
  const done = (async (): Promise<ShareResult> => {
    try {
      await sent;
      await followers;
      await checkout?.settleParked(() => settleDeadline);
    } finally {
      await Promise.all([sendPool.destroy(), followPool.destroy()]);
    }
    return {
      counts: c,
      refusals,
      rejections,
      ackLatencies,
      endToEnd,
      records,
      finals: [...finals],
      timeline,
      sendEndAt,
      sendCpuMs,
      trails: checkout ? [...checkout.trails] : [],
      lastConfirmedAt,
      lastFinalAt,
    };
  })();
  return {
    counts: c,
    takeWindow: () => {
      const w = windowLatencies;
      windowLatencies = [];
      return w;
    },
    sent,
    done,
  };
}

/** One request on a keep-alive pool: its status, JSON body and Retry-After; status 0 when no answer came. */
export async function post(
  pool: Pool,
  spec: RequestSpec,
): Promise<{ status: number; body: unknown; retryAfterSec?: number }> {
  try {
    const res = await pool.request(spec);
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

const isFinal = (p: FinalPurchase) => FINAL.has(p.status);

/** Polls the purchase until `until` or the deadline passes; returns what was last seen (null: never found). */
async function followPoll(
  pool: Pool,
  base: string,
  id: string,
  deadline: () => number,
  until = isFinal,
): Promise<FinalPurchase | null> {
  let last: FinalPurchase | null = null;
  for (let wait = 20; ; wait = Math.min(wait * 1.5, 500)) {
    try {
      const res = await pool.request({
        ...at(base, requests.getPurchase(id)),
        signal: AbortSignal.timeout(ANSWER_TIMEOUT_MS),
      });
      const text = await res.body.text();
      if (res.statusCode === 200) last = JSON.parse(text) as FinalPurchase;
    } catch {
      // the server may be restarting, or the answer was lost: poll again
    }
    if ((last && until(last)) || clock() > deadline()) return last;
    await sleep(wait);
  }
}

/** Follows the purchase's server-sent events until `until` (reconnecting if the stream ends early). */
async function followSse(
  pool: Pool,
  base: string,
  id: string,
  deadline: () => number,
  until = isFinal,
): Promise<FinalPurchase | null> {
  let last: FinalPurchase | null = null;
  while (clock() <= deadline()) {
    try {
      // The stream's headers come at once; only its body lasts (the guard below cuts it at the deadline).
      const res = await pool.request({
        ...at(base, requests.purchaseEvents(id)),
        headersTimeout: ANSWER_TIMEOUT_MS,
      });
      if (res.statusCode !== 200) {
        // No stream for it (a server without SSE, or a purchase it does not know): poll instead.
        await res.body.dump();
        return followPoll(pool, base, id, deadline, until);
      }
      // A stream that stays open past the deadline (a purchase that never ends) is cut.
      const guard = setInterval(() => {
        if (clock() > deadline()) res.body.destroy();
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
            if (last && until(last)) break;
          }
          if (last && until(last)) break;
        }
      } finally {
        clearInterval(guard);
        res.body.destroy();
      }
      if (last && until(last)) return last;
    } catch {
      await sleep(100);
    }
  }
  return last;
}

/** A request of onsale/client's builders under the simulated server's path prefix (`--url`'s path). */
export function at(base: string, spec: RequestSpec): RequestSpec {
  return base ? { ...spec, path: base + spec.path } : spec;
}
