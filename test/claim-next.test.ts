/**
 * The worker's next batch claimed beside the current one's transaction (Queue.claimNext, PostgreSQL's
 * queue): what it hands out, that it counts no delivery, and the worker loop using it in order, through a
 * poison purchase, and handing its claim back when it stops.
 */
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { PostgresQueue } from '../src/adapters/postgres/queue.js';
import { PostgresStorage } from '../src/adapters/postgres/storage.js';
import type { AcceptedPurchase } from '../src/domain/types.js';
import type { ClaimedBatch } from '../src/ports/queue.js';
import { startWorkerLoop } from '../src/worker/worker.js';
import { until } from './helpers/processes.js';
import { exclusion, freshPostgresDatabase } from './helpers/services.js';
import { acceptedPurchase } from './helpers/purchases.js';

describe.skipIf(exclusion('postgres') !== '')(
  `claiming beside a batch on PostgreSQL${exclusion('postgres')}`,
  () => {
    const cleanups: Array<() => Promise<void>> = [];
    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await c();
    });

    async function database() {
      const db = await freshPostgresDatabase();
      const queue = new PostgresQueue(db.url);
      const storage = new PostgresStorage(db.url);
      cleanups.push(
        db.drop,
        () => storage.close(),
        () => queue.close(),
      );
      await queue.migrate();
      await storage.migrate();
      return { queue, storage };
    }

    /** An event with one ticket type of `capacity`, one per buyer. */
    async function saleOf(storage: PostgresStorage, capacity: number) {
      const event = await storage.createEvent({
        name: 'sale',
        salesOpenAt: new Date().toISOString(),
        holdSeconds: 0,
        ticketTypes: [{ name: 'GA', priceCents: 100, capacity, maxPerBuyer: 1 }],
      });
      return { eventId: event.id, type: event.ticketTypes[0]!.id };
    }

    const enqueue = (queue: PostgresQueue, purchases: AcceptedPurchase[]) =>
      queue.enqueue(purchases.map((purchase) => ({ purchase })));

    it('hands out what follows a pending batch, in order, and counts no delivery of its own', async () => {
      const { queue } = await database();
      const e1 = Array.from({ length: 5 }, () => acceptedPurchase('e1'));
      const e2 = Array.from({ length: 2 }, () => acceptedPurchase('e2'));
      await enqueue(queue, e1);
      await enqueue(queue, e2);

      const first = (await queue.claim('w', 2, 5000))!;
      expect(first.purchases).toEqual(e1.slice(0, 2));
      const second = (await queue.claimNext('w', 2, 5000, first))!;
      expect(second.eventId).toBe('e1');
      expect(second.purchases).toEqual(e1.slice(2, 4));
      expect(second.deliveries).toBe(1);
      // The lease was renewed for this worker: another gets the other event, not this one.
      const other = (await queue.claim('w2', 10, 5000))!;
      expect(other.eventId).toBe('e2');
      await queue.release(other);

      // The first batch failed: claimed again, it counts its second delivery (the claim beside recorded none).
      const again = (await queue.claim('w', 2, 5000))!;
      expect(again.purchases).toEqual(first.purchases);
      expect(again.deliveries).toBe(2);

      await queue.ack(first);
      await queue.ack(second);
      const third = (await queue.claim('w', 2, 5000))!;
      expect(third.purchases).toEqual(e1.slice(4));
      // Nothing of e1 after the third: what comes next is e2's.
      const fourth = (await queue.claimNext('w', 2, 5000, third))!;
      expect(fourth.eventId).toBe('e2');
      expect(fourth.purchases).toEqual(e2);
      await queue.ack(third);
      await queue.ack(fourth);
      expect(await queue.claimNext('w', 2, 5000, fourth)).toBeNull();
      expect((await queue.depth()).depth).toBe(0);
    });

    function run(
      storage: PostgresStorage,
      queue: PostgresQueue,
      batchSize: number,
      { maxAttempts = 3, logger = pino({ level: 'silent' }) } = {},
    ) {
      const loop = startWorkerLoop({
        storage,
        queue,
        workerId: 'w1',
        batchSize,
        maxAttempts,
        logger,
        ackInApply: true,
      });
      cleanups.push(() => loop.stop());
      return loop;
    }

    it('allocates in acceptance order across batches claimed beside each other', async () => {
      const { queue, storage } = await database();
      const { eventId, type } = await saleOf(storage, 500);
      const purchases = Array.from({ length: 1_000 }, () => acceptedPurchase(eventId, type));
      for (let i = 0; i < purchases.length; i += 250) await enqueue(queue, purchases.slice(i, i + 250));
      run(storage, queue, 37);
      await until(async () => (await queue.depthOf(eventId)).queued === 0, 30_000);
      const statuses = await storage.getStatuses(purchases.map((p) => p.purchaseId));
      const outcome = purchases.map((p) => statuses.get(p.purchaseId)?.status);
      expect(outcome).toEqual([...Array(500).fill('confirmed'), ...Array(500).fill('rejected')]);
    });

    it('dead-letters a poison purchase in a batch claimed beside another, and applies the rest once', async () => {
      const { queue, storage } = await database();
      const { eventId, type } = await saleOf(storage, 100);
      // The poison purchase heads the second batch of two: the one claimed beside the first.
      const purchases = [
        acceptedPurchase(eventId, type),
        acceptedPurchase(eventId, type),
        acceptedPurchase(eventId, 'no-such-type'),
        acceptedPurchase(eventId, type),
        acceptedPurchase(eventId, type),
      ];
      await enqueue(queue, purchases);
      run(storage, queue, 2);
      await until(async () => (await queue.depthOf(eventId)).queued === 0, 30_000);
      expect(await queue.depthOf(eventId)).toEqual({ queued: 0, deadLetters: 1 });
      expect((await queue.deadLetters(10))[0]!.purchase).toEqual(purchases[2]);
      const statuses = await storage.getStatuses(purchases.map((p) => p.purchaseId));
      expect(purchases.map((p) => statuses.get(p.purchaseId)?.status ?? null)).toEqual([
        'confirmed',
        'confirmed',
        null,
        'confirmed',
        'confirmed',
      ]);
      expect((await storage.getStats(eventId))!.ticketTypes[0]!.sold).toBe(4);
    });

    it("hands back another event's batch claimed beside a batch that failed, while the failed one is retried", async () => {
      const { queue, storage } = await database();
      const first = await saleOf(storage, 100);
      const second = await saleOf(storage, 100);
      // The first event's only purchase fails every time (no such ticket type); the second's are sound.
      await enqueue(queue, [acceptedPurchase(first.eventId, 'no-such-type')]);
      await enqueue(
        queue,
        Array.from({ length: 3 }, () => acceptedPurchase(second.eventId, second.type)),
      );
      const failures: string[] = [];
      const logger = pino({ level: 'warn' }, { write: (line: string) => void failures.push(line) });
      // Attempts enough that the first event is not dead-lettered during the test: it keeps failing.
      run(storage, queue, 10, { maxAttempts: 20, logger });
      await until(() => failures.length > 0, 10_000);

      // The worker is backing off its failed batch, and the second event's batch, claimed beside it, has been
      // handed back: another worker takes it now, not once a lease the first kept renewing has run out.
      let taken = null as ClaimedBatch | null;
      await until(async () => (taken = await queue.claim('w2', 10, 5000)) !== null, 1_000);
      expect(taken?.eventId).toBe(second.eventId);
      expect(taken?.purchases).toHaveLength(3);
      expect(await queue.depthOf(first.eventId)).toEqual({ queued: 1, deadLetters: 0 });
    });

    it('hands back the batch claimed beside when it stops, so another worker takes the event at once', async () => {
      const { queue, storage } = await database();
      const { eventId, type } = await saleOf(storage, 10_000);
      const purchases = Array.from({ length: 3_000 }, () => acceptedPurchase(eventId, type));
      await enqueue(queue, purchases);
      const loop = run(storage, queue, 50);
      await until(async () => (await queue.depthOf(eventId)).queued < 2_900, 30_000);
      await loop.stop();
      const taken = await queue.claim('w2', 10, 5000);
      expect(taken?.eventId).toBe(eventId);
    });
  },
);
