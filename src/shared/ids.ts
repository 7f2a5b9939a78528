import { randomBytes, randomFillSync } from 'node:crypto';

/**
 * Random bytes for purchase ids, drawn from the CSPRNG 4 KiB at a time: one randomBytes call per purchase
 * was 5% of a web server's time under load (docs/benchmarks.md). Each id still gets 16 bytes no other id
 * gets: the pool is refilled, never reused.
 */
const pool = Buffer.alloc(4096);
let poolUsed = pool.length;

/** `size` fresh random bytes of the pool, as base64url. */
function pooledRandom(size: number): string {
  if (poolUsed + size > pool.length) {
    randomFillSync(pool);
    poolUsed = 0;
  }
  poolUsed += size;
  return pool.toString('base64url', poolUsed - size, poolUsed);
}

/**
 * A time in milliseconds as 12 hex digits. The last one is kept: a web server under a rush makes dozens of
 * ids within one millisecond, and formatting the number cost more than the id's random part.
 */
let hexMs = -1;
let hexTime = '';
function timeHex(ms: number): string {
  if (ms !== hexMs) {
    hexMs = ms;
    hexTime = ms.toString(16).padStart(12, '0');
  }
  return hexTime;
}

/**
 * Short opaque id for events and ticket types (96 random bits, URL-safe). Never starting with '-': a
 * command line (`onsale events stats <id>`) would take such an id for an option.
 */
export function newId(): string {
  for (;;) {
    const id = randomBytes(12).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

/**
 * Purchase ids are the buyer's only credential to read a purchase, so they carry 128 random bits. They
 * start with the time in milliseconds (12 hex digits, which sort as numbers do), so that ids sort in
 * acceptance order to the millisecond and every index on them grows at its right edge: random ids (UUID v4)
 * scatter each insert over the whole index, which cost the worker about a third of its throughput on
 * SQLite (docs/benchmarks.md). 34 URL-safe characters.
 */
export function newPurchaseId(eventId?: string, now = Date.now()): string {
  const id = timeHex(now) + pooledRandom(16);
  const shard = eventId === undefined ? null : shardTagOf(eventId);
  return shard === null ? id : withShardTag(id, shard);
}

/**
 * Where an id lives when events are sharded over several databases: a suffix `.N` names shard N (counted
 * from 0 in the order of ONSALE_DATABASE_URL). Events get it when they are created, and a purchase copies
 * its event's, so that both are found on one shard without a lookup. The suffix cannot be part of a
 * random id (base64url has no '.'). An id without one was made before sharding (or by a caller of its
 * own) and is looked up by the rules of the sharded storage.
 */
const SHARD_TAG = /\.(0|[1-9]\d{0,3})$/;

/** `id` tagged as living on `shard`. */
export function withShardTag(id: string, shard: number): string {
  return `${id}.${shard}`;
}

/** The shard an id's tag names, or null when it has none. */
export function shardTagOf(id: string): number | null {
  const match = SHARD_TAG.exec(id);
  return match ? Number(match[1]) : null;
}

/**
 * Makes `count` ticket ids and codes at once. One randomBytes call per batch rather than two per ticket:
 * a batch of 500 purchases issues up to 50,000 tickets. Codes carry 128 random bits, so they are unguessable,
 * and a UNIQUE constraint in storage makes a collision fail loudly rather than pass silently. Like purchase
 * ids they start with the time in milliseconds (12 hex digits), so that the unique index on codes grows at
 * its right edge: with random codes each ticket rewrote a page of its own anywhere in that index, which made
 * the worker's commits grow with the table (docs/benchmarks.md). 34 URL-safe characters.
 */
export function newTickets(count: number, now = Date.now()): Array<{ id: string; code: string }> {
  const bytes = randomBytes(count * 28);
  const time = timeHex(now);
  const out = new Array<{ id: string; code: string }>(count);
  for (let i = 0; i < count; i++) {
    const base = i * 28;
    out[i] = {
      id: bytes.subarray(base, base + 12).toString('base64url'),
      code: time + bytes.subarray(base + 12, base + 28).toString('base64url'),
    };
  }
  return out;
}

/**
 * A place in a waiting room: reading it returns its admission token, so like a purchase id it is the
 * holder's credential and carries 128 random bits. 22 URL-safe characters.
 */
export function newPlaceId(): string {
  return randomBytes(16).toString('base64url');
}
