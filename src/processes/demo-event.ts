import type { SaleEvent } from '../domain/types.js';
import type { Storage } from '../ports/storage.js';

/** The event a fresh `onsale start` opens, so a newcomer has something to buy at once. */
export function createDemoEvent(storage: Storage): Promise<SaleEvent> {
  return storage.createEvent({
    name: 'DJ Night (demo)',
    salesOpenAt: new Date().toISOString(),
    // Paid with holds: the buyer has 5 minutes to pay (the test payment provider unless configured).
    holdSeconds: 300,
    // The buyer page asks for an email: the demo takes nothing else, so one person is one buyer.
    buyerIdKind: 'email',
    ticketTypes: [
      { name: 'General admission', priceCents: 5000, capacity: 5000, maxPerBuyer: 4 },
      { name: 'VIP', priceCents: 15000, capacity: 200, maxPerBuyer: 2 },
    ],
  });
}
