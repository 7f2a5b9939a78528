/**
 * The invariants of api.md, checked from outside the system: from what clients saw (when each purchase was
 * sent and when its 202 came back) and what the API reports afterwards. Used by the tests and the simulator.
 */

export interface ItemView {
  ticketTypeId: string;
  quantity: number;
}

/** One purchase request as a client saw it. */
export interface SentPurchase {
  buyerId: string;
  items: ItemView[];
  /** performance-clock time the request was sent, and its answer arrived. */
  sentAt: number;
  answeredAt: number;
  /** HTTP status; only 200/202 carry a purchaseId. */
  status: number;
  /** Why a request has status 0: the network error, or an answer whose body was not JSON. */
  failure?: string;
  purchaseId?: string;
  /** The Idempotency-Key it was sent with, if any: sending it again tells what became of an unanswered one. */
  idempotencyKey?: string;
  /**
   * The answer itself was final (a synchronous shop, bench/shops): it dates the purchase for first come, first
   * served as a 202 does.
   */
  synchronous?: boolean;
}

export interface FinalPurchase {
  purchaseId: string;
  buyerId: string;
  status: string;
  reason: string | null;
  items: ItemView[];
  tickets: Array<{ id: string; ticketTypeId: string; code: string }>;
  /**
   * Events with holds: when the hold ran or runs out, whether a late charge was refunded. The payment is
   * judged from its books, read after the sale (see checkCheckout), not from this view.
   */
  holdExpiresAt?: string | null;
  refunded?: boolean;
}

export interface StockView {
  id: string;
  capacity: number;
  sold: number;
  held: number;
  available: number;
  maxPerBuyer: number;
}

export interface Violation {
  invariant:
    | 'no_oversell'
    | 'nothing_lost'
    | 'no_double_effect'
    | 'per_buyer_limit'
    | 'first_come_first_served'
    | 'waitlist_order'
    | 'money';
  detail: string;
}

const STOCK_REASONS = new Set(['sold_out', 'insufficient_inventory']);

/** Whether a purchase held tickets at some point, from what the API says of it now. */
export function wasHeld(p: FinalPurchase): boolean {
  return (
    p.status === 'held' ||
    p.status === 'confirmed' ||
    p.status === 'expired' ||
    (p.status === 'cancelled' && !!p.holdExpiresAt)
  );
}
const FINAL = new Set(['confirmed', 'rejected', 'expired', 'cancelled']);

export function checkInvariants(input: {
  sent: readonly SentPurchase[];
  /** What GET /api/purchases/:id answered for every accepted purchaseId, after the queue drained. */
  purchases: ReadonlyMap<string, FinalPurchase | null>;
  stock: readonly StockView[];
}): Violation[] {
  const violations: Violation[] = [];
  const add = (invariant: Violation['invariant'], detail: string) => {
    if (violations.filter((v) => v.invariant === invariant).length < 20)
      violations.push({ invariant, detail });
  };

  // 1. No oversell, and the stock figures agree with the tickets issued.
  const issued = new Map<string, number>();
  for (const p of input.purchases.values()) {
    if (p?.status !== 'confirmed' && p?.status !== 'held') continue;
    for (const t of p.tickets) issued.set(t.ticketTypeId, (issued.get(t.ticketTypeId) ?? 0) + 1);
  }
  for (const s of input.stock) {
    if (s.sold + s.held > s.capacity)
      add('no_oversell', `${s.id}: sold ${s.sold} + held ${s.held} > ${s.capacity}`);
    if (s.sold + s.held + s.available !== s.capacity) {
      add(
        'no_oversell',
        `${s.id}: sold + held + available = ${s.sold + s.held + s.available} ≠ ${s.capacity}`,
      );
    }
    if ((issued.get(s.id) ?? 0) > s.capacity)
      add('no_oversell', `${s.id}: ${issued.get(s.id)} tickets issued`);
  }

  // 2. Nothing lost: every accepted purchase is known and final.
  const accepted = input.sent.filter(
    (r) => r.purchaseId && (r.status === 202 || r.status === 200 || r.synchronous),
  );
  for (const r of accepted) {
    const p = input.purchases.get(r.purchaseId!);
    if (!p) add('nothing_lost', `purchase ${r.purchaseId} was accepted but is unknown`);
    else if (!FINAL.has(p.status)) add('nothing_lost', `purchase ${r.purchaseId} is still ${p.status}`);
  }

  // 3. No double effect: unique ticket codes, tickets matching the items exactly, one purchase per 202.
  const codes = new Set<string>();
  for (const p of input.purchases.values()) {
    if (!p) continue;
    for (const t of p.tickets) {
      if (codes.has(t.code)) add('no_double_effect', `ticket code ${t.code} issued twice`);
      codes.add(t.code);
    }
    const expected = p.status === 'confirmed' || p.status === 'held' ? p.items : [];
    for (const item of expected) {
      const n = p.tickets.filter((t) => t.ticketTypeId === item.ticketTypeId).length;
      if (n !== item.quantity)
        add(
          'no_double_effect',
          `${p.purchaseId}: ${n} tickets of ${item.ticketTypeId}, asked ${item.quantity}`,
        );
    }
    if (expected.length === 0 && p.tickets.length > 0)
      add('no_double_effect', `${p.purchaseId} is ${p.status} but has tickets`);
  }
  const ids = new Set<string>();
  for (const r of input.sent) {
    if (r.status !== 202 || !r.purchaseId) continue;
    if (ids.has(r.purchaseId)) add('no_double_effect', `purchaseId ${r.purchaseId} answered 202 twice`);
    ids.add(r.purchaseId);
  }
  const soldByType = new Map(input.stock.map((s) => [s.id, s.sold + s.held]));
  for (const [typeId, n] of issued) {
    if (soldByType.has(typeId) && soldByType.get(typeId) !== n) {
      add(
        'no_double_effect',
        `${typeId}: stock says ${soldByType.get(typeId)} sold or held, ${n} tickets found`,
      );
    }
  }

  // 4. Per-buyer limit.
  const limit = new Map(input.stock.map((s) => [s.id, s.maxPerBuyer]));
  const perBuyer = new Map<string, number>();
  for (const p of input.purchases.values()) {
    if (p?.status !== 'confirmed' && p?.status !== 'held') continue;
    for (const item of p.items) {
      const key = `${p.buyerId}\u0000${item.ticketTypeId}`;
      perBuyer.set(key, (perBuyer.get(key) ?? 0) + item.quantity);
    }
  }
  for (const [key, n] of perBuyer) {
    const [buyer, typeId] = key.split('\u0000') as [string, string];
    const max = limit.get(typeId);
    if (max !== undefined && n > max)
      add('per_buyer_limit', `buyer ${buyer} has ${n} of ${typeId}, limit ${max}`);
  }

  // 5. First come, first served (api.md's concrete form): A answered 202 before B was sent, both ask for the
  // same ticket types, A asks no more of each, B got tickets ⇒ A was not refused for lack of stock.
  // An idempotent replay (200) is not a new acceptance: only the 202 (or a synchronous final answer) dates a
  // purchase.
  const outcomes = accepted
    .filter((r) => r.status === 202 || r.synchronous)
    .map((r) => ({ r, p: input.purchases.get(r.purchaseId!) }))
    .filter((x): x is { r: SentPurchase; p: FinalPurchase } => !!x.p);
  const signature = (items: ItemView[]) =>
    items
      .map((i) => i.ticketTypeId)
      .sort()
      .join(',');
  const groups = new Map<string, typeof outcomes>();
  for (const o of outcomes) {
    const key = signature(o.p.items);
    const group = groups.get(key);
    if (group) group.push(o);
    else groups.set(key, [o]);
  }
  // A crowd has hundreds of thousands of purchases but few distinct quantity vectors per group: comparing each
  // served purchase with the earliest-answered refused purchase of every vector is the same check, in linear
  // time (every pair would be hours for the standard sale).
  const vectorOf = (items: ItemView[]) =>
    [...items]
      .sort((x, y) => (x.ticketTypeId < y.ticketTypeId ? -1 : 1))
      .map((i) => i.quantity)
      .join(',');
  for (const group of groups.values()) {
    const earliestRefused = new Map<string, (typeof outcomes)[number]>();
    for (const o of group) {
      if (o.p.status !== 'rejected' || !STOCK_REASONS.has(o.p.reason ?? '')) continue;
      const v = vectorOf(o.p.items);
      const known = earliestRefused.get(v);
      if (!known || o.r.answeredAt < known.r.answeredAt) earliestRefused.set(v, o);
    }
    if (earliestRefused.size === 0) continue;
    for (const b of group) {
      // Tickets held and then let go (expired, cancelled) were tickets served all the same.
      if (!wasHeld(b.p)) continue;
      for (const a of earliestRefused.values()) {
        if (a.r.answeredAt >= b.r.sentAt) continue;
        const asksNoMore = a.p.items.every(
          (ai) => ai.quantity <= (b.p.items.find((bi) => bi.ticketTypeId === ai.ticketTypeId)?.quantity ?? 0),
        );
        if (asksNoMore) {
          add(
            'first_come_first_served',
            `${a.p.purchaseId} (accepted first) was refused ${a.p.reason} while later ${b.p.purchaseId} got tickets`,
          );
        }
      }
    }
  }
  return violations;
}
