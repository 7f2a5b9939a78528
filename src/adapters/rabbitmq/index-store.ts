import type { AcceptedPurchase } from '../../domain/types.js';
import type { DeadLetter, EnqueueRequest, EnqueueResult } from '../../ports/queue.js';

/**
 * A purchase as the index holds it: its acceptance sequence number (orders events), the purchase, and its
 * JSON as stored (the message body is the same text: serialized once).
 */
export interface IndexedPurchase {
  seq: number;
  purchase: AcceptedPurchase;
  payload: string;
}

/** An enqueue request with the partition its event hashes to (the index locks per partition). */
export interface PartitionedRequest {
  request: EnqueueRequest;
  partition: number;
}

/** What inspect() found, under the partition's lock, about purchases a worker holds as deliveries. */
export interface Inspection {
  /** On the queue, in the order asked. */
  queued: string[];
  /** Dead-lettered meanwhile (a crash between the index and the broker's reject). */
  dead: string[];
  /** Not in the index: already acked (a redelivery), or never committed (the publisher failed or died). */
  gone: string[];
  /** Claims of the first queued purchase, this one included (0 when none is queued). */
  headClaims: number;
}

/**
 * The PurchaseIndex keeps, in the database, what RabbitMQ cannot answer: which purchases are queued (find,
 * depth, depthOf), dead letters and their reasons, idempotency keys, and how often each head was claimed.
 *
 * Its one rule: a row exists if and only if RabbitMQ holds a confirmed message for it. record() writes the
 * rows and idempotency keys, then publishes and waits for the confirms while its transaction holds the
 * partition's write lock, and commits only when every message is confirmed; a failure rolls everything
 * back. A worker that receives a message inspects it under the same lock, so the publisher's transaction
 * has ended by then: a message without a row was never accepted (its client got a 503 or no answer), or
 * was already acked. The lock also makes RabbitMQ's order the order in which enqueue() calls resolve.
 */
export interface PurchaseIndex {
  /** Creates or upgrades the tables; refuses a queue prefix created with another partition count. */
  migrate(partitions: number): Promise<void>;
  /**
   * Resolves idempotency keys and records the accepted purchases, then runs `publish` on them inside the
   * same transaction, and commits only if it resolves.
   */
  record(
    requests: readonly PartitionedRequest[],
    publish: (accepted: IndexedPurchase[]) => Promise<void>,
  ): Promise<EnqueueResult[]>;
  /** Under `partition`'s lock: the state of each purchase, and one more claim of the first queued one. */
  inspect(partition: number, purchaseIds: readonly string[]): Promise<Inspection>;
  /** Deletes queued purchases (acked: their effect is committed to storage). */
  remove(purchaseIds: readonly string[]): Promise<void>;
  /** Marks queued purchases as dead letters, with the reason. */
  bury(purchaseIds: readonly string[], reason: string): Promise<void>;
  deadLetters(limit: number): Promise<DeadLetter[]>;
  /**
   * Puts dead letters (all, or those named) back on the queue with a new seq, and runs `publish` on them in
   * the same transaction, as record() does; returns how many.
   */
  revive(
    purchaseIds: readonly string[] | undefined,
    partitions: readonly number[],
    publish: (revived: IndexedPurchase[]) => Promise<void>,
  ): Promise<number>;
  find(purchaseId: string): Promise<AcceptedPurchase | null>;
  depth(): Promise<{ depth: number; oldestAcceptedAt: string | null }>;
  depthOf(eventId: string): Promise<{ queued: number; deadLetters: number }>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Why migrate() refuses a queue prefix. */
export function partitionMismatch(prefix: string, known: number, asked: number): Error {
  return new Error(
    `the RabbitMQ queue prefix "${prefix}" was created with ${known} partitions, not ${asked}: ` +
      'drain the queue before changing partitions (an event would be split over two queues)',
  );
}
