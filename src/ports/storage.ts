import type { PurchaseOutcome } from '../domain/batch.js';
import type { InlineAck } from './queue.js';
import type { PaymentRefusal, ProviderAnswer, StatusChange } from '../domain/checkout.js';
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
   *
   * `ack`, when the queue's tables live in this storage's own database (the same URL), takes the batch off
   * the queue in the same transaction, also when every purchase was applied before: one commit less per
   * batch, and no batch can stay queued once applied.
   */
  applyBatch(eventId: string, purchases: readonly AcceptedPurchase[], ack?: InlineAck): Promise<BatchResult>;

  // Checkout (events with holds). Each call is one transaction; the decisions are src/domain/checkout.ts's,
  // and every status change is conditional on the status it was read in, so concurrent callers (several
  // web servers and workers) each take effect at most once.

  /**
   * Ends up to `limit` holds whose holdExpiresAt is at or before `now`: expired, tickets back on sale,
   * waitlisted purchases served. Returns the status changes made (none when another process was first).
   */
  expireHolds(now: Date, limit: number): Promise<StatusChange[]>;
  /** Cancels a held or waitlisted purchase (see cancelDecision()); null for an unknown purchase. */
  cancelPurchase(purchaseId: string, now: Date): Promise<CancelResult | null>;
  /**
   * Records a payment attempt, durably, before the provider is called: when it is payable (refusal null),
   * the payment turns `processing` and a worker will reconcile it with the provider should the caller
   * never record the answer. Returns the purchase and its total; null for an unknown purchase.
   */
  beginPayment(purchaseId: string, attemptKey: string, now: Date): Promise<PaymentStart | null>;
  /**
   * Records what the provider said of a purchase's payment (an answer to a charge, a retrieve, or a
   * webhook, then with its provider event id: a delivery seen before changes nothing) and applies it: a
   * succeeded charge confirms a held purchase, or makes a refund due on one that ended unpaid.
   */
  recordPayment(purchaseId: string, update: PaymentUpdate, now: Date): Promise<PaymentRecord>;
  /** Payments a worker must look after now: unsettled ones to reconcile, refunds that are due. */
  paymentWork(now: Date, limit: number): Promise<Array<{ purchaseId: string; refundDue: boolean }>>;
  /** A purchase's payment history, oldest first. */
  paymentHistory(purchaseId: string): Promise<PaymentHistoryEntry[]>;
  /** Durable key-value state for payment providers that keep theirs in onsale's database. */
  providerState(provider: string, key: string): Promise<{ value: string; version: number } | null>;
  /** Writes provider state if its version is still `expected` (null: absent); false when it moved. */
  setProviderState(provider: string, key: string, value: string, expected: number | null): Promise<boolean>;

  /** Throws UnavailableError when the database does not answer. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** What applyBatch did: only the purchases this call applied (none of a batch already applied). */
export interface BatchResult {
  applied: number;
  outcomes: PurchaseOutcome[];
}

export interface CancelResult {
  outcome: 'cancelled' | 'already' | 'not_cancellable';
  purchase: Purchase;
  changes: StatusChange[];
}

export interface PaymentStart {
  refusal: PaymentRefusal | null;
  purchase: Purchase;
  amountCents: number;
}

/** What a provider said of a payment, as recordPayment() takes it. */
export type PaymentUpdate = ProviderAnswer & {
  /** Set for a webhook: the provider and its event id, recorded so that a second delivery does nothing. */
  webhook?: { provider: string; eventId: string };
};

export interface PaymentRecord {
  /** A webhook delivery seen before: nothing was done. */
  duplicate: boolean;
  /** confirmed: the purchase was confirmed now; refund_due: the caller should refund it now. */
  effect: 'confirmed' | 'refund_due' | 'recorded' | 'none';
  purchase: Purchase | null;
  changes: StatusChange[];
}

export interface PaymentHistoryEntry {
  at: string;
  kind: string;
  detail: string | null;
}
