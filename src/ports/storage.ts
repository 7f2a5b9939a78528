import type { PurchaseOutcome } from '../domain/batch.js';
import type {
  AcceptedPurchase,
  EventStats,
  NewEvent,
  Purchase,
  PurchaseStatus,
  SaleEvent,
} from '../domain/types.js';

/**
 * Storage is the system of record: events, their stock, purchases and tickets. Adapters (one folder per
 * engine under src/adapters) expose no connection or transaction type; failures of the engine surface as
 * UnavailableError so callers can answer 503 or retry.
 */
export interface Storage {
  /** Creates or upgrades the schema. Safe to run from several processes at once. */
  migrate(): Promise<void>;

  createEvent(event: NewEvent): Promise<SaleEvent>;
  listEvents(): Promise<Array<Pick<SaleEvent, 'id' | 'name' | 'salesOpenAt'>>>;
  getEvent(eventId: string): Promise<SaleEvent | null>;
  /** Tickets left per ticket type id, read from the system of record. */
  getAvailability(eventId: string): Promise<Map<string, number>>;
  /** Exact stock and purchase counts; `queued` is left at 0 for the caller to fill from the queue. */
  getStats(eventId: string): Promise<EventStats | null>;

  /** An allocated purchase; null while it is only on the queue (or unknown). */
  getPurchase(purchaseId: string): Promise<Purchase | null>;
  /** Current status and last change of allocated purchases, for status streams; unknown ids are absent. */
  getStatuses(
    purchaseIds: readonly string[],
  ): Promise<Map<string, { status: PurchaseStatus; updatedAt: string }>>;
  /**
   * The allocated purchases of an event (queued ones are on the queue), newest accepted first, at most
   * `limit`. With `match`, only those whose purchase id is exactly `match` or whose buyer id canonicalizes
   * (src/domain/buyer.ts) as `match` does. For the admin page: it may scan the event's purchases, so it is
   * not for the hot path.
   */
  listPurchases(eventId: string, options: { match?: string; limit: number }): Promise<Purchase[]>;

  /**
   * One page of an event's allocated purchases in purchase id order: those after `afterId` (null: from the
   * start), at most `limit`. For exports: a caller reads page after page, holding one page at a time.
   */
  purchasesPage(eventId: string, afterId: string | null, limit: number): Promise<Purchase[]>;

  /**
   * Allocates a batch of one event's purchases in the order given, in one transaction. A purchase already
   * applied (a redelivered batch) is skipped, so applying the same batch twice has the effect of once.
   * Returns how many purchases this call applied, and what became of each of them (for metrics and logs).
   */
  applyBatch(eventId: string, purchases: readonly AcceptedPurchase[]): Promise<BatchResult>;

  /** Throws UnavailableError when the database does not answer. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** What applyBatch did: only the purchases this call applied (none of a batch already applied). */
export interface BatchResult {
  applied: number;
  outcomes: PurchaseOutcome[];
}
