import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, afterEach, expect, it } from 'vitest';
import { SqliteStorage } from '../src/adapters/sqlite/storage.js';
import { UnavailableError } from '../src/domain/errors.js';
import type { Purchase } from '../src/domain/types.js';
import { StatusWatcher } from '../src/web/status-stream.js';
import { eventually } from './helpers/http.js';
import { tempDir } from './helpers/processes.js';

/**
 * Status streams learn of changes by polling storage: statuses of every watched purchase in one query, then
 * the changed purchase in full. Storage may fail between the two (a database restarting): the change must
 * still reach the stream at a later poll, or its buyer waits for good on a purchase that is long final.
 */

const dir = tempDir('onsale-watcher-');
afterAll(() => dir.remove());
let watcher: StatusWatcher | undefined;
let storage: SqliteStorage | undefined;
afterEach(async () => {
  watcher?.close();
  await storage?.close();
});

it('tells a change whose first full read failed, at the next poll', async () => {
  storage = new SqliteStorage(`sqlite:${join(dir.path, 'onsale.db')}`);
  await storage.migrate();
  const event = await storage.createEvent({
    name: 'Watched night',
    salesOpenAt: '2026-01-01T00:00:00.000Z',
    holdSeconds: 60,
    ticketTypes: [{ name: 'GA', priceCents: 5000, capacity: 5, maxPerBuyer: 4 }],
  });
  const purchaseId = randomUUID();
  await storage.applyBatch(event.id, [
    {
      purchaseId,
      eventId: event.id,
      buyerId: 'watched@example.com',
      canonicalBuyerId: 'watched@example.com',
      items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
      acceptedAt: new Date().toISOString(),
    },
  ]);
  const held = (await storage.getPurchase(purchaseId))!;
  expect(held.status).toBe('held');

  // The real storage, but its next full read of a purchase fails as an engine that went away does.
  const real = storage;
  let failuresLeft = 1;
  const flakyRead = async (id: string) => {
    if (failuresLeft > 0) {
      failuresLeft -= 1;
      throw new UnavailableError('storage restarting');
    }
    return real.getPurchase(id);
  };
  const flaky = new Proxy(real, {
    get: (target, name) => {
      if (name === 'getPurchase') return flakyRead;
      const value: unknown = Reflect.get(target, name);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  watcher = new StatusWatcher(flaky);
  const told: Purchase[] = [];
  watcher.watch(held, (p) => told.push(p));

  expect((await real.cancelPurchase(purchaseId, new Date()))!.outcome).toBe('cancelled');
  await eventually(async () => expect(told.map((p) => p.status)).toEqual(['cancelled']), 10_000);
  expect(failuresLeft).toBe(0);
});
