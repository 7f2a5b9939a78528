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
  /**
   * As claim, made while this worker's `pending` batch is still being applied: what comes after it, as if
   * it were acked (the same event's purchases from after its last, or another event's), with the lease
   * renewed but no delivery counted against the event's head. The worker loop claims its next batch beside
   * the current one's transaction this way. Optional: a queue without it is claimed one batch at a time.
   */
  claimNext?(
    workerId: string,
    max: number,
    leaseMs: number,
    pending: ClaimedBatch,
  ): Promise<ClaimedBatch | null>;
  /** Removes a batch (or a head of it, see headOf) whose effect is committed to storage. */
  ack(batch: ClaimedBatch): Promise<void>;
  /**
   * The ack of `batch` as a storage on the same database can run it inside applyBatch's own transaction
   * (queues whose entries are rows of tables: SQLite, PostgreSQL). Absent for the others.
   */
  inlineAck?(batch: ClaimedBatch): InlineAck | null;
  /** Hands a batch back undone (the worker is stopping), so another worker can take it at once. */
  release(batch: ClaimedBatch): Promise<void>;

  /**
   * Moves the purchases of `batch` (typically a head of one, see headOf) out of the queue into the
   * dead-letter place, with the reason. They are not lost: find() still returns them (queued, for the buyer)
   * until they are replayed.
   */
  deadLetter(batch: ClaimedBatch, reason: string): Promise<void>;
  /** Dead letters, oldest first. */
  deadLetters(limit: number): Promise<DeadLetter[]>;
  /** Puts dead letters (all, or those named) back at the tail of their event's queue; returns how many. */
  replayDeadLetters(purchaseIds?: readonly string[]): Promise<number>;

  /** A purchase still on the queue or among the dead letters, or null. */
  find(purchaseId: string): Promise<AcceptedPurchase | null>;
  /** Queued purchases in all (dead letters not counted), and the acceptance time of the oldest. */
  depth(): Promise<{ depth: number; oldestAcceptedAt: string | null }>;
  /** Queued purchases and dead letters of one event. */
  depthOf(eventId: string): Promise<{ queued: number; deadLetters: number }>;

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
  | { status: 'conflict' }
  /**
   * Not written, and not for this request's fault: the part of the queue holding its event does not
   * answer (one shard of several is down). The others of the same call were written.
   */
  | { status: 'unavailable'; message: string };

export interface ClaimedBatch {
  eventId: string;
  /** In acceptance order. */
  purchases: AcceptedPurchase[];
  /** One per purchase: what the adapter needs to ack it (a sequence number, a stream id, a delivery tag). */
  receipts: unknown[];
  /**
   * How many times the first purchase of this batch has been delivered, this time included. Above 1, an
   * earlier delivery failed or its worker died, and the worker narrows down to find a poison purchase.
   */
  deliveries: number;
  /** Adapter data about the lease (who holds it). */
  lease: unknown;
}

/**
 * A batch's ack as the queue's tables see it: the event's queued purchases up to `throughSeq` leave the
 * queue. Only for a storage whose database holds the queue's tables (Storage.applyBatch).
 */
export interface InlineAck {
  eventId: string;
  throughSeq: number;
}

export interface DeadLetter {
  purchase: AcceptedPurchase;
  reason: string;
  deadAt: string;
}

/** The first `count` purchases of a batch, as a batch of their own (to ack or dead-letter just those). */
export function headOf(batch: ClaimedBatch, count: number): ClaimedBatch {
  return { ...batch, purchases: batch.purchases.slice(0, count), receipts: batch.receipts.slice(0, count) };
}
