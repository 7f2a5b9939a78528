import { randomUUID } from 'node:crypto';
import type { AcceptedPurchase } from '../../src/domain/types.js';

/** A purchase of one ticket of `ticketTypeId`, by a new buyer, as a web server queues it. */
export function acceptedPurchase(eventId: string, ticketTypeId = 'tt'): AcceptedPurchase {
  const buyerId = `b-${randomUUID()}`;
  return {
    purchaseId: randomUUID(),
    eventId,
    buyerId,
    canonicalBuyerId: buyerId,
    items: [{ ticketTypeId, quantity: 1 }],
    acceptedAt: new Date().toISOString(),
  };
}
