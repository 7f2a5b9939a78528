import { randomInt } from 'node:crypto';
import { OnsaleError } from '../domain/errors.js';
import type { Rate } from '../config.js';
import type { Queue } from '../ports/queue.js';

/** Slots of a new table; it doubles whenever it would be more than half full. */
const MIN_SLOTS = 1024;
/** Marks an empty slot: fingerprint() never returns it. */
const EMPTY = 0;

/**
 * Token buckets keyed by buyer or client address, in this process's memory. Each web server process
 * counts on its own, so with N processes a client may send up to N times the rate; the defaults leave
 * room for that and for the honest flood of a sale.
 *
 * A bucket is one number, the time at which it is full again (the generic cell rate algorithm). Buckets live
 * in an open-addressing table of two Float64Arrays, keyed by a 53-bit fingerprint of (scope, key) under a
 * seed drawn per process: no object per key. A rush is nearly all one-time buyers, and a Map kept each one's
 * id string and boxed number for a second or two, long enough to be promoted; V8 then let the old space
 * grow to several times that live set before collecting it (docs/benchmarks.md, memory of a web server).
 * Two keys share a bucket only if their fingerprints collide: odds of about n / 2^53 with n buckets held.
 */
export class RateLimiter {
  readonly #disabled: boolean;
  /** Milliseconds for one token to come back. */
  readonly #interval: number;
  /** How far ahead of now a bucket's "full again" time may be and still give a token: count - 1 tokens. */
  readonly #burst: number;
  readonly #sweepEveryMs: number;
  readonly #seed = randomInt(2 ** 31);
  #keys = new Float64Array(MIN_SLOTS);
  #fullAt = new Float64Array(MIN_SLOTS);
  /** The other table of the same size, which each sweep copies into: a sweep allocates nothing. */
  #spareKeys = new Float64Array(MIN_SLOTS);
  #spareFullAt = new Float64Array(MIN_SLOTS);
  #held = 0;
  #sweptAt = Date.now();

  constructor(rate: Rate) {
    this.#disabled = rate.count === 0;
    this.#interval = rate.count === 0 ? 0 : rate.windowMs / rate.count;
    this.#burst = rate.windowMs - this.#interval;
    // A one-time buyer's bucket is full again once one token has come back (1 s at 10/10s): sweeping that
    // often keeps about a second of a crowd in memory rather than a minute of it.
    this.#sweepEveryMs = Math.min(60_000, Math.max(1_000, this.#interval));
  }

  /** Takes a token for `key` in `scope`; throws a 429 with the seconds until one is free when none is left. */
  take(key: string, now = Date.now(), scope = ''): void {
    if (this.#disabled) return;
    if (now - this.#sweptAt > this.#sweepEveryMs) this.#sweep(now);
    const print = fingerprint(scope, key, this.#seed);
    const slot = slotOf(this.#keys, print);
    const known = this.#keys[slot] === print;
    const fullAt = known ? this.#fullAt[slot]! : now;
    const from = fullAt < now ? now : fullAt;
    if (from - now > this.#burst) {
      const wait = Math.max(1, Math.ceil((from - now - this.#burst) / 1000));
      throw new OnsaleError('rate_limited', 'too many requests; wait before trying again', {
        retryAfterSeconds: wait,
      });
    }
    this.#fullAt[slot] = from + this.#interval;
    if (known) return;
    this.#keys[slot] = print;
    this.#held += 1;
    if (this.#held * 2 > this.#keys.length) this.#rebuild(now, this.#keys.length * 2);
  }

  /** Buckets held (those of keys seen lately and not yet refilled). */
  get size(): number {
    return this.#held;
  }

  /** Drops full buckets so that a crowd of one-time buyers does not grow memory without end. */
  #sweep(now: number): void {
    this.#sweptAt = now;
    this.#rebuild(now, this.#keys.length);
  }

  /** Copies the buckets not yet full into a table of `slots` slots (or fewer, down to what they need). */
  #rebuild(now: number, slots: number): void {
    let size = slots;
    while (size > MIN_SLOTS && this.#held * 8 < size) size /= 2;
    let keys = this.#spareKeys;
    let fullAt = this.#spareFullAt;
    if (keys.length === size) keys.fill(EMPTY);
    else {
      keys = new Float64Array(size);
      fullAt = new Float64Array(size);
    }
    let held = 0;
    for (let i = 0; i < this.#keys.length; i++) {
      const print = this.#keys[i]!;
      if (print === EMPTY || this.#fullAt[i]! <= now) continue;
      const slot = slotOf(keys, print);
      keys[slot] = print;
      fullAt[slot] = this.#fullAt[i]!;
      held += 1;
    }
    this.#spareKeys = this.#keys;
    this.#spareFullAt = this.#fullAt;
    this.#keys = keys;
    this.#fullAt = fullAt;
    this.#held = held;
  }
}

/** The slot holding `print` in `keys`, or the empty slot where it goes (linear probing; never full). */
function slotOf(keys: Float64Array, print: number): number {
  const mask = keys.length - 1;
  // The fingerprint's low 32 bits (ToUint32 of an integer below 2^53 is exact) pick the first slot.
  let slot = (print >>> 0) & mask;
  while (keys[slot] !== EMPTY && keys[slot] !== print) slot = (slot + 1) & mask;
  return slot;
}

/**
 * A 53-bit hash of scope and key, apart (cyrb53, public domain): 0x10000 between them is no UTF-16 code unit,
 * so ("a", "b:c") and ("a:b", "c") differ. Never EMPTY.
 */
function fingerprint(scope: string, key: string, seed: number): number {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < scope.length; i++) {
    const c = scope.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ 0x10000, 2654435761);
  h2 = Math.imul(h2 ^ 0x10000, 1597334677);
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0) || 1;
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
