import { OnsaleError } from '../domain/errors.js';
import type { Rate } from '../config.js';
import type { Queue } from '../ports/queue.js';

/**
 * Token buckets keyed by buyer or client address, in this process's memory. Each web server process
 * counts on its own, so with N processes a client may send up to N times the rate; the defaults leave
 * room for that and for the honest flood of a sale.
 *
 * A bucket is kept as one number, the time at which it is full again (the generic cell rate algorithm): no
 * object per key. Keys live in a map per scope (the purchase route's scope is the event), so that a key is
 * the buyer's id as parsed, not a string joined per request.
 */
export class RateLimiter {
  readonly #disabled: boolean;
  /** Milliseconds for one token to come back. */
  readonly #interval: number;
  /** How far ahead of now a bucket's "full again" time may be and still give a token: count - 1 tokens. */
  readonly #burst: number;
  readonly #fullAt = new Map<string, Map<string, number>>();
  readonly #sweepEveryMs: number;
  #sweptAt = Date.now();

  constructor(rate: Rate) {
    this.#disabled = rate.count === 0;
    this.#interval = rate.count === 0 ? 0 : rate.windowMs / rate.count;
    this.#burst = rate.windowMs - this.#interval;
    // A one-time buyer's bucket is full again once one token has come back (1 s at 10/10s): sweeping that
    // often keeps about a second of a crowd in memory rather than a minute of it (a million buckets, 200 MB).
    this.#sweepEveryMs = Math.min(60_000, Math.max(1_000, this.#interval));
  }

  /** Takes a token for `key` in `scope`; throws a 429 with the seconds until one is free when none is left. */
  take(key: string, now = Date.now(), scope = ''): void {
    if (this.#disabled) return;
    if (now - this.#sweptAt > this.#sweepEveryMs) this.#sweep(now);
    let keys = this.#fullAt.get(scope);
    if (keys === undefined) {
      keys = new Map();
      this.#fullAt.set(scope, keys);
    }
    const fullAt = keys.get(key);
    const from = fullAt === undefined || fullAt < now ? now : fullAt;
    if (from - now > this.#burst) {
      const wait = Math.max(1, Math.ceil((from - now - this.#burst) / 1000));
      throw new OnsaleError('rate_limited', 'too many requests; wait before trying again', {
        retryAfterSeconds: wait,
      });
    }
    keys.set(key, from + this.#interval);
  }

  /** Buckets held (those of keys seen lately and not yet refilled). */
  get size(): number {
    let held = 0;
    for (const keys of this.#fullAt.values()) held += keys.size;
    return held;
  }

  /** Drops full buckets so that a crowd of one-time buyers does not grow memory without end. */
  #sweep(now: number): void {
    this.#sweptAt = now;
    for (const [scope, keys] of this.#fullAt) {
      for (const [key, fullAt] of keys) if (fullAt <= now) keys.delete(key);
      if (keys.size === 0) this.#fullAt.delete(scope);
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
