import { setTimeout } from 'node:timers/promises';
import { requests } from '../client/index.js';
import type { Send } from './checkout.js';
import type { Trail } from './checkout-follow.js';
import { wasHeld, type FinalPurchase, type SentPurchase, type Violation } from './invariants.js';
import { groupBy } from '../shared/group-by.js';

/** The checkout figures of a simulation report: what became of the held purchases, and how fast. */
export interface CheckoutFigures {
  holdSeconds: number;
  /** The buyer mix played (shares of held purchases), or null when buyers only followed. */
  mix: Record<string, number> | null;
  /** Purchases that held tickets at some point. */
  held: number;
  confirmed: number;
  declinedThenPaid: number;
  threeDSecure: number;
  cancelled: number;
  expired: number;
  /** Purchases seen waitlisted, and those of them that were then served (held) from the waitlist. */
  waitlisted: number;
  servedFromWaitlist: number;
  refunded: number;
  ticketsConfirmed: number;
  /** Tickets confirmed, divided by the seconds from the opening until the last confirmation was seen. */
  ticketsConfirmedPerSec: number;
  /** Seconds from the opening until every accepted purchase was seen final (null: some never were). */
  allFinalSec: number | null;
}

/** A purchase's payment history as `GET /api/purchases/:id/payments` gives it (admin). */
export interface PaymentBooks {
  /** The payment as onsale records it now (a purchase's final view may predate its settling). */
  payment: { status: string } | null;
  refunded: boolean;
  history: Array<{ at: string; kind: string; detail: string | null }>;
}

export function checkoutFigures(input: {
  holdSeconds: number;
  mix: Record<string, number> | null;
  t0: number;
  finals: ReadonlyMap<string, FinalPurchase | null>;
  trails: ReadonlyMap<string, Trail>;
  lastConfirmedAt: number | null;
  lastFinalAt: number | null;
}): CheckoutFigures {
  const all = [...input.finals.values()].filter((p): p is FinalPurchase => !!p);
  const count = (ok: (p: FinalPurchase) => boolean) => all.filter(ok).length;
  const trail = (p: FinalPurchase) => input.trails.get(p.purchaseId);
  const confirmed = all.filter((p) => p.status === 'confirmed');
  const ticketsConfirmed = confirmed.reduce((n, p) => n + p.tickets.length, 0);
  const notFinal = [...input.finals.values()].some((p) => !p || !FINAL_STATUSES.has(p.status));
  const seconds = (at: number | null) => (at === null ? null : round(Math.max(0, at - input.t0) / 1000));
  const confirmSec = seconds(input.lastConfirmedAt);
  return {
    holdSeconds: input.holdSeconds,
    mix: input.mix,
    held: count((p) => wasHeld(p) || trail(p)?.held === true),
    confirmed: confirmed.length,
    declinedThenPaid: confirmed.filter((p) => trail(p)?.declinedShown).length,
    threeDSecure: confirmed.filter((p) => trail(p)?.approved3ds).length,
    cancelled: count((p) => p.status === 'cancelled'),
    expired: count((p) => p.status === 'expired'),
    waitlisted: count((p) => trail(p)?.waitlisted === true),
    servedFromWaitlist: count((p) => trail(p)?.waitlisted === true && wasHeld(p)),
    refunded: count((p) => p.refunded === true),
    ticketsConfirmed,
    ticketsConfirmedPerSec: confirmSec ? Math.round(ticketsConfirmed / Math.max(confirmSec, 0.001)) : 0,
    allFinalSec: notFinal ? null : seconds(input.lastFinalAt),
  };
}

const FINAL_STATUSES = new Set(['confirmed', 'rejected', 'expired', 'cancelled']);
const round = (n: number) => Math.round(n * 1000) / 1000;

/**
 * How long payments still processing once every purchase is final may take to settle: a pay request in
 * flight when its hold ran out ends within seconds; one whose answer was not recorded is settled by a worker's
 * reconciler (a first look 10 s after the attempt, then every 30 s once the purchase is final).
 */
export const PAYMENTS_SETTLE_MS = 75_000;

/**
 * The payment books of every purchase that held tickets (no other can have been charged), read as admin.
 * Books whose payment is still processing are read again until it settles or `settleMs` has passed.
 */
export async function readPayments(
  send: Send,
  adminToken: string,
  purchases: Iterable<FinalPurchase | null>,
  options: { concurrency?: number; settleMs?: number; rereadMs?: number } = {},
): Promise<Map<string, PaymentBooks | null>> {
  const { concurrency = 16, settleMs = PAYMENTS_SETTLE_MS, rereadMs = 2_000 } = options;
  const books = new Map<string, PaymentBooks | null>();
  const readAll = async (ids: readonly string[]) => {
    let next = 0;
    const lane = async () => {
      while (next < ids.length) {
        const id = ids[next++]!;
        const answer = await send(requests.paymentHistory(id, adminToken));
        books.set(id, answer.status === 200 ? (answer.body as PaymentBooks) : null);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, ids.length) }, lane));
  };
  const processing = () =>
    [...books].filter(([, b]) => b?.payment?.status === 'processing').map(([id]) => id);

  await readAll([...purchases].filter((p): p is FinalPurchase => !!p && wasHeld(p)).map((p) => p.purchaseId));
  const until = Date.now() + settleMs;
  for (let left = processing(); left.length > 0 && Date.now() < until; left = processing()) {
    await setTimeout(rereadMs);
    await readAll(left);
  }
  return books;
}

/** The distinct payments that succeeded in a purchase's books (an answer and its webhook are one). */
function succeededPayments(books: PaymentBooks): Set<string> {
  const ids = new Set<string>();
  for (const entry of books.history) {
    if (entry.kind !== 'succeeded' && entry.kind !== 'webhook succeeded') continue;
    let paymentId = 'unknown';
    try {
      paymentId = String((JSON.parse(entry.detail ?? '{}') as { paymentId?: string }).paymentId ?? 'unknown');
    } catch {
      // a detail that is not JSON still records a success
    }
    ids.add(paymentId);
  }
  return ids;
}

/**
 * The checkout invariants, checked from outside:
 * - money: every succeeded charge is a confirmed purchase or was refunded, a confirmed purchase with a price
 *   was charged, nothing is charged twice, nothing stays in payment processing;
 * - waitlist_order: tickets go to purchases in acceptance order, through the waitlist too. Of two purchases
 *   for the same ticket types where A was accepted (202) before B was sent and asks no more of each, if both
 *   held tickets then A's hold began no later than B's (holds are equally long, so `holdExpiresAt` dates them).
 */
export function checkCheckout(input: {
  sent: readonly SentPurchase[];
  purchases: ReadonlyMap<string, FinalPurchase | null>;
  payments: ReadonlyMap<string, PaymentBooks | null>;
  /** Ticket type id → price in cents: a purchase that costs nothing is confirmed without a charge. */
  prices: ReadonlyMap<string, number>;
}): Violation[] {
  const violations: Violation[] = [];
  const add = (invariant: Violation['invariant'], detail: string) => {
    if (violations.filter((v) => v.invariant === invariant).length < 20)
      violations.push({ invariant, detail });
  };

  for (const p of input.purchases.values()) {
    if (!p || !wasHeld(p)) continue;
    const books = input.payments.get(p.purchaseId);
    if (!books) {
      add('money', `${p.purchaseId}: its payment books could not be read`);
      continue;
    }
    const charges = succeededPayments(books).size;
    const refunds = books.history.filter((e) => e.kind === 'refunded' || e.kind === 'webhook refunded');
    const price = p.items.reduce((n, i) => n + (input.prices.get(i.ticketTypeId) ?? 0) * i.quantity, 0);
    if (charges > 1) add('money', `${p.purchaseId}: charged ${charges} times`);
    if (p.status === 'confirmed') {
      if (charges === 0 && price > 0) add('money', `${p.purchaseId}: confirmed without a succeeded charge`);
      if (books.refunded) add('money', `${p.purchaseId}: confirmed and refunded`);
    } else if (charges > 0 && !(books.refunded && refunds.length > 0)) {
      add('money', `${p.purchaseId}: ${p.status} after a succeeded charge that was not refunded`);
    }
    if (books.payment?.status === 'processing') add('money', `${p.purchaseId}: payment still processing`);
  }

  const accepted = input.sent
    .filter((r) => r.status === 202 && r.purchaseId)
    .map((r) => ({ r, p: input.purchases.get(r.purchaseId!) }))
    .filter((x): x is { r: SentPurchase; p: FinalPurchase } => !!x.p && wasHeld(x.p) && !!x.p.holdExpiresAt);
  const types = (p: FinalPurchase) =>
    p.items
      .map((i) => i.ticketTypeId)
      .sort()
      .join(',');
  const groups = groupBy(accepted, (x) => types(x.p));
  // Few distinct quantity vectors per group: for each, the latest hold among the purchases answered before
  // a given instant is a prefix maximum, found by binary search (every pair would be quadratic).
  const vectorOf = (p: FinalPurchase) =>
    [...p.items].sort((x, y) => (x.ticketTypeId < y.ticketTypeId ? -1 : 1)).map((i) => i.quantity);
  for (const group of groups.values()) {
    const byVector = new Map<string, { vector: number[]; sorted: typeof accepted; latest: number[] }>();
    for (const x of group) {
      const key = vectorOf(x.p).join(',');
      const entry = byVector.get(key) ?? { vector: vectorOf(x.p), sorted: [], latest: [] };
      entry.sorted.push(x);
      byVector.set(key, entry);
    }
    for (const entry of byVector.values()) {
      entry.sorted.sort((x, y) => x.r.answeredAt - y.r.answeredAt);
      entry.sorted.forEach((x, i) => {
        const prev = i > 0 ? entry.sorted[entry.latest[i - 1]!]! : null;
        entry.latest.push(!prev || x.p.holdExpiresAt! > prev.p.holdExpiresAt! ? i : entry.latest[i - 1]!);
      });
    }
    for (const b of group) {
      const bVector = vectorOf(b.p);
      for (const entry of byVector.values()) {
        if (entry.vector.some((q, i) => q > bVector[i]!)) continue;
        // The purchases of this vector answered before b was sent: the first `n` of sorted.
        let lo = 0;
        let hi = entry.sorted.length;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (entry.sorted[mid]!.r.answeredAt < b.r.sentAt) lo = mid + 1;
          else hi = mid;
        }
        if (lo === 0) continue;
        const a = entry.sorted[entry.latest[lo - 1]!]!;
        if (a.p.holdExpiresAt! > b.p.holdExpiresAt!) {
          add(
            'waitlist_order',
            `${a.p.purchaseId} (accepted first) was held until ${a.p.holdExpiresAt}, later than ` +
              `${b.p.purchaseId} (accepted after) until ${b.p.holdExpiresAt}`,
          );
        }
      }
    }
  }
  return violations;
}
