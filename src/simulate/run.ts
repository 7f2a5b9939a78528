import { availableParallelism } from 'node:os';
import { Pool } from 'undici';
import { requests } from '../client/index.js';
import { machineBusySeconds } from '../shared/machine-cpu.js';
import { poolSender, type CheckoutMix } from './checkout.js';
import { checkCheckout, checkoutFigures, readPayments, type CheckoutFigures } from './checkout-report.js';
import { planCrowd, readStock, type Arrival, type PlannedRequest } from './crowd.js';
import { checkInvariants, type Violation } from './invariants.js';
import {
  at,
  bucketOf,
  clock,
  FINAL,
  playShare,
  secondOf,
  sleep,
  type PlayingShare,
  type SecondFigures,
  type ShareCounts,
  type ShareOptions,
} from './play.js';
import { playInChildren, stopChildren } from './processes.js';
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
  /**
   * Processes that play the crowd (default 1): more than one forks children that share `connections` and
   * `followers` between them (processes.ts).
   */
  processes?: number;
  /** The created event's holds (0 or absent: none) and the price of its first type (the others cost 2×, 3×…). */
  holdSeconds?: number;
  priceCents?: number;
  /** What buyers do with their held purchases; absent: every held purchase is paid. */
  checkout?: CheckoutMix;
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

export interface SimulationReport {
  version: 1;
  url: string;
  eventId: string;
  eventName: string;
  options: Omit<SimulateOptions, 'adminToken'> & { processes: number };
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
  /** Requests sent (retries included) per second, from the opening until the last was answered. */
  requestsPerSec: number;
  /** The simulator's own cost (see CPU_INCLUDES): CPU milliseconds per request sent. */
  clientCpuMsPerRequest: number;
  /** What that implies: requests per second one core of this simulator can send. */
  clientRequestsPerCoreSec: number;
  clientCpu: {
    processes: number;
    cpuMs: number;
    /** Seconds from the opening until the last request was answered. */
    sendSec: number;
    /** CPU seconds per second over sendSec: near `processes` (or the CPUs), the simulator was the limit. */
    busyCores: number;
    /** The machine's CPUs, and how many CPU-s per second all its processes used meanwhile (null: unknown). */
    cpus: number;
    machineBusyCores: number | null;
    includes: string;
  };
  /** Answers other than an acceptance, per attempt, by error code (network_error: no answer at all). */
  refusals: Record<string, number>;
  /** Final rejections by reason. */
  rejections: Record<string, number>;
  ackLatencyMs: Percentiles;
  endToEndLatencyMs: Percentiles;
  timeToSellOutSec: number | null;
  timeline: SecondFigures[];
  stock: Array<{ id: string; name: string; capacity: number; sold: number; held: number; available: number }>;
  checkout: CheckoutFigures;
  invariants: { ok: boolean; checked: Array<Violation['invariant']>; violations: Violation[] };
}

const INVARIANTS: Array<Violation['invariant']> = [
  'no_oversell',
  'nothing_lost',
  'no_double_effect',
  'per_buyer_limit',
  'first_come_first_served',
];
/** Checked too when the event has holds. */
const CHECKOUT_INVARIANTS: Array<Violation['invariant']> = ['waitlist_order', 'money'];

/** The mix when none is given: every buyer pays. */
const EVERYONE_PAYS: CheckoutMix = { pay: 1, decline_then_pay: 0, three_d_secure: 0, cancel: 0, abandon: 0 };

const CPU_INCLUDES =
  'CPU time (user + system) of every simulator process from the opening until the last request was answered: ' +
  'sending, retries, the following of accepted purchases and the live display meanwhile; divided by the ' +
  'requests sent, retries included';

/**
 * Plays a flash sale against a running onsale (or anything speaking api.md): creates or reads the event,
 * sends the crowd on keep-alive pools, retries politely, follows every accepted purchase until it is final,
 * then checks the invariants from outside. With `processes` > 1 the crowd is planned here and split among
 * child processes (processes.ts), whose records are merged before the one invariant check. Never throws for
 * what the server answers; throws if it cannot reach the server or read the event, or if a child dies.
 */
export async function simulate(
  opts: SimulateOptions,
  onProgress: (p: Progress) => void = () => undefined,
): Promise<SimulationReport> {
  const origin = new URL(opts.url).origin;
  const base = new URL(opts.url).pathname.replace(/\/$/, '');
  // The event, the stats monitor and the final stock; the crowd goes out on the shares' own pools.
  const pool = new Pool(origin, { connections: 2, pipelining: 1 });
  const processes = opts.processes ?? 1;
  let monitoring = true;
  let monitor: Promise<void> = Promise.resolve();
  let ticker: NodeJS.Timeout | undefined;
  try {
    const event = opts.eventId
      ? await readEvent(pool, base, opts.eventId)
      : await createEvent(pool, base, opts);
    const plan = planCrowd({
      buyers: opts.buyers,
      repeat: opts.repeat,
      types: event.ticketTypes,
      maxQuantity: opts.maxQuantity,
      arrival: opts.arrival,
      durationMs: opts.arrival === 'burst' ? 0 : opts.durationSec * 1000,
      seed: opts.seed,
      buyerPrefix: `sim-${opts.seed}-${Date.now().toString(36)}`,
      // An event that takes emails only (the demo event does) gets a crowd of addresses.
      ...(event.buyerIdKind === 'email' ? { buyerDomain: 'example.com' } : {}),
    });
    const holds = (event.holdSeconds ?? 0) > 0;
    const shared = {
      url: opts.url,
      eventId: event.id,
      follow: opts.follow,
      retries: opts.retries,
      settleSec: opts.settleSec,
      // Held purchases wait for their buyers: with holds, buyers play the mix (or all pay).
      ...(holds ? { checkout: opts.checkout ?? EVERYONE_PAYS } : {}),
    };
    const { t0, shares } =
      processes === 1 ? playHere(shared, plan, opts) : await playInChildren(shared, plan, processes, opts);
    // This process's CPU from here on counts only with children (one process: the share measures it all).
    const cpuAtStart = process.cpuUsage();
    const machineAtStart = { busy: machineBusySeconds(), at: clock() };
    const startedAt = new Date(t0);
    // The monitor's own timeline holds the tickets left each second; the shares' hold the rest.
    const stockTimeline: SecondFigures[] = [];
    let ticketsLeft: number | null = null;
    let serverQueued: number | null = null;
    let soldOutAt: number | null = null;

    // The monitor reads the exact stock a few times a second: tickets left, and when the sale sold out.
    monitor = (async () => {
      while (monitoring) {
        const read = await readStats(pool, base, event.id, opts.adminToken);
        const now = clock();
        if (read !== null) {
          serverQueued = read.queued;
          ticketsLeft = read.left;
          bucketOf(stockTimeline, t0, now).ticketsLeft = read.left;
          if (read.left === 0 && soldOutAt === null) soldOutAt = now;
        }
        await sleep(250);
      }
    })();

    const sum = (key: keyof ShareCounts) => shares.reduce((n, s) => n + s.counts[key], 0);
    let lastSent = 0;
    let lastTick = t0;
    const tick = () => {
      const now = clock();
      const sorted = shares.flatMap((s) => s.takeWindow()).sort((x, y) => x - y);
      const [sent, accepted, confirmed, rejected] = [
        sum('sent'),
        sum('accepted'),
        sum('confirmed'),
        sum('rejected'),
      ];
      onProgress({
        elapsedSec: Math.max(0, now - t0) / 1000,
        sent,
        accepted,
        refused: sum('refused'),
        queued: serverQueued ?? accepted - confirmed - rejected,
        following: accepted - confirmed - rejected - sum('ended'),
        confirmed,
        rejected,
        requestsPerSec: ((sent - lastSent) * 1000) / Math.max(1, now - lastTick),
        ackP50Ms: sorted[Math.floor(sorted.length * 0.5)] ?? 0,
        ackP99Ms: sorted[Math.floor(sorted.length * 0.99)] ?? 0,
        ticketsLeft,
        planned: plan.length,
        answered: sum('answered'),
      });
      lastSent = sent;
      lastTick = now;
    };
    ticker = setInterval(tick, 250);

    // A child that dies fails the run at once, whether it was still sending or following.
    const results = Promise.all(shares.map((s) => s.done));
    await Promise.race([Promise.all(shares.map((s) => s.sent)), results]);
    const parentCpu = process.cpuUsage(cpuAtStart);
    const machineBusy = machineBusySeconds();
    const machineBusyCores =
      machineBusy === null || machineAtStart.busy === null
        ? null
        : (machineBusy - machineAtStart.busy) / Math.max((clock() - machineAtStart.at) / 1000, 0.001);
    const merged = await results;
    monitoring = false;
    await monitor;
    clearInterval(ticker);
    tick();

    const sendEndAt = Math.max(...merged.map((r) => r.sendEndAt));
    const sendSeconds = Math.max(sendEndAt - t0, 1) / 1000;
    // One process: its share measured the whole process. Several: the children, plus this parent's display.
    const cpuMs =
      processes === 1
        ? merged[0]!.sendCpuMs
        : (parentCpu.user + parentCpu.system) / 1000 + merged.reduce((n, r) => n + r.sendCpuMs, 0);
    const records = merged.flatMap((r) => r.records);
    const finals = new Map(merged.flatMap((r) => r.finals));
    const total = (key: keyof ShareCounts) => merged.reduce((n, r) => n + r.counts[key], 0);
    const attempts = total('sent');
    const { stock } = await readStock(opts.url.replace(/\/$/, ''), event.id, opts.adminToken);
    const violations = checkInvariants({ sent: records, purchases: finals, stock });
    if (holds) {
      const booksPool = new Pool(origin, { connections: 16, pipelining: 1 });
      const payments = await readPayments(
        poolSender(booksPool, base),
        opts.adminToken,
        finals.values(),
      ).finally(() => booksPool.destroy());
      const prices = new Map(event.ticketTypes.map((t) => [t.id, t.priceCents ?? 0]));
      violations.push(...checkCheckout({ sent: records, purchases: finals, payments, prices }));
    }
    const latest = (key: 'lastConfirmedAt' | 'lastFinalAt') =>
      merged.reduce<number | null>(
        (m, r) => (r[key] !== null && (m === null || r[key]! > m) ? r[key] : m),
        null,
      );
    const checkout = checkoutFigures({
      holdSeconds: event.holdSeconds ?? 0,
      mix: holds ? { ...(opts.checkout ?? EVERYONE_PAYS) } : null,
      t0,
      finals,
      trails: new Map(merged.flatMap((r) => r.trails)),
      lastConfirmedAt: latest('lastConfirmedAt'),
      lastFinalAt: latest('lastFinalAt'),
    });
    const notFinal = [...finals.values()].filter((p) => !p || !FINAL.has(p.status)).length;
    const ticketsSold = stock.reduce((n, s) => n + s.sold + s.held, 0);
    const durationSec = (clock() - t0) / 1000;
    const { adminToken: _secret, ...shown } = opts;
    const msPerRequest = cpuMs / Math.max(attempts, 1);
    return {
      version: 1,
      url: opts.url,
      eventId: event.id,
      eventName: event.name,
      options: { ...shown, processes },
      startedAt: startedAt.toISOString(),
      durationSec: round(durationSec),
      totals: {
        buyers: opts.buyers,
        requests: plan.length,
        attempts,
        accepted: total('accepted'),
        gaveUp: total('gaveUp'),
        confirmed: total('confirmed'),
        rejected: total('rejected'),
        notFinal,
        ticketsSold,
        capacity: stock.reduce((n, s) => n + s.capacity, 0),
      },
      requestsPerSec: round(attempts / sendSeconds),
      clientCpuMsPerRequest: round(msPerRequest),
      clientRequestsPerCoreSec: Math.round(1000 / Math.max(msPerRequest, 0.001)),
      clientCpu: {
        processes,
        cpuMs: Math.round(cpuMs),
        sendSec: round(sendSeconds),
        busyCores: round(cpuMs / 1000 / sendSeconds),
        cpus: availableParallelism(),
        machineBusyCores: machineBusyCores === null ? null : round(machineBusyCores),
        includes: CPU_INCLUDES,
      },
      refusals: mergeCounts(merged.map((r) => r.refusals)),
      rejections: mergeCounts(merged.map((r) => r.rejections)),
      ackLatencyMs: percentiles(merged.flatMap((r) => r.ackLatencies)),
      endToEndLatencyMs: percentiles(merged.flatMap((r) => r.endToEnd)),
      timeToSellOutSec: soldOutAt === null ? null : round((soldOutAt - t0) / 1000),
      timeline: mergeTimelines(
        stockTimeline,
        merged.map((r) => r.timeline),
      ),
      stock: stock.map((s) => ({
        id: s.id,
        name: event.ticketTypes.find((t) => t.id === s.id)?.name ?? s.id,
        capacity: s.capacity,
        sold: s.sold,
        held: s.held,
        available: s.available,
      })),
      checkout,
      invariants: {
        ok: violations.length === 0,
        checked: holds ? [...INVARIANTS, ...CHECKOUT_INVARIANTS] : INVARIANTS,
        violations,
      },
    };
  } catch (error) {
    stopChildren();
    throw error;
  } finally {
    monitoring = false;
    clearInterval(ticker);
    await monitor;
    await pool.destroy();
  }
}

/** The whole crowd played by this process, opening now. */
function playHere(
  shared: Omit<ShareOptions, 't0' | 'plan' | 'connections' | 'followers' | 'syncPrefix'>,
  plan: readonly PlannedRequest[],
  total: { connections: number; followers: number },
): { t0: number; shares: PlayingShare[] } {
  const t0 = clock();
  const share = playShare({
    ...shared,
    plan,
    t0,
    connections: total.connections,
    followers: total.followers,
    syncPrefix: 'sync',
  });
  return { t0, shares: [share] };
}

function mergeCounts(all: Array<Record<string, number>>): Record<string, number> {
  const merged: Record<string, number> = {};
  for (const counts of all) for (const [k, n] of Object.entries(counts)) merged[k] = (merged[k] ?? 0) + n;
  return merged;
}

/** The shares' timelines added second by second, with the tickets left the monitor read. */
function mergeTimelines(stock: SecondFigures[], shares: SecondFigures[][]): SecondFigures[] {
  const merged: SecondFigures[] = [];
  for (const timeline of shares) {
    for (const s of timeline) {
      const m = secondOf(merged, s.second);
      m.sent += s.sent;
      m.accepted += s.accepted;
      m.refused += s.refused;
      m.confirmed += s.confirmed;
      m.rejected += s.rejected;
    }
  }
  for (const s of stock) secondOf(merged, s.second).ticketsLeft = s.ticketsLeft;
  return merged;
}

const round = (n: number) => Math.round(n * 1000) / 1000;

interface EventView {
  id: string;
  name: string;
  /** Absent from a server that predates it: any id goes there. */
  buyerIdKind?: string;
  holdSeconds?: number;
  ticketTypes: Array<{
    id: string;
    name: string;
    maxPerBuyer: number;
    capacity: number;
    priceCents?: number;
  }>;
}

async function readEvent(pool: Pool, base: string, eventId: string): Promise<EventView> {
  const res = await pool.request(at(base, requests.getEvent(eventId)));
  const body = await res.body.text();
  if (res.statusCode !== 200)
    throw new Error(`event ${eventId}: the server answered ${res.statusCode} ${body}`);
  return JSON.parse(body) as EventView;
}

async function createEvent(pool: Pool, base: string, opts: SimulateOptions): Promise<EventView> {
  const each = Math.floor(opts.tickets / opts.ticketTypes);
  const names = ['General admission', 'Early entry', 'Balcony', 'Front row', 'Backstage'];
  const spec = requests.createEvent(
    {
      name: `Simulated sale ${new Date().toISOString()}`,
      ...(opts.holdSeconds ? { holdSeconds: opts.holdSeconds } : {}),
      ticketTypes: Array.from({ length: opts.ticketTypes }, (_, i) => ({
        name: names[i] ?? `Type ${i + 1}`,
        priceCents: (opts.priceCents ?? 2500) * (i + 1),
        // The first type takes the remainder, so the capacities add up to --tickets.
        capacity: each + (i === 0 ? opts.tickets - each * opts.ticketTypes : 0),
        maxPerBuyer: opts.maxPerBuyer,
      })),
    },
    opts.adminToken,
  );
  const res = await pool.request(at(base, spec));
  const body = await res.body.text();
  if (res.statusCode !== 201)
    throw new Error(`creating the event: the server answered ${res.statusCode} ${body}`);
  return JSON.parse(body) as EventView;
}

/** Tickets left (available or held) and purchases queued, from the event's exact stats; null if unreadable. */
async function readStats(
  pool: Pool,
  base: string,
  eventId: string,
  adminToken: string,
): Promise<{ left: number; queued: number } | null> {
  try {
    const res = await pool.request(at(base, requests.eventStats(eventId, adminToken)));
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
