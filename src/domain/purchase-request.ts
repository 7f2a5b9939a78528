import { OnsaleError } from './errors.js';
import type { PurchaseItem, SaleEvent } from './types.js';

/**
 * What makes a purchase request acceptable onto the queue, checked against its event at `now` (ms since
 * the epoch): every item names one of the event's ticket types, once, within the per-buyer limit, and
 * sales are open. Whether stock is left is not checked here: allocate() decides that later, in acceptance
 * order. Returns the error that refuses the request, or null when it can be accepted.
 */
export function purchaseRefusal(
  event: SaleEvent,
  items: readonly PurchaseItem[],
  now: number,
): OnsaleError | null {
  const seen = new Set<string>();
  for (const item of items) {
    const type = event.ticketTypes.find((t) => t.id === item.ticketTypeId);
    if (!type)
      return new OnsaleError('not_found', `event ${event.id} has no ticket type ${item.ticketTypeId}`);
    if (seen.has(item.ticketTypeId)) {
      return new OnsaleError('invalid_request', `ticket type ${item.ticketTypeId} appears twice in items`);
    }
    seen.add(item.ticketTypeId);
    if (item.quantity > type.maxPerBuyer) {
      return new OnsaleError(
        'invalid_request',
        `quantity of ${item.ticketTypeId} must be at most ${type.maxPerBuyer} (maxPerBuyer)`,
      );
    }
  }
  if (Date.parse(event.salesOpenAt) > now) {
    return new OnsaleError('sales_not_open', `sales open at ${event.salesOpenAt}`);
  }
  return null;
}
