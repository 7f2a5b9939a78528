import { allocate, buyerKey, type Allocation, type StockLevel, type TicketGenerator } from './allocation.js';
import type { AcceptedPurchase, RejectReason } from './types.js';

/** What became of one purchase of a batch (for metrics and logs). */
export interface PurchaseOutcome {
  purchaseId: string;
  acceptedAt: string;
  outcome: 'confirmed' | 'held' | 'waitlisted' | 'rejected';
  reason: RejectReason | null;
}

/** Tickets a batch adds to one buyer's total of one ticket type. */
interface BoughtDelta {
  /** The canonical buyer id: totals are stored by it. */
  buyerId: string;
  ticketTypeId: string;
  quantity: number;
}

/** Everything a storage adapter writes for one batch, in one transaction. */
interface BatchPlan {
  /** The purchases not applied before, decided in the order given: one purchase record each. */
  decisions: Allocation[];
  /** What became of each of `decisions`, in the same order. */
  outcomes: PurchaseOutcome[];
  /** Purchases of `decisions` per outcome. */
  counts: Record<PurchaseOutcome['outcome'], number>;
  /** Tickets added to buyers' totals, one entry per (buyer, ticket type), keyed by buyerKey(). */
  bought: Map<string, BoughtDelta>;
  /**
   * Tickets sold per ticket type. Storage adds each only where it still fits and rolls the batch back
   * otherwise, so a plan made from stale stock can never oversell.
   */
  sold: Map<string, number>;
  /** Tickets newly held per ticket type (events with holds), added the same guarded way as `sold`. */
  held: Map<string, number>;
  /** The time a held purchase of this batch must be paid by, when the event has holds. */
  holdExpiresAt: string | null;
}

/**
 * The buyers (canonical ids) whose totals a batch needs: those of the purchases not yet applied, each once. None means the
 * whole batch was applied before (a redelivery), and there is nothing to plan.
 */
export function pendingBuyers(
  purchases: readonly AcceptedPurchase[],
  applied: ReadonlySet<string>,
): string[] {
  const buyers = new Set<string>();
  for (const p of purchases) if (!applied.has(p.purchaseId)) buyers.add(p.canonicalBuyerId);
  return [...buyers];
}

/**
 * Decides a batch of one event's purchases: skips those already `applied` (so a redelivered batch has the
 * effect of one), allocates the rest first come first served against `stock` and the buyers' totals in
 * `bought` (keyed by buyerKey(), as committed before the batch), and says what to write. Both maps are
 * updated in place to the state after the batch. Ticket ids and codes come from `generate`.
 */
export function planBatch(
  purchases: readonly AcceptedPurchase[],
  applied: ReadonlySet<string>,
  stock: Map<string, StockLevel>,
  bought: Map<string, number>,
  generate: TicketGenerator,
  hold: { holdSeconds: number; now: Date } = { holdSeconds: 0, now: new Date(0) },
): BatchPlan {
  const pending = applied.size === 0 ? purchases : purchases.filter((p) => !applied.has(p.purchaseId));
  const holds = hold.holdSeconds > 0;
  const decisions = allocate(pending, stock, bought, generate, holds);
  const outcomes: PurchaseOutcome[] = [];
  const added = new Map<string, BoughtDelta>();
  const sold = new Map<string, number>();
  const held = new Map<string, number>();
  const counts = { confirmed: 0, held: 0, waitlisted: 0, rejected: 0 };
  for (const decision of decisions) {
    const p = decision.purchase;
    outcomes.push({
      purchaseId: p.purchaseId,
      acceptedAt: p.acceptedAt,
      outcome: decision.outcome,
      reason: decision.outcome === 'rejected' ? decision.reason : null,
    });
    counts[decision.outcome] += 1;
    if (decision.outcome === 'rejected') continue;
    for (const item of p.items) {
      const key = buyerKey(p.canonicalBuyerId, item.ticketTypeId);
      const sum = added.get(key);
      if (sum) sum.quantity += item.quantity;
      else
        added.set(key, {
          buyerId: p.canonicalBuyerId,
          ticketTypeId: item.ticketTypeId,
          quantity: item.quantity,
        });
      // A waitlisted purchase reserves its share of the buyer's limit, and no ticket.
      if (decision.outcome === 'waitlisted') continue;
      const into = decision.outcome === 'held' ? held : sold;
      into.set(item.ticketTypeId, (into.get(item.ticketTypeId) ?? 0) + item.quantity);
    }
  }
  const holdExpiresAt = holds ? new Date(hold.now.getTime() + hold.holdSeconds * 1000).toISOString() : null;
  return { decisions, outcomes, counts, bought: added, sold, held, holdExpiresAt };
}
