import { UnavailableError } from '../../domain/errors.js';
import type { AcceptedPurchase } from '../../domain/types.js';
import type { ClaimedBatch, DeadLetter, EnqueueRequest, EnqueueResult, Queue } from '../../ports/queue.js';
import { Shards } from './shards.js';
import { groupBy } from '../../shared/group-by.js';

/**
 * The embedded queue (a table in the database) when events are sharded: one queue per shard, in the
 * shard's own database, each holding the purchases of that shard's events. A purchase is queued where it
 * will be allocated, in the same server, so one shard down stops only its own events' sales: the queue of
 * every other shard takes purchases and feeds workers as before. Each shard's queue keeps its events'
 * acceptance order as one queue does; workers take batches from every shard in turn.
 *
 * (An external queue, Redis or RabbitMQ, stays one queue for all shards: it is already partitioned by
 * event.)
 */
export class ShardedQueue implements Queue {
  readonly #shards: Shards<Queue>;
  /** The shard whose queue the next claim looks at first: workers take turns over the shards. */
  #nextClaim = 0;

  constructor(queues: readonly Queue[]) {
    this.#shards = new Shards(queues);
  }

  async migrate(): Promise<void> {
    await Promise.all(this.#shards.all.map((q) => q.migrate()));
  }

  /**
   * Each shard's requests go to its queue in one write, all shards at once. A shard that does not answer
   * fails only its own requests (status 'unavailable'); when every shard fails, the call does.
   */
  async enqueue(requests: readonly EnqueueRequest[]): Promise<EnqueueResult[]> {
    const results = new Array<EnqueueResult>(requests.length);
    const byShard = groupBy(requests.keys(), (i) => {
      const { eventId } = requests[i]!.purchase;
      const index = this.#shards.ofEvent(eventId);
      if (index === null) throw new Error(`event ${eventId} names no database shard`);
      return index;
    });
    const written = await Promise.allSettled(
      [...byShard].map(async ([index, positions]) => {
        const answers = await this.#shards.on(index, (q) => q.enqueue(positions.map((i) => requests[i]!)));
        positions.forEach((position, n) => (results[position] = answers[n]!));
      }),
    );
    const failures = written.filter((w): w is PromiseRejectedResult => w.status === 'rejected');
    const other = failures.find((f) => !(f.reason instanceof UnavailableError));
    if (other) throw other.reason;
    if (failures.length > 0 && failures.length === written.length) throw failures[0]!.reason;
    const message = failures[0] ? (failures[0].reason as Error).message : '';
    for (let i = 0; i < results.length; i++) results[i] ??= { status: 'unavailable', message };
    return results;
  }

  /**
   * The next batch from the shards' queues, starting with the one after the last claim's, skipping shards
   * that are down. Null when no shard has work; an error only when no shard answers.
   */
  async claim(workerId: string, max: number, leaseMs: number): Promise<ClaimedBatch | null> {
    let failure: unknown = null;
    let answered = false;
    for (let tried = 0; tried < this.#shards.count; tried++) {
      const index = this.#nextClaim;
      this.#nextClaim = (this.#nextClaim + 1) % this.#shards.count;
      try {
        const batch = await this.#shards.on(index, (q) => q.claim(workerId, max, leaseMs));
        answered = true;
        if (batch) return batch;
      } catch (error) {
        if (!(error instanceof UnavailableError)) throw error;
        failure ??= error;
      }
    }
    if (!answered && failure) throw failure;
    return null;
  }

  ack(batch: ClaimedBatch): Promise<void> {
    return this.#ofEvent(batch.eventId, (q) => q.ack(batch));
  }

  release(batch: ClaimedBatch): Promise<void> {
    return this.#ofEvent(batch.eventId, (q) => q.release(batch));
  }

  deadLetter(batch: ClaimedBatch, reason: string): Promise<void> {
    return this.#ofEvent(batch.eventId, (q) => q.deadLetter(batch, reason));
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    const lists = await this.#shards.answering((q) => q.deadLetters(limit));
    return lists
      .flatMap((l) => l.value)
      .sort((a, b) => (a.deadAt < b.deadAt ? -1 : a.deadAt > b.deadAt ? 1 : 0))
      .slice(0, limit);
  }

  async replayDeadLetters(purchaseIds?: readonly string[]): Promise<number> {
    const replayed = await this.#shards.answering(
      (q, index) =>
        q.replayDeadLetters(
          purchaseIds?.filter((id) => this.#shards.ofPurchase(id).includes(index)) ?? undefined,
        ),
      purchaseIds ? [...new Set(purchaseIds.flatMap((id) => this.#shards.ofPurchase(id)))] : undefined,
    );
    return replayed.reduce((sum, r) => sum + r.value, 0);
  }

  async find(purchaseId: string): Promise<AcceptedPurchase | null> {
    const found = await this.#shards.answering(
      (q) => q.find(purchaseId),
      this.#shards.ofPurchase(purchaseId),
    );
    return found.find((f) => f.value !== null)?.value ?? null;
  }

  /**
   * The sum over the shards that answer: a shard that is down holds its queued purchases until it is
   * back, and must not make admission refuse the others' buyers.
   */
  async depth(): Promise<{ depth: number; oldestAcceptedAt: string | null }> {
    const depths = await this.#shards.answering((q) => q.depth());
    let depth = 0;
    let oldest: string | null = null;
    for (const { value } of depths) {
      depth += value.depth;
      if (value.oldestAcceptedAt && (oldest === null || value.oldestAcceptedAt < oldest))
        oldest = value.oldestAcceptedAt;
    }
    return { depth, oldestAcceptedAt: oldest };
  }

  depthOf(eventId: string): Promise<{ queued: number; deadLetters: number }> {
    const index = this.#shards.ofEvent(eventId);
    if (index === null) return Promise.resolve({ queued: 0, deadLetters: 0 });
    return this.#shards.on(index, (q) => q.depthOf(eventId));
  }

  /** Ready while any shard's queue answers. */
  async ping(): Promise<void> {
    await this.#shards.answering((q) => q.ping());
  }

  async close(): Promise<void> {
    await Promise.all(this.#shards.all.map((q) => q.close()));
  }

  #ofEvent(eventId: string, call: (queue: Queue) => Promise<void>): Promise<void> {
    const index = this.#shards.ofEvent(eventId);
    if (index === null) throw new Error(`event ${eventId} names no database shard`);
    return this.#shards.on(index, call);
  }
}
