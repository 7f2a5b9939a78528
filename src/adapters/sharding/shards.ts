import { UnavailableError } from '../../domain/errors.js';
import { shardTagOf } from '../../shared/ids.js';

/**
 * After a shard fails as unavailable (its adapter has already retried for ~0.6 s), calls to it fail at once
 * for this long instead of each waiting out the retries again: the requests and workers of the other
 * shards are not held up by the one that is down. The first call after it tries the shard again.
 */
const SHARD_REST_MS = 1_000;

/**
 * One handle per shard (a storage, a queue), in the order of ONSALE_DATABASE_URL, with what every sharded
 * adapter needs: which shard an id lives on, and calls that keep a shard that is down from holding up the
 * others.
 */
export class Shards<T> {
  readonly #handles: readonly T[];
  readonly #restingUntil: number[];

  constructor(handles: readonly T[]) {
    if (handles.length === 0) throw new Error('no shard');
    this.#handles = handles;
    this.#restingUntil = handles.map(() => 0);
  }

  get count(): number {
    return this.#handles.length;
  }

  get all(): readonly T[] {
    return this.#handles;
  }

  /**
   * The shard of an event: the one its id's tag names; an untagged id is an event made before sharding,
   * which lives on the first shard. null: the tag names no shard of this configuration (a made-up id).
   */
  ofEvent(eventId: string): number | null {
    const tag = shardTagOf(eventId);
    if (tag === null) return 0;
    return tag < this.#handles.length ? tag : null;
  }

  /**
   * The shards that may hold a purchase: the one its tag names (it copies its event's at acceptance), or
   * every shard for an untagged id (made before sharding, or by a caller of its own), or none.
   */
  ofPurchase(purchaseId: string): number[] {
    const tag = shardTagOf(purchaseId);
    if (tag === null) return this.#handles.map((_, i) => i);
    return tag < this.#handles.length ? [tag] : [];
  }

  /** Runs `call` on shard `index`, failing at once while the shard rests after an outage. */
  async on<R>(index: number, call: (handle: T) => Promise<R>): Promise<R> {
    if (Date.now() < this.#restingUntil[index]!) {
      throw new UnavailableError(`database shard ${index} is unavailable`);
    }
    try {
      return await call(this.#handles[index]!);
    } catch (error) {
      if (error instanceof UnavailableError) this.#restingUntil[index] = Date.now() + SHARD_REST_MS;
      throw error;
    }
  }

  /** Whether shard `index` failed lately (it is skipped by calls that can do without it). */
  resting(index: number): boolean {
    return Date.now() < this.#restingUntil[index]!;
  }

  /**
   * Runs `call` on the shards `indexes` (default all) at once and returns the answers of those that
   * answered, in shard order. A shard that is unavailable is left out, so that one shard down does not
   * take a list or a sum of the others with it; when none answers, the first failure is thrown. Any other
   * error (a bug) is thrown as it is.
   */
  async answering<R>(
    call: (handle: T, index: number) => Promise<R>,
    indexes: readonly number[] = this.#handles.map((_, i) => i),
  ): Promise<Array<{ index: number; value: R }>> {
    const settled = await Promise.allSettled(indexes.map((i) => this.on(i, (h) => call(h, i))));
    const answers: Array<{ index: number; value: R }> = [];
    let failure: unknown = null;
    settled.forEach((s, n) => {
      if (s.status === 'fulfilled') answers.push({ index: indexes[n]!, value: s.value });
      else if (!(s.reason instanceof UnavailableError)) throw s.reason;
      else failure ??= s.reason;
    });
    if (answers.length === 0 && failure !== null) throw failure;
    return answers;
  }
}
