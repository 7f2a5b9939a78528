import type { AcceptedPurchase, PurchaseItem, RejectReason } from './types.js';

/** What the allocator needs to know of one ticket type, as committed before the batch. */
export interface StockLevel {
  capacity: number;
  sold: number;
  held: number;
  maxPerBuyer: number;
}

export type Allocation =
  | {
      purchase: AcceptedPurchase;
      outcome: 'confirmed';
      tickets: Array<{ id: string; ticketTypeId: string; code: string }>;
    }
  /** Holds: its tickets are reserved (counted in `held`) until paid, cancelled or expired. */
  | { purchase: AcceptedPurchase; outcome: 'held' }
  /** Holds: nothing free now, but a return of held tickets could serve it (src/domain/checkout.ts). */
  | { purchase: AcceptedPurchase; outcome: 'waitlisted' }
  | { purchase: AcceptedPurchase; outcome: 'rejected'; reason: RejectReason };

/**
 * Makes `count` fresh ticket ids and codes at once (src/shared/ids.ts makes them random; a test passes a
 * counter, so that allocation is deterministic).
 */
export type TicketGenerator = (count: number) => Array<{ id: string; code: string }>;

/** The key of one buyer's total of one ticket type; `canonicalBuyerId` as src/domain/buyer.ts makes it. */
export function buyerKey(canonicalBuyerId: string, ticketTypeId: string): string {
  return `${ticketTypeId}\u0000${canonicalBuyerId}`;
}

/**
 * Decides a batch of one event's purchases, strictly in the order given (acceptance order), all or nothing
 * per purchase. Mutates `stock` and `bought` so the caller can write back exactly what changed.
 *
 * With `holds` (an event with holdSeconds > 0) a purchase that fits is `held` rather than confirmed (its
 * tickets move to `held`, none are issued yet), and one that does not fit what is available but would fit
 * if every held ticket came back is `waitlisted`: it keeps its place and reserves its share of the buyer's
 * limit. Only a purchase that no return could serve is rejected. Waitlisted purchases of earlier batches
 * need no look here: whenever tickets return they are served first (checkout.ts), so none of them fits
 * what is available, and neither does a later purchase asking as much.
 *
 * Invariants kept here and re-checked by storage constraints:
 * - sold + held never exceeds capacity (no oversell);
 * - a buyer's tickets of a type, over all their purchases, never exceed maxPerBuyer.
 * A purchase naming an unknown ticket type cannot reach here: the web server refuses it with 404.
 */
export function allocate(
  purchases: readonly AcceptedPurchase[],
  stock: Map<string, StockLevel>,
  bought: Map<string, number>,
  generate: TicketGenerator,
  holds = false,
): Allocation[] {
  const decisions: Array<{ purchase: AcceptedPurchase; reason: RejectReason | 'waitlisted' | null }> = [];
  let ticketCount = 0;
  for (const purchase of purchases) {
    let reason: RejectReason | 'waitlisted' | null = refusal(purchase, stock, bought);
    if (holds && reason !== null && reason !== 'limit_exceeded') {
      reason = couldReturn(purchase, stock) ? 'waitlisted' : noReturnReason(purchase, stock);
    }
    decisions.push({ purchase, reason });
    if (reason !== null && reason !== 'waitlisted') continue;
    for (const item of purchase.items) {
      const key = buyerKey(purchase.canonicalBuyerId, item.ticketTypeId);
      bought.set(key, (bought.get(key) ?? 0) + item.quantity);
      if (reason === 'waitlisted') continue;
      if (holds) stock.get(item.ticketTypeId)!.held += item.quantity;
      else stock.get(item.ticketTypeId)!.sold += item.quantity;
      ticketCount += item.quantity;
    }
  }
  if (holds) {
    return decisions.map(({ purchase, reason }): Allocation => {
      if (reason === null) return { purchase, outcome: 'held' };
      if (reason === 'waitlisted') return { purchase, outcome: 'waitlisted' };
      return { purchase, outcome: 'rejected', reason };
    });
  }
  // Ids for the whole batch at once: one call to the CSPRNG rather than one per purchase.
  const fresh = generate(ticketCount);
  let next = 0;
  return decisions.map(({ purchase, reason }): Allocation => {
    if (reason) return { purchase, outcome: 'rejected', reason: reason as RejectReason };
    const tickets: Array<{ id: string; ticketTypeId: string; code: string }> = [];
    for (const item of purchase.items) {
      for (let i = 0; i < item.quantity; i++)
        tickets.push({ ...fresh[next++]!, ticketTypeId: item.ticketTypeId });
    }
    return { purchase, outcome: 'confirmed', tickets };
  });
}

/** Whether the purchase would fit if every held ticket of its types came back. */
export function couldReturn(
  purchase: { items: readonly PurchaseItem[] },
  stock: Map<string, StockLevel>,
): boolean {
  return purchase.items.every((item) => {
    const level = stock.get(item.ticketTypeId)!;
    return level.capacity - level.sold >= item.quantity;
  });
}

/** Whether the purchase fits what is available now. */
export function fitsNow(
  purchase: { items: readonly PurchaseItem[] },
  stock: Map<string, StockLevel>,
): boolean {
  return purchase.items.every((item) => {
    const level = stock.get(item.ticketTypeId)!;
    return level.capacity - level.sold - level.held >= item.quantity;
  });
}

/** Why a purchase that no return could serve is rejected: sold_out when a type has nothing left at all. */
export function noReturnReason(
  purchase: { items: readonly PurchaseItem[] },
  stock: Map<string, StockLevel>,
): RejectReason {
  return purchase.items.some((item) => {
    const level = stock.get(item.ticketTypeId)!;
    return level.capacity - level.sold <= 0;
  })
    ? 'sold_out'
    : 'insufficient_inventory';
}

function refusal(
  purchase: AcceptedPurchase,
  stock: Map<string, StockLevel>,
  bought: Map<string, number>,
): RejectReason | null {
  // The limit is checked first: a buyer over their limit is told so even when the sale is also sold out,
  // since buying fewer would not help them either way.
  for (const item of purchase.items) {
    const level = stock.get(item.ticketTypeId);
    if (!level) throw new Error(`ticket type ${item.ticketTypeId} is not part of event ${purchase.eventId}`);
    const already = bought.get(buyerKey(purchase.canonicalBuyerId, item.ticketTypeId)) ?? 0;
    if (already + item.quantity > level.maxPerBuyer) return 'limit_exceeded';
  }
  let shortfall = false;
  for (const item of purchase.items) {
    const level = stock.get(item.ticketTypeId)!;
    const available = level.capacity - level.sold - level.held;
    if (available <= 0) return 'sold_out';
    if (available < item.quantity) shortfall = true;
  }
  return shortfall ? 'insufficient_inventory' : null;
}
