import { randomBytes, randomUUID } from 'node:crypto';

/** Short opaque id for events and ticket types (96 random bits, URL-safe). */
export function newId(): string {
  return randomBytes(12).toString('base64url');
}

/** Purchase ids are the buyer's only credential to read a purchase: 122 random bits (UUID v4). */
export function newPurchaseId(): string {
  return randomUUID();
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
