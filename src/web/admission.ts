import { OnsaleError } from '../domain/errors.js';
import type { Rate } from '../config.js';
import type { Queue } from '../ports/queue.js';

/**
 * Token buckets keyed by buyer or client address, in this process's memory. Each web server process
 * counts on its own, so with N processes a client may send up to N times the rate; the defaults leave
 * room for that and for the honest flood of a sale.
 */
export class RateLimiter {
  readonly #capacity: number;
  readonly #perMs: number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  readonly #sweepEveryMs: number;
  #sweptAt = Date.now();

  constructor(rate: Rate) {
    this.#capacity = rate.count;
    this.#perMs = rate.count / rate.windowMs;
    // A one-time buyer's bucket is full again once one token has come back (1 s at 10/10s): sweeping that
    // often keeps about a second of a crowd in memory rather than a minute of it (a million buckets, 200 MB).
    this.#sweepEveryMs = Math.min(60_000, Math.max(1_000, rate.windowMs / Math.max(1, rate.count)));
  }

  /** Takes a token for `key`; throws a 429 with the seconds until one is free when none is left. */
  take(key: string, now = Date.now()): void {
    if (this.#capacity === 0) return;
    if (now - this.#sweptAt > this.#sweepEveryMs) this.#sweep(now);
    const bucket = this.#buckets.get(key) ?? { tokens: this.#capacity, at: now };
    bucket.tokens = Math.min(this.#capacity, bucket.tokens + (now - bucket.at) * this.#perMs);
    bucket.at = now;
    this.#buckets.set(key, bucket);
    if (bucket.tokens < 1) {
      const wait = Math.max(1, Math.ceil((1 - bucket.tokens) / this.#perMs / 1000));
      throw new OnsaleError('rate_limited', 'too many requests; wait before trying again', {
        retryAfterSeconds: wait,
      });
    }
    bucket.tokens -= 1;
  }

  /** Buckets held (those of keys seen lately and not yet refilled). */
  get size(): number {
    return this.#buckets.size;
  }

  /** Drops full buckets so that a crowd of one-time buyers does not grow memory without end. */
  #sweep(now: number): void {
    this.#sweptAt = now;
    for (const [key, b] of this.#buckets) {
      if (b.tokens + (now - b.at) * this.#perMs >= this.#capacity) this.#buckets.delete(key);
    }
  }
}

/**
 * Refuses purchases while the queue is deeper than the configured maximum. The depth is read from the
 * queue at most every 250 ms (not per request) and counts this process's accepts since.
 */
export class Backpressure {
  readonly #queue: Queue;
  readonly #max: number;
  #known = 0;
  #acceptedSince = 0;
  #readAt = 0;
  #reading: Promise<void> | null = null;

  constructor(queue: Queue, maxDepth: number) {
    this.#queue = queue;
    this.#max = maxDepth;
  }

  /** Reads the depth now; the web server awaits it once before it listens. */
  refresh(): Promise<void> {
    this.#reading ??= this.#queue
      .depth()
      .then(({ depth }) => {
        this.#known = depth;
        this.#acceptedSince = 0;
        this.#readAt = Date.now();
      })
      .catch(() => undefined)
      .finally(() => (this.#reading = null));
    return this.#reading;
  }

  check(now = Date.now()): void {
    if (now - this.#readAt > 250) void this.refresh();
    if (this.#known + this.#acceptedSince >= this.#max) {
      throw new OnsaleError('overloaded', 'the queue is full; try again shortly', { retryAfterSeconds: 2 });
    }
  }

  accepted(): void {
    this.#acceptedSince += 1;
  }
}
