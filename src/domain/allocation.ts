import type { AcceptedPurchase, RejectReason } from './types.js';

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
): Allocation[] {
  const decisions: Array<{ purchase: AcceptedPurchase; reason: RejectReason | null }> = [];
  let ticketCount = 0;
  for (const purchase of purchases) {
    const reason = refusal(purchase, stock, bought);
    decisions.push({ purchase, reason });
    if (reason) continue;
    for (const item of purchase.items) {
      stock.get(item.ticketTypeId)!.sold += item.quantity;
      const key = buyerKey(purchase.canonicalBuyerId, item.ticketTypeId);
      bought.set(key, (bought.get(key) ?? 0) + item.quantity);
      ticketCount += item.quantity;
    }
  }
  // Ids for the whole batch at once: one call to the CSPRNG rather than one per purchase.
  const fresh = generate(ticketCount);
  let next = 0;
  return decisions.map(({ purchase, reason }): Allocation => {
    if (reason) return { purchase, outcome: 'rejected', reason };
    const tickets: Array<{ id: string; ticketTypeId: string; code: string }> = [];
    for (const item of purchase.items) {
      for (let i = 0; i < item.quantity; i++)
        tickets.push({ ...fresh[next++]!, ticketTypeId: item.ticketTypeId });
    }
    return { purchase, outcome: 'confirmed', tickets };
  });
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
