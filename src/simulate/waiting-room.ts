import { Pool } from 'undici';
import { requests, type LineStats, type RequestSpec } from '../client/index.js';
import { planCrowd, readStock, rng, type Arrival } from './crowd.js';
import { checkInvariants, type FinalPurchase, type SentPurchase, type Violation } from './invariants.js';
import { at, clock, FINAL, post, sleep } from './play.js';
import { checkAdmissionOrder, type OrderViolation, type PlaceRecord } from './room-order.js';
import { percentiles, type Percentiles } from './stats.js';

/**
 * `onsale simulate --waiting-room`: a crowd in front of an event's waiting room. Each buyer joins the line at
 * its due time, reads its place again every `refreshAfterSeconds` the server asks for (as the waiting page
 * does), leaves for good with probability `abandonPlaceRate` (after 0–3 reads), and buys on admission with
 * its admission token, then polls its purchase until final. A monitor reads the line (admin) and the exact
 * stock every second. The report: waits, the join-time estimate against the wait seen, admissions per
 * minute, purchases that reached the server after sold out, the admission order and the API's invariants.
 */

export interface RoomSimOptions {
  url: string;
  adminToken: string;
  /** An existing event with a waiting room; otherwise one is created (with the room below). */
  eventId?: string;
  buyers: number;
  arrival: Arrival;
  durationSec: number;
  ticketTypes: number;
  tickets: number;
  maxPerBuyer: number;
  maxQuantity: number;
  maxActiveBuyers: number;
  maxAdmittedPerMinute: number | null;
  /** Seconds between the room's opening (now) and the sales': who joins before is in the lottery. */
  prequeueSec: number;
  sessionSeconds: number;
  abandonPlaceRate: number;
  connections: number;
  /** Seconds without any buyer's place or purchase reaching its end before the run gives up on the rest. */
  settleSec: number;
  retries: number;
  seed: number;
}

export interface RoomSecond {
  second: number;
  admitted: number | null;
  waiting: number | null;
  active: number | null;
  ticketsLeft: number | null;
}

export interface RoomReport {
  version: 1;
  kind: 'waiting-room';
  url: string;
  eventId: string;
  eventName: string;
  options: Omit<RoomSimOptions, 'adminToken'>;
  startedAt: string;
  salesOpenAt: string;
  durationSec: number;
  totals: {
    buyers: number;
    joined: number;
    prequeued: number;
    abandoned: number;
    /** Places the buyer saw admitted, told sold_out, or expired. */
    admitted: number;
    soldOutTold: number;
    expired: number;
    unfinished: number;
    gaveUp: number;
    placeReads: number;
    purchases: number;
    accepted: number;
    confirmed: number;
    rejected: number;
    ticketsSold: number;
    capacity: number;
  };
  /** The line as the server counts it, read (admin) once every buyer was done. */
  server: LineStats | null;
  /** From sending the join to the first read that showed the admission, in seconds (admitted buyers). */
  waitSec: Percentiles;
  /** The estimated wait told at join against the wait until admitted, for admitted buyers told one. */
  estimate: {
    buyers: number;
    medianAbsErrorSec: number | null;
    medianWaitSec: number | null;
    /** The median absolute error as a share of the median wait, in percent. */
    errorPctOfWait: number | null;
    /** The median of each buyer's |estimate − wait| ÷ wait, in percent. */
    medianRelativeErrorPct: number | null;
  };
  /** Admissions (server count) per minute after the opening; mean over the minutes that admitted anyone. */
  admissionsPerMinute: { perMinute: number[]; mean: number; peak: number };
  /** From the sales' opening to the stock read at zero left. */
  timeToSellOutSec: number | null;
  /** Purchases sent after the stock was read at zero, and of those, the ones whose buyer was admitted after. */
  afterSoldOut: { purchases: number; admittedAfterSoldOut: number };
  timeline: RoomSecond[];
  checks: { ok: boolean; violations: Array<OrderViolation | Violation> };
}

interface Buyer {
  buyerId: string;
  items: Array<{ ticketTypeId: string; quantity: number }>;
  idempotencyKey: string;
  at: number;
  /** Reads after which this buyer leaves the line for good; Infinity: stays. */
  leavesAfterReads: number;
}

interface PlaceAnswer {
  placeId: string;
  state: 'prequeue' | 'waiting' | 'admitted' | 'sold_out' | 'expired';
  position: number | null;
  etaSeconds: number | null;
  admission: { token: string; expiresAt: string } | null;
  refreshAfterSeconds: number;
}

interface BuyerRecord extends PlaceRecord {
  placeId: string | null;
  etaAtJoin: number | null;
  /** Simulator time of the first read that showed the admission. */
  seenAdmittedAt: number | null;
  reads: number;
  purchase: SentPurchase | null;
  final: FinalPurchase | null;
}

interface EventView {
  id: string;
  name: string;
  salesOpenAt: string;
  buyerIdKind?: string;
  ticketTypes: Array<{ id: string; name: string; maxPerBuyer: number; capacity: number }>;
  waitingRoom?: { sessionSeconds: number } | null;
}

const median = (xs: number[]): number | null => {
  if (xs.length === 0) return null;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
};
const round = (n: number) => Math.round(n * 1000) / 1000;

export async function simulateWaitingRoom(
  opts: RoomSimOptions,
  onProgress: (line: string) => void = () => undefined,
): Promise<RoomReport> {
  const origin = new URL(opts.url).origin;
  const base = new URL(opts.url).pathname.replace(/\/$/, '');
  const pool = new Pool(origin, { connections: opts.connections, pipelining: 1 });
  const monitorPool = new Pool(origin, { connections: 2, pipelining: 1 });
  const ask = (spec: RequestSpec) => post(pool, at(base, spec));
  let monitoring = true;
  let monitor: Promise<void> = Promise.resolve();
  try {
    const event = opts.eventId
      ? await readEvent(monitorPool, base, opts.eventId)
      : await createEvent(monitorPool, base, opts);
    if (!event.waitingRoom) throw new Error(`event ${event.id} has no waiting room`);
    const sessionMs = event.waitingRoom.sessionSeconds * 1000;
    const t0 = clock();
    const opening = Date.parse(event.salesOpenAt);
    const random = rng(opts.seed ^ 0x5eed);
    const buyers: Buyer[] = planCrowd({
      buyers: opts.buyers,
      repeat: 0,
      types: event.ticketTypes,
      maxQuantity: opts.maxQuantity,
      arrival: opts.arrival,
      durationMs: opts.arrival === 'burst' ? 0 : opts.durationSec * 1000,
      seed: opts.seed,
      buyerPrefix: `room-${opts.seed}-${Date.now().toString(36)}`,
      ...(event.buyerIdKind === 'email' ? { buyerDomain: 'example.com' } : {}),
    }).map((p) => ({
      ...p,
      leavesAfterReads: random() < opts.abandonPlaceRate ? Math.floor(random() * 4) : Infinity,
    }));

    // The monitor: the exact stock four times a second (when it sold out), the line (admin) every second.
    const timeline: RoomSecond[] = [];
    let soldOutAt: number | null = null;
    let lastLine: LineStats | null = null;
    monitor = (async () => {
      for (let round = 0; monitoring; round++) {
        const now = clock();
        const left = await ticketsLeft(monitorPool, base, event.id, opts.adminToken);
        if (left === 0 && soldOutAt === null) soldOutAt = now;
        if (round % 4 === 0) {
          const line = await readLine(monitorPool, base, event.id, opts.adminToken);
          if (line) lastLine = line;
          timeline.push({
            second: Math.max(0, Math.floor((now - t0) / 1000)),
            admitted: line?.admitted ?? null,
            waiting: line?.waiting ?? null,
            active: line?.active ?? null,
            ticketsLeft: left,
          });
        }
        await sleep(Math.max(0, 250 - (clock() - now)));
      }
    })();

    // A watchdog: the run ends when nobody's place or purchase has reached its end for settleSec.
    let lastProgressAt = clock();
    let givingUp = false;
    const positionViolations: OrderViolation[] = [];
    const counts = { joined: 0, admitted: 0, done: 0, reads: 0 };
    const ticker = setInterval(() => {
      if (clock() - lastProgressAt > opts.settleSec * 1000) givingUp = true;
      onProgress(
        `${((clock() - t0) / 1000).toFixed(1).padStart(6)} s  joined ${counts.joined}  reads ${counts.reads}  ` +
          `admitted ${counts.admitted}  done ${counts.done}/${buyers.length}  ` +
          `line waiting ${lastLine?.waiting ?? '?'}  active ${lastLine?.active ?? '?'}  ` +
          `tickets left ${timeline[timeline.length - 1]?.ticketsLeft ?? '?'}`,
      );
    }, 1000);

    const playBuyer = async (b: Buyer): Promise<BuyerRecord> => {
      await sleep(t0 + b.at - clock());
      const record: BuyerRecord = {
        buyerId: b.buyerId,
        joinSentAt: clock(),
        joinAnsweredAt: 0,
        prequeue: false,
        outcome: 'gave_up',
        admittedAt: null,
        placeId: null,
        etaAtJoin: null,
        seenAdmittedAt: null,
        reads: 0,
        purchase: null,
        final: null,
      };
      const joined = await politely(() => ask(requests.joinQueue(event.id, b.buyerId)), opts.retries);
      record.joinAnsweredAt = clock();
      if (joined.status !== 200 && joined.status !== 201) return record;
      counts.joined++;
      lastProgressAt = clock();
      let place = joined.body as PlaceAnswer;
      record.placeId = place.placeId;
      record.prequeue = place.state === 'prequeue' ? true : record.joinSentAt >= opening ? false : null;
      record.etaAtJoin = place.etaSeconds;
      while (place.state === 'prequeue' || place.state === 'waiting') {
        if (record.reads >= b.leavesAfterReads) {
          record.outcome = 'abandoned';
          lastProgressAt = clock();
          return record;
        }
        if (givingUp) {
          record.outcome = 'unfinished';
          return record;
        }
        await sleep(place.refreshAfterSeconds * 1000);
        const read = await politely(() => ask(requests.getPlace(place.placeId)), opts.retries);
        if (read.status !== 200) continue;
        record.reads++;
        counts.reads++;
        const next = read.body as PlaceAnswer;
        if (place.position !== null && next.position !== null && next.position > place.position) {
          positionViolations.push({
            check: 'position_never_grows',
            detail: `${b.buyerId}: position ${place.position}, then ${next.position}`,
          });
        }
        place = next;
      }
      record.outcome = place.state;
      lastProgressAt = clock();
      if (place.state !== 'admitted' || !place.admission) return record;
      counts.admitted++;
      record.seenAdmittedAt = clock();
      record.admittedAt = Date.parse(place.admission.expiresAt) - sessionMs;
      const token = place.admission.token;
      const sentAt = clock();
      const bought = await politely(
        () =>
          ask(
            requests.purchase(
              event.id,
              { buyerId: b.buyerId, items: b.items },
              { idempotencyKey: b.idempotencyKey, admission: token },
            ),
          ),
        opts.retries,
      );
      const purchaseId = (bought.body as { purchaseId?: string } | undefined)?.purchaseId;
      record.purchase = {
        buyerId: b.buyerId,
        items: b.items,
        sentAt,
        answeredAt: clock(),
        status: bought.status,
        idempotencyKey: b.idempotencyKey,
        ...(purchaseId ? { purchaseId } : {}),
      };
      if (purchaseId && (bought.status === 200 || bought.status === 202)) {
        while (!givingUp) {
          const read = await ask(requests.getPurchase(purchaseId));
          if (read.status === 200) {
            record.final = read.body as FinalPurchase;
            if (FINAL.has(record.final.status)) break;
          }
          await sleep(1000);
        }
      }
      lastProgressAt = clock();
      return record;
    };

    const records = await Promise.all(
      buyers.map((b) =>
        playBuyer(b).then((r) => {
          counts.done++;
          return r;
        }),
      ),
    );
    clearInterval(ticker);
    monitoring = false;
    await monitor;
    const server = await readLine(monitorPool, base, event.id, opts.adminToken);
    const { stock } = await readStock(opts.url.replace(/\/$/, ''), event.id, opts.adminToken);
    const sent = records.flatMap((r) => (r.purchase ? [r.purchase] : []));
    const finals = new Map<string, FinalPurchase | null>();
    for (const r of records) if (r.purchase?.purchaseId) finals.set(r.purchase.purchaseId, r.final);
    const violations = [
      ...checkAdmissionOrder(records),
      ...positionViolations.slice(0, 10),
      ...checkInvariants({ sent, purchases: finals, stock }),
    ];
    return {
      version: 1,
      kind: 'waiting-room',
      url: opts.url,
      eventId: event.id,
      eventName: event.name,
      options: withoutSecret(opts),
      startedAt: new Date(t0).toISOString(),
      salesOpenAt: event.salesOpenAt,
      durationSec: round((clock() - t0) / 1000),
      totals: {
        buyers: buyers.length,
        joined: counts.joined,
        prequeued: records.filter((r) => r.prequeue === true).length,
        abandoned: records.filter((r) => r.outcome === 'abandoned').length,
        admitted: counts.admitted,
        soldOutTold: records.filter((r) => r.outcome === 'sold_out').length,
        expired: records.filter((r) => r.outcome === 'expired').length,
        unfinished: records.filter((r) => r.outcome === 'unfinished').length,
        gaveUp: records.filter((r) => r.outcome === 'gave_up').length,
        placeReads: counts.reads,
        purchases: sent.length,
        accepted: sent.filter((p) => p.status === 200 || p.status === 202).length,
        confirmed: [...finals.values()].filter((f) => f?.status === 'confirmed').length,
        rejected: [...finals.values()].filter((f) => f?.status === 'rejected').length,
        ticketsSold: stock.reduce((n, s) => n + s.sold + s.held, 0),
        capacity: stock.reduce((n, s) => n + s.capacity, 0),
      },
      server,
      ...waitsAndEstimates(records),
      admissionsPerMinute: perMinute(timeline, t0, opening),
      timeToSellOutSec: soldOutAt === null ? null : round(Math.max(0, soldOutAt - opening) / 1000),
      afterSoldOut: afterSoldOut(records, soldOutAt),
      timeline,
      checks: { ok: violations.length === 0, violations },
    };
  } finally {
    monitoring = false;
    await monitor;
    await Promise.all([pool.destroy(), monitorPool.destroy()]);
  }
}

/**
 * The waits seen by admitted buyers (from sending the join to the first read that showed the admission), and
 * the join-time estimate against the wait until the admission itself (the server's admission time: the
 * simulator's and the server's clocks must agree, as on one machine or under NTP).
 */
export function waitsAndEstimates(
  records: ReadonlyArray<{
    joinSentAt: number;
    seenAdmittedAt: number | null;
    admittedAt: number | null;
    etaAtJoin: number | null;
  }>,
): Pick<RoomReport, 'waitSec' | 'estimate'> {
  const seen = records.filter((r) => r.seenAdmittedAt !== null);
  const told = seen.filter((r) => r.etaAtJoin !== null && r.admittedAt !== null);
  const waits = told.map((r) => Math.max(0, r.admittedAt! - r.joinSentAt) / 1000);
  const errors = told.map((r, i) => Math.abs(r.etaAtJoin! - waits[i]!));
  const medianError = median(errors);
  const medianWait = median(waits);
  const relative = median(errors.map((e, i) => e / Math.max(waits[i]!, 1)));
  return {
    waitSec: percentiles(seen.map((r) => (r.seenAdmittedAt! - r.joinSentAt) / 1000)),
    estimate: {
      buyers: told.length,
      medianAbsErrorSec: medianError === null ? null : round(medianError),
      medianWaitSec: medianWait === null ? null : round(medianWait),
      errorPctOfWait:
        medianError === null || !medianWait ? null : Math.round((1000 * medianError) / medianWait) / 10,
      medianRelativeErrorPct: relative === null ? null : Math.round(relative * 1000) / 10,
    },
  };
}

/** Admissions in each minute after the opening, from the monitor's readings of the server's count. */
function perMinute(
  timeline: readonly RoomSecond[],
  t0: number,
  opening: number,
): RoomReport['admissionsPerMinute'] {
  const openedAtSecond = Math.max(0, Math.floor((opening - t0) / 1000));
  const minutes: number[] = [];
  let before = 0;
  for (const s of timeline) {
    if (s.admitted === null || s.second < openedAtSecond) continue;
    const minute = Math.floor((s.second - openedAtSecond) / 60);
    while (minutes.length <= minute) minutes.push(0);
    minutes[minute]! += s.admitted - before;
    before = s.admitted;
  }
  const busy = minutes.filter((n) => n > 0);
  return {
    perMinute: minutes,
    mean: busy.length === 0 ? 0 : Math.round(busy.reduce((a, b) => a + b, 0) / busy.length),
    peak: Math.max(0, ...minutes),
  };
}

/** Purchases sent after the stock was read at zero, and those of buyers admitted after that moment. */
function afterSoldOut(records: readonly BuyerRecord[], soldOutAt: number | null): RoomReport['afterSoldOut'] {
  if (soldOutAt === null) return { purchases: 0, admittedAfterSoldOut: 0 };
  const late = records.filter((r) => r.purchase && r.purchase.sentAt > soldOutAt);
  return {
    purchases: late.length,
    admittedAfterSoldOut: late.filter((r) => r.admittedAt !== null && r.admittedAt > soldOutAt).length,
  };
}

function withoutSecret(opts: RoomSimOptions): Omit<RoomSimOptions, 'adminToken'> {
  const { adminToken: _secret, ...shown } = opts;
  return shown;
}

type Answer = Awaited<ReturnType<typeof post>>;

/** A request tried again on 429, 503 or a lost connection, waiting what Retry-After says. */
async function politely(send: () => Promise<Answer>, retries: number): Promise<Answer> {
  for (let attempt = 0; ; attempt++) {
    const answer = await send();
    const retryable = answer.status === 429 || answer.status === 503 || answer.status === 0;
    if (!retryable || attempt >= retries) return answer;
    const wait = (answer.retryAfterSec ?? Math.min(2 ** attempt * 0.1, 2)) * 1000;
    await sleep(wait * (1 + Math.random() * 0.2));
  }
}

async function readLine(pool: Pool, base: string, eventId: string, token: string): Promise<LineStats | null> {
  const answer = await post(pool, at(base, requests.getLine(eventId, token)));
  return answer.status === 200 ? (answer.body as LineStats) : null;
}

async function ticketsLeft(pool: Pool, base: string, eventId: string, token: string): Promise<number | null> {
  const answer = await post(pool, at(base, requests.eventStats(eventId, token)));
  if (answer.status !== 200) return null;
  const stats = answer.body as { ticketTypes: Array<{ available: number; held: number }> };
  return stats.ticketTypes.reduce((n, t) => n + t.available + t.held, 0);
}

async function readEvent(pool: Pool, base: string, eventId: string): Promise<EventView> {
  const answer = await post(pool, at(base, requests.getEvent(eventId)));
  if (answer.status !== 200)
    throw new Error(`event ${eventId}: the server answered ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body as EventView;
}

async function createEvent(pool: Pool, base: string, opts: RoomSimOptions): Promise<EventView> {
  const each = Math.floor(opts.tickets / opts.ticketTypes);
  const now = Date.now();
  const spec = requests.createEvent(
    {
      name: `Simulated sale behind a waiting room ${new Date(now).toISOString()}`,
      salesOpenAt: new Date(now + opts.prequeueSec * 1000).toISOString(),
      ticketTypes: Array.from({ length: opts.ticketTypes }, (_, i) => ({
        name: i === 0 ? 'General admission' : `Type ${i + 1}`,
        priceCents: 2500 * (i + 1),
        // The first type takes the remainder, so the capacities add up to --tickets.
        capacity: each + (i === 0 ? opts.tickets - each * opts.ticketTypes : 0),
        maxPerBuyer: opts.maxPerBuyer,
      })),
      waitingRoom: {
        opensAt: new Date(now).toISOString(),
        maxActiveBuyers: opts.maxActiveBuyers,
        maxAdmittedPerMinute: opts.maxAdmittedPerMinute,
        sessionSeconds: opts.sessionSeconds,
      },
    },
    opts.adminToken,
  );
  const answer = await post(pool, at(base, spec));
  if (answer.status !== 201)
    throw new Error(
      `creating the event: the server answered ${answer.status} ${JSON.stringify(answer.body)}`,
    );
  return answer.body as EventView;
}
