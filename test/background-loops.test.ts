/**
 * The worker's background loops on SQLite, whose calls all answer synchronously: a loop with work left
 * must still give the event loop a turn between rounds, or the process's timers (the metrics server, the
 * room ticker, SIGTERM's handler) wait until the work is done.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { openPaymentProvider } from '../src/adapters/payments/index.js';
import { SqliteOutbox } from '../src/adapters/sqlite/outbox.js';
import { SqliteStorage } from '../src/adapters/sqlite/storage.js';
import type { AcceptedPurchase } from '../src/domain/types.js';
import { startCheckoutSweeper } from '../src/worker/checkout-sweeper.js';
import { startMailLoop } from '../src/worker/mail.js';
import { tempDir } from './helpers/processes.js';

const silent = pino({ level: 'silent' });

describe('background loops on SQLite', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  /** A storage with `count` purchases of one ticket each, by buyers with email addresses, applied. */
  async function withPurchases(count: number, holdSeconds: number) {
    const dir = tempDir();
    const url = `sqlite:${join(dir.path, 'onsale.db')}`;
    const storage = new SqliteStorage(url);
    cleanups.push(dir.remove, () => storage.close());
    const event = await storage.createEvent({
      name: 'loops',
      salesOpenAt: new Date().toISOString(),
      holdSeconds,
      ticketTypes: [{ name: 'GA', priceCents: 100, capacity: count, maxPerBuyer: 1 }],
    });
    const purchases = Array.from({ length: count }, (): AcceptedPurchase => {
      const buyerId = `${randomUUID()}@example.com`;
      return {
        purchaseId: randomUUID(),
        eventId: event.id,
        buyerId,
        canonicalBuyerId: buyerId,
        items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
        acceptedAt: new Date().toISOString(),
      };
    });
    for (let i = 0; i < count; i += 500) await storage.applyBatch(event.id, purchases.slice(i, i + 500));
    return { url, storage, event };
  }

  /** What `read` gives when a timer set now first runs. */
  const atFirstTimer = <T>(read: () => Promise<T>) =>
    new Promise<T>((resolve) => setTimeout(() => void read().then(resolve), 0));

  it('the mail loop with mail off lets timers run while emails are left', async () => {
    const { url, storage } = await withPurchases(2_000, 0);
    const outbox = new SqliteOutbox(url);
    cleanups.push(() => outbox.close());
    expect((await outbox.stats()).depth).toBe(2_000);
    const seen = atFirstTimer(async () => (await outbox.stats()).depth);
    const loop = startMailLoop({
      outbox,
      storage,
      mailer: null,
      workerId: 'w1',
      publicUrl: 'http://localhost',
      senderDomain: 'example.com',
      logger: silent,
    });
    cleanups.push(() => loop.stop());
    expect(await seen).toBeGreaterThan(0);
  });

  it('the checkout sweeper lets timers run while expired holds are left', async () => {
    const { storage, event } = await withPurchases(3_000, 1);
    const held = async () => (await storage.getStats(event.id))!.purchases.held;
    expect(await held()).toBe(3_000);
    await new Promise((r) => setTimeout(r, 1_100));
    const provider = await openPaymentProvider(
      { payments: 'test', paymentSecrets: { testWebhookSecret: null } },
      storage,
    );
    const seen = atFirstTimer(held);
    const sweeper = startCheckoutSweeper({ storage, provider, logger: silent });
    cleanups.push(() => sweeper.stop());
    expect(await seen).toBeGreaterThan(0);
    await expect.poll(held, { timeout: 20_000 }).toBe(0);
  });
});
