import { OnsaleError } from '../domain/errors.js';
import { queuedPurchase, type Purchase, type SaleEvent } from '../domain/types.js';
import type { Queue } from '../ports/queue.js';
import type { Storage } from '../ports/storage.js';
import { EventCache } from './event-cache.js';

/** The reads the routes and pages share: events through this process's cache, purchases wherever they are. */
export class Lookups {
  readonly #storage: Storage;
  readonly #queue: Queue;
  readonly #events: EventCache;

  constructor(storage: Storage, queue: Queue) {
    this.#storage = storage;
    this.#queue = queue;
    this.#events = new EventCache(storage);
  }

  event(eventId: string): Promise<SaleEvent | null> {
    return this.#events.event(eventId);
  }

  /** The event if it is in this process's cache (it usually is: events are kept for good). */
  knownEvent(eventId: string): SaleEvent | undefined {
    return this.#events.known(eventId);
  }

  async eventOr404(eventId: string): Promise<SaleEvent> {
    const event = await this.#events.event(eventId);
    if (!event) throw new OnsaleError('not_found', `no event ${eventId}`);
    return event;
  }

  /** Tickets left per ticket type, at most AVAILABILITY_TTL_MS old. */
  availability(eventId: string): Promise<Map<string, number>> {
    return this.#events.availability(eventId);
  }

  /** Reads a purchase wherever it is: allocated in storage, or still on the queue. */
  async findPurchase(purchaseId: string): Promise<Purchase | null> {
    const stored = await this.#storage.getPurchase(purchaseId);
    if (stored) return stored;
    const queued = await this.#queue.find(purchaseId);
    if (queued) return queuedPurchase(queued);
    // Allocated and acked between the two reads above: storage has it now.
    return this.#storage.getPurchase(purchaseId);
  }

  async purchaseOr404(purchaseId: string): Promise<Purchase> {
    const purchase = await this.findPurchase(purchaseId);
    if (!purchase) throw new OnsaleError('not_found', `no purchase ${purchaseId}`);
    return purchase;
  }
}

/** An event as the API shows it: each ticket type with the tickets left. */
export function withAvailability(event: SaleEvent, availability: Map<string, number>) {
  return {
    ...event,
    ticketTypes: event.ticketTypes.map((t) => ({ ...t, available: availability.get(t.id) ?? t.capacity })),
  };
}
