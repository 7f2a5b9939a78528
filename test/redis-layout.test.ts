import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { RedisQueue } from '../src/adapters/redis/queue.js';
import { canonicalBuyerId } from '../src/domain/buyer.js';
import { deleteRedisKeys } from './helpers/redis.js';
import { exclusion, included, REDIS_URL, uniqueName } from './helpers/services.js';

/**
 * A queue left by a version before Redis Cluster support (keys shared by all events) on the shared Redis:
 * refused while it holds work, upgraded once drained, its Idempotency-Keys kept.
 */
describe.skipIf(!included('redis'))(`the Redis queue's earlier key layout${exclusion('redis')}`, () => {
  const prefix = uniqueName('onsale_upgrade');
  const redis = new Redis(REDIS_URL);
  const url = `${REDIS_URL}?prefix=${prefix}`;
  afterAll(async () => {
    redis.disconnect();
    await deleteRedisKeys(`${prefix}:*`);
  });

  it('is refused while it holds queued purchases, and upgraded once drained', async () => {
    await redis.set(`${prefix}:depth`, '2');
    const refused = new RedisQueue(url);
    await expect(refused.migrate()).rejects.toThrow(/holds 2 queued purchases .* drain it/);
    await refused.close();

    // Drained by the old version: depth 0, its Idempotency-Keys still running.
    const buyer = canonicalBuyerId('alice');
    const oldKey = `${prefix}:idem:${JSON.stringify(['e1', buyer, 'k1'])}`;
    const firstPurchase = randomUUID();
    await redis.set(`${prefix}:depth`, '0');
    await redis.set(oldKey, `${firstPurchase} h1`, 'EX', 3600);
    const queue = new RedisQueue(url);
    try {
      await queue.migrate();
      expect(await redis.exists(oldKey, `${prefix}:depth`)).toBe(0);
      const retry = {
        purchase: {
          purchaseId: randomUUID(),
          eventId: 'e1',
          buyerId: 'alice',
          canonicalBuyerId: buyer,
          items: [{ ticketTypeId: 'tt', quantity: 1 }],
          acceptedAt: new Date().toISOString(),
        },
        idempotency: { key: 'k1', requestHash: 'h1' },
      };
      expect(await queue.enqueue([retry])).toEqual([{ status: 'duplicate', purchaseId: firstPurchase }]);
      const moved = `${prefix}:{e1}:idem:${JSON.stringify(['e1', buyer, 'k1'])}`;
      const ttl = await redis.ttl(moved);
      expect(ttl).toBeGreaterThan(3000);
      expect(ttl).toBeLessThanOrEqual(3600);
      // Running it again changes nothing.
      await queue.migrate();
      expect(await redis.get(moved)).toBe(`${firstPurchase} h1`);
    } finally {
      await queue.close();
    }
  });
});

/**
 * A web server that died between its enqueue script and its listing in P:ready left queued purchases that no
 * claim looks at: an idle worker's sweep finds the event's stream and lists it again.
 */
describe.skipIf(!included('redis'))(`the Redis queue's sweep${exclusion('redis')}`, () => {
  const prefix = uniqueName('onsale_sweep');
  const redis = new Redis(REDIS_URL);
  afterAll(async () => {
    redis.disconnect();
    await deleteRedisKeys(`${prefix}:*`);
  });

  it('lists again an event whose queued purchases were left unlisted', async () => {
    const queue = new RedisQueue(`${REDIS_URL}?prefix=${prefix}`, { sweepEveryMs: 0 });
    try {
      await queue.migrate();
      const purchase = {
        purchaseId: randomUUID(),
        eventId: 'e1',
        buyerId: 'bob',
        canonicalBuyerId: canonicalBuyerId('bob'),
        items: [{ ticketTypeId: 'tt', quantity: 1 }],
        acceptedAt: new Date().toISOString(),
      };
      await queue.enqueue([{ purchase }]);
      // As if the writer had died after its script: the purchase is queued, its event not listed.
      expect(await redis.zrem(`${prefix}:ready`, 'e1')).toBe(1);
      expect(await queue.claim('w', 10, 5000)).toBeNull(); // nothing listed; this idle claim sweeps
      expect(await redis.zscore(`${prefix}:ready`, 'e1')).not.toBeNull();
      expect((await queue.claim('w', 10, 5000))?.purchases).toEqual([purchase]);
    } finally {
      await queue.close();
    }
  });
});
