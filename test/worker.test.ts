import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteQueue } from '../src/adapters/sqlite/queue.js';
import { SqliteStorage } from '../src/adapters/sqlite/storage.js';
import type { AcceptedPurchase } from '../src/domain/types.js';
import { startWorkerLoop, type WorkerLoop } from '../src/worker/worker.js';
import { tempDir, until } from './helpers/processes.js';

describe('worker loop', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function setup(capacity = 100) {
    const dir = tempDir();
    const url = `sqlite:${join(dir.path, 'onsale.db')}`;
    const storage = new SqliteStorage(url);
    const queue = new SqliteQueue(url);
    cleanups.push(
      dir.remove,
      () => storage.close(),
      () => queue.close(),
    );
    const event = await storage.createEvent({
      name: 'w',
      salesOpenAt: new Date().toISOString(),
      holdSeconds: 0,
      ticketTypes: [{ name: 'GA', priceCents: 1, capacity, maxPerBuyer: 10 }],
    });
    const make = (ticketTypeId = event.ticketTypes[0]!.id, buyerId = randomUUID()): AcceptedPurchase => ({
      purchaseId: randomUUID(),
      eventId: event.id,
      buyerId,
      canonicalBuyerId: buyerId,
      items: [{ ticketTypeId, quantity: 1 }],
      acceptedAt: new Date().toISOString(),
    });
    const run = (maxAttempts: number): WorkerLoop => {
      const loop = startWorkerLoop({
        storage,
        queue,
        workerId: 'w1',
        batchSize: 100,
        maxAttempts,
        logger: pino({ level: 'silent' }),
      });
      cleanups.push(() => loop.stop());
      return loop;
    };
    return { storage, queue, event, make, run };
  }

  it('dead-letters a poison purchase after maxAttempts and serves the ones around it in order', async () => {
    const { storage, queue, event, make, run } = await setup();
    // A purchase naming a ticket type the event does not have cannot come through the API; straight onto
    // the queue it makes every allocation of its batch fail.
    const purchases = [make(), make(), make('no-such-type'), make(), make()];
    await queue.enqueue(purchases.map((purchase) => ({ purchase })));
    run(3);
    await until(async () => (await queue.depthOf(event.id)).queued === 0);

    expect(await queue.depthOf(event.id)).toEqual({ queued: 0, deadLetters: 1 });
    const [letter] = await queue.deadLetters(10);
    expect(letter!.purchase).toEqual(purchases[2]);
    expect(letter!.reason).toContain('no-such-type');
    const statuses = await Promise.all(purchases.map((p) => storage.getPurchase(p.purchaseId)));
    expect(statuses.map((p) => p?.status ?? null)).toEqual([
      'confirmed',
      'confirmed',
      null,
      'confirmed',
      'confirmed',
    ]);
    expect((await storage.getStats(event.id))!.ticketTypes[0]!.sold).toBe(4);
  });

  it('lets timers run between batches while a backlog lasts', async () => {
    // SQLite answers synchronously: a loop that never yields would hold every timer (the metrics server, the
    // checkout sweeper, the room ticker, SIGTERM's handler) until the queue is empty.
    const { queue, event, make, run } = await setup(10_000);
    await queue.enqueue(Array.from({ length: 5_000 }, () => ({ purchase: make() })));
    const queuedWhenTimerRan = new Promise<number>((resolve) =>
      setTimeout(() => void queue.depthOf(event.id).then((d) => resolve(d.queued)), 0),
    );
    run(5);
    expect(await queuedWhenTimerRan).toBeGreaterThan(0);
    await until(async () => (await queue.depthOf(event.id)).queued === 0);
  });

  it('stops after its current batch and leaves the rest queued', async () => {
    const { queue, event, make, run } = await setup();
    const loop = run(5);
    await loop.stop();
    await queue.enqueue([{ purchase: make() }]);
    await new Promise((r) => setTimeout(r, 100));
    expect((await queue.depthOf(event.id)).queued).toBe(1);
  });
});
