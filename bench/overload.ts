import { randomBytes } from 'node:crypto';
import { Pool } from 'undici';
import { observe, readStock } from '../src/simulate/crowd.js';
import { checkInvariants, type FinalPurchase, type SentPurchase } from '../src/simulate/invariants.js';
import {
  countAnswers,
  latencyPerSecond,
  sendOpenLoop,
  type OpenLoopResult,
  type OverloadCounts,
} from './open-loop.js';
import { sleep } from './processes.js';
import { contenderName, startContender, type Contender, type Running } from './sale.js';

/**
 * The bench's `overload` part: an open-loop crowd (arrivals at a fixed rate, whatever became of the earlier
 * ones) at three times the rate the advisory-lock shop sustains, measured first in the same run, against the
 * two baseline shops and onsale. What a rush costs is requests: a synchronous shop queues them behind its lock
 * until they time out; onsale answers each at once, and sells behind the queue.
 */

export interface OverloadPlan {
  /** The closed-loop measurement of the advisory-lock shop's sustained rate. */
  probeSec: number;
  probeLanes: number;
  durationSec: number;
  timeoutMs: number;
  rateMultiple: number;
  connections: number;
}

export const OVERLOAD_PLAN: OverloadPlan = {
  probeSec: 5,
  probeLanes: 64,
  durationSec: 20,
  timeoutMs: 5000,
  rateMultiple: 3,
  connections: 1024,
};
export const QUICK_OVERLOAD_PLAN: OverloadPlan = { ...OVERLOAD_PLAN, probeSec: 3, durationSec: 6 };

export const OVERLOAD_CONTENDERS: readonly Contender[] = [
  { kind: 'shop', shop: 'advisory-lock' },
  { kind: 'shop', shop: 'skip-locked' },
  { kind: 'onsale', engine: 'embedded' },
  { kind: 'onsale', engine: 'postgres+redis' },
];

/** One contender's figures: the JSON's `overload.contenders[]`. */
export interface OverloadContender extends OverloadCounts {
  name: string;
  ticketsSold: number;
  ticketsPerSec: number;
  invariantsOk: boolean;
  violated: string[];
  /** Whether every request was answered, none failed, and the p99 was within 100 ms. */
  heldUp: boolean;
  sendLagP99Ms: number;
  senderBusyCores: number;
  senderCpuMsPerRequest: number;
  /** p50 and p99 of each second of due times, for the chart (not in the JSON). */
  perSecond: Array<{ p50: number; p99: number } | null>;
}

export interface OverloadFigures {
  plan: OverloadPlan;
  /** Purchases a second the advisory-lock shop answered in the closed-loop probe. */
  advisoryLockSustainedPerSec: number;
  ratePerSec: number;
  contenders: OverloadContender[];
}

/** The p99 goal of onsale under overload, in ms. */
export const OVERLOAD_P99_GOAL_MS = 100;

type Urls = { postgres: string; redis: string };

/** A local load generator is one address for a crowd: exempt it from the per-address limit, as the docs say. */
const ONSALE_ENV = { ONSALE_RATE_LIMIT_EXEMPT: '127.0.0.1,::1,::ffff:127.0.0.1' };

/** An event with one ticket type of `capacity` tickets, bought one at a time by new buyers. */
async function createEvent(r: Running, capacity: number): Promise<{ eventId: string; ticketTypeId: string }> {
  const res = await fetch(`${r.url}/api/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${r.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      name: 'overload',
      ticketTypes: [{ name: 'General admission', priceCents: 5000, capacity, maxPerBuyer: 4 }],
    }),
  });
  if (res.status !== 201) throw new Error(`creating the overload event: ${res.status} ${await res.text()}`);
  const event = (await res.json()) as { id: string; ticketTypes: Array<{ id: string }> };
  return { eventId: event.id, ticketTypeId: event.ticketTypes[0]!.id };
}

const purchaseBody = (buyers: string, ticketTypeId: string) => (i: number) =>
  JSON.stringify({ buyerId: `${buyers}-${i}`, items: [{ ticketTypeId, quantity: 1 }] });

/**
 * The advisory-lock shop's sustained rate: `lanes` buyers each sending their next purchase as soon as the last
 * is answered (a closed loop: the shop sets the pace), counted after a second of warm-up.
 */
async function probeAdvisoryLock(plan: OverloadPlan, urls: Urls): Promise<number> {
  const shop = await startContender({ kind: 'shop', shop: 'advisory-lock' }, urls);
  try {
    const { eventId, ticketTypeId } = await createEvent(shop, 10_000_000);
    const pool = new Pool(shop.url, { connections: plan.probeLanes });
    const body = purchaseBody(randomBytes(4).toString('hex'), ticketTypeId);
    const warmUntil = performance.now() + 1000;
    const endAt = warmUntil + plan.probeSec * 1000;
    let next = 0;
    let counted = 0;
    const lane = async () => {
      while (performance.now() < endAt) {
        const res = await pool.request({
          method: 'POST',
          path: `/api/events/${eventId}/purchases`,
          headers: { 'content-type': 'application/json' },
          body: body(next++),
        });
        await res.body.text();
        if (res.statusCode === 200 && performance.now() > warmUntil) counted++;
      }
    };
    await Promise.all(Array.from({ length: plan.probeLanes }, lane));
    await pool.destroy();
    return counted / plan.probeSec;
  } finally {
    await shop.stop();
  }
}

interface Stats {
  sold: number;
  queued: number;
}

async function readStats(r: Running, eventId: string): Promise<Stats | null> {
  try {
    const res = await fetch(`${r.url}/api/events/${eventId}/stats`, {
      headers: { authorization: `Bearer ${r.adminToken}` },
      signal: AbortSignal.timeout(10_000),
    });
    if (res.status !== 200) return null;
    const s = (await res.json()) as {
      ticketTypes: Array<{ sold: number }>;
      purchases: { queued: number };
    };
    return { sold: s.ticketTypes.reduce((a, t) => a + t.sold, 0), queued: s.purchases.queued };
  } catch {
    return null;
  }
}

/**
 * Tickets sold a second: reads the stock twice a second from the start until every answer is in and nothing
 * is queued (onsale's worker has caught up), and divides the tickets sold by the time to the last sale.
 */
function watchSales(r: Running, eventId: string, drainDeadlineMs: number) {
  const t0 = performance.now();
  let sold = 0;
  let lastSaleMs = 0;
  let sending = true;
  const done = (async () => {
    for (;;) {
      const s = await readStats(r, eventId);
      if (s && s.sold > sold) {
        sold = s.sold;
        lastSaleMs = performance.now() - t0;
      }
      if (!sending && s && s.queued === 0) break;
      if (!sending && performance.now() - t0 > drainDeadlineMs) break;
      await sleep(500);
    }
    return { sold, ticketsPerSec: lastSaleMs > 0 ? Math.round(sold / (lastSaleMs / 1000)) : 0 };
  })();
  return {
    finish: () => {
      sending = false;
      return done;
    },
  };
}

/**
 * The invariants of api.md checked from outside on what the crowd saw: the shops' 200s carry the final
 * purchase; onsale's 202s are read back once the queue drained.
 */
async function invariantsOf(
  r: Running,
  eventId: string,
  buyers: string,
  result: OpenLoopResult,
): Promise<string[]> {
  const sent: SentPurchase[] = [];
  const finals = new Map<string, FinalPurchase | null>();
  for (const a of result.answers) {
    const body = a.body as Partial<FinalPurchase> | undefined;
    if (a.outcome !== 'accepted' || !body?.purchaseId) continue;
    const synchronous = a.status === 200 && Array.isArray(body.tickets);
    sent.push({
      buyerId: `${buyers}-${a.index}`,
      items: [],
      sentAt: a.dueMs,
      answeredAt: a.dueMs + a.latencyMs,
      status: a.status,
      purchaseId: body.purchaseId,
      ...(synchronous ? { synchronous: true } : {}),
    });
    if (synchronous) finals.set(body.purchaseId, body as FinalPurchase);
  }
  const asynchronous = sent.filter((s) => !s.synchronous);
  const observed =
    asynchronous.length > 0
      ? await observe({
          baseUrl: r.url,
          eventId,
          adminToken: r.adminToken,
          sent: asynchronous,
          concurrency: 64,
        })
      : {
          purchases: new Map<string, FinalPurchase | null>(),
          ...(await readStock(r.url, eventId, r.adminToken)),
        };
  for (const [id, p] of observed.purchases) finals.set(id, p);
  const unanswered = result.answers.some((a) => a.outcome === 'timeout' || a.outcome === 'error');
  return checkInvariants({ sent, purchases: finals, stock: observed.stock })
    .filter(
      // A request the crowd gave up on may still have sold afterwards: with any, the stock may exceed the
      // tickets the crowd saw, and that comparison says nothing.
      (v) => !(unanswered && v.invariant === 'no_double_effect' && v.detail.includes('stock says')),
    )
    .map((v) => `${v.invariant}: ${v.detail}`);
}

/** Starts the contender fresh, sends the open-loop crowd, waits for the sales to settle, checks, stops. */
export async function overloadContender(
  c: Contender,
  plan: OverloadPlan,
  ratePerSec: number,
  urls: Urls,
): Promise<OverloadContender> {
  const running = await startContender(c, urls, c.kind === 'onsale' ? ONSALE_ENV : {});
  try {
    // Enough tickets that the sale never sells out: every request is a purchase to make.
    const capacity = Math.ceil(ratePerSec * plan.durationSec * 1.2);
    const { eventId, ticketTypeId } = await createEvent(running, capacity);
    const buyers = randomBytes(4).toString('hex');
    const sales = watchSales(running, eventId, 120_000);
    const result = await sendOpenLoop({
      origin: running.url,
      path: `/api/events/${eventId}/purchases`,
      body: purchaseBody(buyers, ticketTypeId),
      ratePerSec,
      durationSec: plan.durationSec,
      timeoutMs: plan.timeoutMs,
      connections: plan.connections,
    });
    const { sold, ticketsPerSec } = await sales.finish();
    const violations = await invariantsOf(running, eventId, buyers, result);
    return contenderFigures(contenderName(c), result, { sold, ticketsPerSec }, violations);
  } finally {
    await running.stop();
  }
}

/** One contender's entry from what its crowd saw, the tickets it sold and the invariants it broke. */
export function contenderFigures(
  name: string,
  result: OpenLoopResult,
  sales: { sold: number; ticketsPerSec: number },
  violations: readonly string[],
): OverloadContender {
  const counts = countAnswers(result.answers);
  return {
    name,
    ...counts,
    ticketsSold: sales.sold,
    ticketsPerSec: sales.ticketsPerSec,
    invariantsOk: violations.length === 0,
    violated: violations.slice(0, 5),
    heldUp: heldUp(counts),
    sendLagP99Ms: result.sendLagP99Ms,
    senderBusyCores: result.senderBusyCores,
    senderCpuMsPerRequest: result.senderCpuMsPerRequest,
    perSecond: latencyPerSecond(result.answers, result.durationSec),
  };
}

/** The goal for onsale: every request answered, none failed (shedding with Retry-After is allowed), p99 ≤ 100 ms. */
export function heldUp(c: OverloadCounts): boolean {
  return c.timeouts === 0 && c.errors === 0 && c.ackP99Ms <= OVERLOAD_P99_GOAL_MS;
}

export async function measureOverload(
  plan: OverloadPlan,
  urls: Urls,
  progress: (line: string) => void,
): Promise<OverloadFigures> {
  progress(`overload: the advisory-lock shop's sustained rate (${plan.probeLanes} buyers in a closed loop)`);
  const sustained = await probeAdvisoryLock(plan, urls);
  const ratePerSec = Math.max(1, Math.round(sustained * plan.rateMultiple));
  progress(
    `overload: the advisory-lock shop sustains ${Math.round(sustained)} purchases/s; ` +
      `the crowd arrives at ${ratePerSec}/s for ${plan.durationSec} s, ${plan.timeoutMs / 1000} s timeout`,
  );
  const contenders: OverloadContender[] = [];
  for (const c of OVERLOAD_CONTENDERS) {
    const f = await overloadContender(c, plan, ratePerSec, urls);
    progress(`overload: ${f.name}: ${describeContender(f)}`);
    contenders.push(f);
  }
  return { plan, advisoryLockSustainedPerSec: Math.round(sustained), ratePerSec, contenders };
}

export function describeContender(f: OverloadContender): string {
  return (
    `answered ${f.answered}/${f.requests} within the timeout, timeouts ${f.timeouts}, errors ${f.errors}` +
    `${f.shed > 0 ? `, shed (429/503 + Retry-After) ${f.shed}` : ''}, ack p50 ${f.ackP50Ms.toFixed(1)} ms, ` +
    `p99 ${f.ackP99Ms.toFixed(1)} ms, ${f.ticketsPerSec} tickets/s, invariants ` +
    `${f.invariantsOk ? 'kept' : `BROKEN (${f.violated.join('; ')})`}; sender ${f.senderBusyCores.toFixed(2)} ` +
    `cores, ${f.senderCpuMsPerRequest.toFixed(3)} CPU ms/request, send lag p99 ${f.sendLagP99Ms.toFixed(1)} ms`
  );
}

/** What the JSON keeps of a contender (the chart's series stay out of it). */
function contenderJson(f: OverloadContender) {
  const { perSecond: _perSecond, ...rest } = f;
  return {
    ...rest,
    ackP50Ms: Number(f.ackP50Ms.toFixed(1)),
    ackP99Ms: Number(f.ackP99Ms.toFixed(1)),
    sendLagP99Ms: Number(f.sendLagP99Ms.toFixed(1)),
    senderBusyCores: Number(f.senderBusyCores.toFixed(2)),
    senderCpuMsPerRequest: Number(f.senderCpuMsPerRequest.toFixed(3)),
  };
}

/** The JSON's `overload` key; `onsale` is the embedded contender's entry. */
export function overloadJson(f: OverloadFigures) {
  const onsale = f.contenders.find((c) => c.name === contenderName(OVERLOAD_CONTENDERS[2]!));
  return {
    ratePerSec: f.ratePerSec,
    advisoryLockSustainedPerSec: f.advisoryLockSustainedPerSec,
    durationSec: f.plan.durationSec,
    timeoutMs: f.plan.timeoutMs,
    contenders: f.contenders.map(contenderJson),
    onsale: onsale ? contenderJson(onsale) : null,
  };
}
