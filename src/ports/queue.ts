import type { AcceptedPurchase } from '../domain/types.js';

/**
 * A Queue durably carries accepted purchases from web servers to workers, in acceptance order per event.
 * Delivery is at least once: a batch that is claimed and not acked (its worker died) is delivered again
 * after its lease runs out, and Storage.applyBatch makes the second delivery harmless.
 */
export interface Queue {
  migrate(): Promise<void>;

  /**
   * Records purchases durably; when the returned promise resolves, each accepted one survives the crash of
   * any process. Idempotency keys are resolved here, atomically with the write: a key already used by the
   * same buyer for the same event returns the first purchase's id, or a conflict if the body differs.
   */
  enqueue(requests: readonly EnqueueRequest[]): Promise<EnqueueResult[]>;

  /**
   * Leases the oldest queued purchases of one event (up to `max`, in acceptance order) to this worker.
   * While the lease lasts no other worker gets that event, which keeps first come, first served.
   */
  claim(workerId: string, max: number, leaseMs: number): Promise<ClaimedBatch | null>;
  /** Removes a batch whose effect is committed to storage. */
  ack(batch: ClaimedBatch): Promise<void>;
  /** Hands a batch back undone (the worker is stopping or failed), so another worker can take it now. */
  release(batch: ClaimedBatch, failure?: string): Promise<void>;

  /** A purchase still on the queue, or null. */
  find(purchaseId: string): Promise<AcceptedPurchase | null>;
  /** Queued purchases in all, and the acceptance time of the oldest. */
  depth(): Promise<{ depth: number; oldestAcceptedAt: string | null }>;
  /** Queued purchases of one event. */
  depthOf(eventId: string): Promise<number>;

  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface EnqueueRequest {
  purchase: AcceptedPurchase;
  /** Client's Idempotency-Key, with a hash of the request body to tell a replay from a conflict. */
  idempotency?: { key: string; requestHash: string };
}

export type EnqueueResult =
  | { status: 'accepted'; purchaseId: string }
  | { status: 'duplicate'; purchaseId: string }
  | { status: 'conflict' };

export interface ClaimedBatch {
  eventId: string;
  purchases: AcceptedPurchase[];
  /** Adapter data that identifies the lease and the entries (sequence numbers, delivery tags…). */
  receipt: unknown;
}
