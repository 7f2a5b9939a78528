import { randomBytes } from 'node:crypto';

/** Short opaque id for events and ticket types (96 random bits, URL-safe). */
export function newId(): string {
  return randomBytes(12).toString('base64url');
}

/**
 * Purchase ids are the buyer's only credential to read a purchase, so they carry 128 random bits. They
 * start with the time in milliseconds (12 hex digits, which sort as numbers do), so that ids sort in
 * acceptance order to the millisecond and every index on them grows at its right edge: random ids (UUID v4)
 * scatter each insert over the whole index, which cost the worker about a third of its throughput on
 * SQLite (docs/benchmarks.md). 34 URL-safe characters.
 */
export function newPurchaseId(now = Date.now()): string {
  return now.toString(16).padStart(12, '0') + randomBytes(16).toString('base64url');
}

/**
 * Makes `count` ticket ids and codes at once. One randomBytes call per batch rather than two per ticket:
 * a batch of 500 purchases issues up to 50,000 tickets. Codes carry 128 random bits, so they are unguessable,
 * and a UNIQUE constraint in storage makes a collision fail loudly rather than pass silently.
 */
export function newTickets(count: number): Array<{ id: string; code: string }> {
  const bytes = randomBytes(count * 28);
  const out = new Array<{ id: string; code: string }>(count);
  for (let i = 0; i < count; i++) {
    const base = i * 28;
    out[i] = {
      id: bytes.subarray(base, base + 12).toString('base64url'),
      code: bytes.subarray(base + 12, base + 28).toString('base64url'),
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
