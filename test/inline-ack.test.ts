import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { PostgresQueue } from '../src/adapters/postgres/queue.js';
import { PostgresStorage } from '../src/adapters/postgres/storage.js';
import { SqliteQueue } from '../src/adapters/sqlite/queue.js';
import { SqliteStorage } from '../src/adapters/sqlite/storage.js';
import type { AcceptedPurchase } from '../src/domain/types.js';
import type { Queue } from '../src/ports/queue.js';
import type { Storage } from '../src/ports/storage.js';
import { startWorkerLoop } from '../src/worker/worker.js';
import { tempDir } from './helpers/processes.js';
import { exclusion, freshPostgresDatabase } from './helpers/services.js';

/**
 * The ack inside applyBatch's transaction, where the queue's tables live in the storage's database: the
 * batch leaves the queue exactly when its effect commits, never one without the other.
 */
const engines = [
  {
    name: 'sqlite',
    excluded: '',
    open: async () => {
      const dir = tempDir();
      const url = `sqlite:${join(dir.path, 'onsale.db')}`;
      return { storage: new SqliteStorage(url), queue: new SqliteQueue(url), drop: async () => dir.remove() };
    },
  },
  {
    name: 'postgres',
    excluded: exclusion('postgres'),
    open: async () => {
      const db = await freshPostgresDatabase();
      const storage = new PostgresStorage(db.url);
      const queue = new PostgresQueue(db.url);
      await Promise.all([storage.migrate(), queue.migrate()]);
      return { storage, queue, drop: db.drop };
    },
  },
];

for (const engine of engines) {
  describe.skipIf(engine.excluded !== '')(`ack inside applyBatch: ${engine.name}${engine.excluded}`, () => {
    const cleanups: Array<() => Promise<void>> = [];
    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await c();
    });

    async function setup() {
      const { storage, queue, drop } = await engine.open();
      cleanups.push(
        drop,
        () => storage.close(),
        () => queue.close(),
      );
      const event = await storage.createEvent({
        name: 'inline',
        salesOpenAt: new Date().toISOString(),
        holdSeconds: 0,
        ticketTypes: [{ name: 'GA', priceCents: 1, capacity: 100, maxPerBuyer: 10 }],
      });
      const make = (ticketTypeId = event.ticketTypes[0]!.id): AcceptedPurchase => {
        const buyerId = randomUUID();
        return {
          purchaseId: randomUUID(),
          eventId: event.id,
          buyerId,
          canonicalBuyerId: buyerId,
          items: [{ ticketTypeId, quantity: 1 }],
          acceptedAt: new Date().toISOString(),
        };
      };
      return { storage, queue, event, make };
    }

    async function claimAll(queue: Queue) {
      const batch = await queue.claim('w1', 100, 60_000);
      expect(batch).not.toBeNull();
      return batch!;
    }

    const statuses = async (storage: Storage, purchases: AcceptedPurchase[]) =>
      (await Promise.all(purchases.map((p) => storage.getPurchase(p.purchaseId)))).map(
        (p) => p?.status ?? null,
      );

    it('takes the batch off the queue in the transaction that applies it', async () => {
      const { storage, queue, event, make } = await setup();
      const purchases = [make(), make(), make()];
      await queue.enqueue(purchases.map((purchase) => ({ purchase })));
      const batch = await claimAll(queue);

      const result = await storage.applyBatch(event.id, batch.purchases, queue.inlineAck!(batch)!);

      expect(result.applied).toBe(3);
      expect(await queue.depthOf(event.id)).toEqual({ queued: 0, deadLetters: 0 });
      expect(await queue.claim('w1', 100, 60_000)).toBeNull();
      expect(await statuses(storage, purchases)).toEqual(['confirmed', 'confirmed', 'confirmed']);
    });

    it('leaves the batch queued when applying it fails, and applies nothing', async () => {
      const { storage, queue, event, make } = await setup();
      // A ticket type the event does not have fails the whole allocation (it cannot come through the API).
      const purchases = [make(), make('no-such-type')];
      await queue.enqueue(purchases.map((purchase) => ({ purchase })));
      const batch = await claimAll(queue);

      await expect(storage.applyBatch(event.id, batch.purchases, queue.inlineAck!(batch)!)).rejects.toThrow(
        /no-such-type/,
      );

      expect(await queue.depthOf(event.id)).toEqual({ queued: 2, deadLetters: 0 });
      expect(await statuses(storage, purchases)).toEqual([null, null]);
      expect((await storage.getStats(event.id))!.ticketTypes[0]!.sold).toBe(0);
    });

    it('acks a batch applied before (a redelivery) without applying it again', async () => {
      const { storage, queue, event, make } = await setup();
      const purchases = [make(), make()];
      await queue.enqueue(purchases.map((purchase) => ({ purchase })));
      const batch = await claimAll(queue);
      // Applied by a worker that died before its ack: the batch is still queued.
      await storage.applyBatch(event.id, batch.purchases);
      expect((await queue.depthOf(event.id)).queued).toBe(2);

      const again = await claimAll(queue);
      const result = await storage.applyBatch(event.id, again.purchases, queue.inlineAck!(again)!);

      expect(result.applied).toBe(0);
      expect(await queue.depthOf(event.id)).toEqual({ queued: 0, deadLetters: 0 });
      expect((await storage.getStats(event.id))!.ticketTypes[0]!.sold).toBe(2);
    });

    it('runs the worker loop with it: every purchase once, a poison one dead-lettered, the rest in order', async () => {
      const { storage, queue, event, make } = await setup();
      const purchases = [make(), make(), make('no-such-type'), make(), make()];
      await queue.enqueue(purchases.map((purchase) => ({ purchase })));
      const loop = startWorkerLoop({
        storage,
        queue,
        workerId: 'w1',
        batchSize: 100,
        maxAttempts: 3,
        logger: pino({ level: 'silent' }),
        ackInApply: true,
      });
      cleanups.push(() => loop.stop());

      const deadline = Date.now() + 30_000;
      while ((await queue.depthOf(event.id)).queued > 0) {
        if (Date.now() > deadline) throw new Error('the worker did not drain the queue in 30 s');
        await new Promise((r) => setTimeout(r, 20));
      }
      await loop.stop();

      expect(await queue.depthOf(event.id)).toEqual({ queued: 0, deadLetters: 1 });
      expect(await statuses(storage, purchases)).toEqual([
        'confirmed',
        'confirmed',
        null,
        'confirmed',
        'confirmed',
      ]);
      expect((await storage.getStats(event.id))!.ticketTypes[0]!.sold).toBe(4);
    });
  });
}
