import type { SaleEvent } from '../domain/types.js';
import type { Storage } from '../ports/storage.js';

/** How long a read of availability is served before it is read again: below api.md's one-second bound. */
const AVAILABILITY_TTL_MS = 500;

/**
 * Events in this process's memory. An event's definition never changes once created, so it is kept for
 * good; availability is re-read from storage at most every AVAILABILITY_TTL_MS, by one query however many
 * buyers ask at once.
 */
export class EventCache {
  readonly #storage: Storage;
  readonly #events = new Map<string, SaleEvent>();
  readonly #availability = new Map<string, { at: number; value: Promise<Map<string, number>> }>();

  constructor(storage: Storage) {
    this.#storage = storage;
  }

  /** The event if this process has it already: no promise, for the purchase route's every request. */
  known(eventId: string): SaleEvent | undefined {
    return this.#events.get(eventId);
  }

  async event(eventId: string): Promise<SaleEvent | null> {
    const known = this.#events.get(eventId);
    if (known) return known;
    const event = await this.#storage.getEvent(eventId);
    if (event) {
      if (this.#events.size > 10_000) this.#events.clear();
      this.#events.set(eventId, event);
    }
    return event;
  }

  async availability(eventId: string, now = Date.now()): Promise<Map<string, number>> {
    const cached = this.#availability.get(eventId);
    if (cached && now - cached.at < AVAILABILITY_TTL_MS) return cached.value;
    const value = this.#storage.getAvailability(eventId);
    // A failed read is not cached: the next request tries again.
    value.catch(() => this.#availability.delete(eventId));
    this.#availability.set(eventId, { at: now, value });
    return value;
  }
}
