import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { RedisQueue } from '../src/adapters/redis/queue.js';
import type { AcceptedPurchase } from '../src/domain/types.js';
import { deleteRedisKeys } from './helpers/redis.js';
import { exclusion, REDIS_URL, uniqueName } from './helpers/services.js';

/**
 * Idempotency-Keys that a Redis queue stored before buyer identity (and before the per-event layout) are keyed by the buyer id as typed
 * ([eventId, "Alice@Example.com", key]); the queue now looks them up by the canonical id. migrate() moves
 * them once, so a retry after the upgrade finds its purchase instead of making a second one.
 */
const skip = exclusion('redis');
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

function purchase(purchaseId: string, buyerId: string): AcceptedPurchase {
  return {
    purchaseId,
    eventId: 'ev1',
    buyerId,
    canonicalBuyerId: buyerId.normalize('NFKC').toLowerCase().trim(),
    items: [{ ticketTypeId: 'tt1', quantity: 1 }],
    acceptedAt: new Date().toISOString(),
  };
}

describe.skipIf(skip !== '')(`Redis idempotency keys re-keyed by the canonical buyer id ${skip}`, () => {
  it('moves keys stored under the typed id: a retry finds its purchase, the oldest keeps a shared key', async () => {
    const prefix = uniqueName('onsale_test');
    const url = new URL(REDIS_URL);
    url.searchParams.set('prefix', prefix);
    const redis = new Redis(REDIS_URL);
    cleanups.push(async () => {
      redis.disconnect();
      await deleteRedisKeys(`${prefix}:*`);
    });
    // The layout before Redis Cluster: every key under the prefix, P:depth made by the first enqueue.
    const idem = (buyer: string, key: string) => `${prefix}:idem:${JSON.stringify(['ev1', buyer, key])}`;
    // Today's: the event's hash tag, the canonical id.
    const eventIdem = (buyer: string, key: string) =>
      `${prefix}:{ev1}:idem:${JSON.stringify(['ev1', buyer, key])}`;
    await redis.set(`${prefix}:depth`, '0');
    // What the previous version wrote: the id as typed, "<purchaseId> <hash>", 48 h minus the time passed.
    await redis.set(idem('Alice@Example.com', 'k1'), 'old-p1 hash-a', 'EX', 40 * 3600);
    // Two spellings of one buyer with one key: the older (less time left) keeps it.
    await redis.set(idem('  BOB@example.com', 'k2'), 'old-p2 hash-b', 'EX', 30 * 3600);
    await redis.set(idem('bob@EXAMPLE.com', 'k2'), 'old-p3 hash-b', 'EX', 47 * 3600);
    // Fullwidth letters: NFKC, which SQL lower() cannot do.
    await redis.set(idem('ｃａｒｏｌ@example.com', 'k3'), 'old-p4 hash-c', 'EX', 20 * 3600);
    // Already canonical: untouched.
    await redis.set(idem('dave@example.com', 'k4'), 'old-p5 hash-d', 'EX', 10 * 3600);

    const queue = new RedisQueue(url.toString());
    cleanups.push(() => queue.close());
    await queue.migrate();

    expect(await redis.get(eventIdem('alice@example.com', 'k1'))).toBe('old-p1 hash-a');
    expect(await redis.exists(idem('Alice@Example.com', 'k1'))).toBe(0);
    expect(await redis.get(eventIdem('bob@example.com', 'k2'))).toBe('old-p2 hash-b');
    expect(await redis.exists(idem('  BOB@example.com', 'k2'), idem('bob@EXAMPLE.com', 'k2'))).toBe(0);
    expect(await redis.get(eventIdem('carol@example.com', 'k3'))).toBe('old-p4 hash-c');
    expect(await redis.get(eventIdem('dave@example.com', 'k4'))).toBe('old-p5 hash-d');
    expect(await redis.exists(idem('dave@example.com', 'k4'))).toBe(0);
    // The time left goes with the key: it still expires when it would have.
    const ttl = await redis.ttl(eventIdem('alice@example.com', 'k1'));
    expect(ttl).toBeGreaterThan(39 * 3600);
    expect(ttl).toBeLessThanOrEqual(40 * 3600);

    // A retry after the upgrade, typed in any spelling: the same purchase, never a second one.
    const [retry, otherSpelling, otherBody] = await queue.enqueue([
      { purchase: purchase('new-1', 'ALICE@example.com'), idempotency: { key: 'k1', requestHash: 'hash-a' } },
      { purchase: purchase('new-2', 'Bob@Example.com'), idempotency: { key: 'k2', requestHash: 'hash-b' } },
      { purchase: purchase('new-3', 'carol@example.com'), idempotency: { key: 'k3', requestHash: 'other' } },
    ]);
    expect(retry).toEqual({ status: 'duplicate', purchaseId: 'old-p1' });
    expect(otherSpelling).toEqual({ status: 'duplicate', purchaseId: 'old-p2' });
    expect(otherBody).toEqual({ status: 'conflict' });
    expect((await queue.depth()).depth).toBe(0);

    // Once per Redis (the old layout's P:depth is gone): later starts do not scan every key again.
    await redis.set(idem('Erin@example.com', 'k5'), 'old-p6 hash-e', 'EX', 3600);
    const again = new RedisQueue(url.toString());
    cleanups.push(() => again.close());
    await again.migrate();
    expect(await redis.exists(idem('Erin@example.com', 'k5'))).toBe(1);
  });
});
