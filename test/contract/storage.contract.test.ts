import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { canonicalBuyerId } from '../../src/domain/buyer.js';
import type { AcceptedPurchase, SaleEvent } from '../../src/domain/types.js';
import type { Storage } from '../../src/ports/storage.js';
import { storageAdapters } from '../helpers/adapters.js';
import { describeEach } from '../helpers/services.js';

describeEach(storageAdapters, 'Storage contract: $name', (factory) => {
  let storage: Storage;
  let reopen: () => Storage;
  let cleanup: () => Promise<void>;
  let event: SaleEvent;

  function buy(buyerId: string, items: Array<[typeIndex: number, quantity: number]>): AcceptedPurchase {
    return {
      purchaseId: randomUUID(),
      eventId: event.id,
      buyerId,
      canonicalBuyerId: buyerId,
      items: items.map(([i, quantity]) => ({ ticketTypeId: event.ticketTypes[i]!.id, quantity })),
      acceptedAt: new Date().toISOString(),
    };
  }

  beforeEach(async () => {
    ({ adapter: storage, reopen, cleanup } = await factory.open());
    event = await storage.createEvent({
      name: 'Contract night ☃',
      salesOpenAt: '2026-01-01T00:00:00.000Z',
      holdSeconds: 0,
      ticketTypes: [
        { name: 'GA', priceCents: 5000, capacity: 5, maxPerBuyer: 4 },
        { name: 'VIP', priceCents: 9000, capacity: 2, maxPerBuyer: 2 },
      ],
    });
  });
  afterEach(async () => cleanup());

  it('stores events and reads them back from another connection', async () => {
    const other = reopen();
    expect(await other.getEvent(event.id)).toEqual(event);
    expect(await other.listEvents()).toEqual([
      { id: event.id, name: event.name, salesOpenAt: event.salesOpenAt },
    ]);
    expect(await other.getEvent('missing')).toBeNull();
    expect(await other.getAvailability(event.id)).toEqual(
      new Map(event.ticketTypes.map((t) => [t.id, t.capacity])),
    );
    expect(await other.getStats('missing')).toBeNull();
  });

  it('allocates in order, all or nothing, and never beyond capacity', async () => {
    const batch = [
      buy('a', [[0, 3]]),
      buy('b', [[0, 3]]), // 2 left: insufficient
      buy('c', [
        [0, 2],
        [1, 2],
      ]),
      buy('d', [[1, 1]]), // VIP gone: sold out
      buy('e', [[0, 1]]),
    ];
    const result = await storage.applyBatch(event.id, batch);
    expect(result.applied).toBe(5);
    // What the worker counts and logs: each applied purchase's outcome, in the order given.
    expect(result.outcomes.map((o) => [o.purchaseId, o.acceptedAt, o.outcome, o.reason])).toEqual([
      [batch[0]!.purchaseId, batch[0]!.acceptedAt, 'confirmed', null],
      [batch[1]!.purchaseId, batch[1]!.acceptedAt, 'rejected', 'insufficient_inventory'],
      [batch[2]!.purchaseId, batch[2]!.acceptedAt, 'confirmed', null],
      [batch[3]!.purchaseId, batch[3]!.acceptedAt, 'rejected', 'sold_out'],
      [batch[4]!.purchaseId, batch[4]!.acceptedAt, 'rejected', 'sold_out'],
    ]);
    const statuses = await Promise.all(batch.map((p) => storage.getPurchase(p.purchaseId)));
    expect(statuses.map((p) => [p!.status, p!.reason])).toEqual([
      ['confirmed', null],
      ['rejected', 'insufficient_inventory'],
      ['confirmed', null],
      ['rejected', 'sold_out'],
      ['rejected', 'sold_out'],
    ]);
    const c = statuses[2]!;
    expect(c.tickets).toHaveLength(4);
    expect(c.items).toEqual(batch[2]!.items);
    expect(c.createdAt).toBe(batch[2]!.acceptedAt);
    const stats = (await reopen().getStats(event.id))!;
    expect(stats.ticketTypes.map((t) => [t.sold, t.held, t.available])).toEqual([
      [5, 0, 0],
      [2, 0, 0],
    ]);
    expect(stats.purchases).toMatchObject({ confirmed: 2, rejected: 3 });
  });

  it('applies a redelivered batch once', async () => {
    const batch = [buy('a', [[0, 2]]), buy('b', [[1, 1]])];
    expect((await storage.applyBatch(event.id, batch)).applied).toBe(2);
    const before = await storage.getPurchase(batch[0]!.purchaseId);
    // The same batch again, from another connection, with one new purchase appended.
    const more = [...batch, buy('c', [[0, 1]])];
    const again = await reopen().applyBatch(event.id, more);
    expect(again.applied).toBe(1);
    expect(again.outcomes.map((o) => o.purchaseId)).toEqual([more[2]!.purchaseId]);
    expect(await storage.getPurchase(batch[0]!.purchaseId)).toEqual(before);
    const stats = (await storage.getStats(event.id))!;
    expect(stats.ticketTypes.map((t) => t.sold)).toEqual([3, 1]);
    expect(stats.purchases.confirmed).toBe(3);
  });

  it('applies a batch once when two workers apply it at the same moment (a lease ran out)', async () => {
    const batch = Array.from({ length: 4 }, (_, i) => buy(`buyer-${i}`, [[0, 1]]));
    const results = await Promise.all([
      storage.applyBatch(event.id, batch),
      reopen().applyBatch(event.id, batch),
    ]);
    expect(results.map((r) => r.applied).sort()).toEqual([0, 4]);
    const stats = (await storage.getStats(event.id))!;
    expect(stats.ticketTypes[0]!.sold).toBe(4);
    expect(stats.purchases.confirmed).toBe(4);
  });

  it('counts the per-buyer limit across batches', async () => {
    await storage.applyBatch(event.id, [buy('a', [[0, 3]])]);
    const [over, within] = [buy('a', [[0, 2]]), buy('a', [[0, 1]])];
    await storage.applyBatch(event.id, [over, within]);
    expect((await storage.getPurchase(over.purchaseId))!.reason).toBe('limit_exceeded');
    expect((await storage.getPurchase(within.purchaseId))!.status).toBe('confirmed');
  });

  it('issues unique ticket codes and reports statuses in bulk', async () => {
    const batch = Array.from({ length: 5 }, (_, i) => buy(`buyer-${i}`, [[0, 1]]));
    batch.push(buy('late', [[0, 1]]));
    await storage.applyBatch(event.id, batch);
    const purchases = await Promise.all(batch.map((p) => storage.getPurchase(p.purchaseId)));
    const codes = purchases.flatMap((p) => p!.tickets.map((t) => t.code));
    expect(new Set(codes).size).toBe(5);
    const statuses = await storage.getStatuses([...batch.map((p) => p.purchaseId), 'unknown']);
    expect(statuses.size).toBe(6);
    expect(statuses.get(batch[5]!.purchaseId)!.status).toBe('rejected');
    expect(statuses.has('unknown')).toBe(false);
  });

  it("lists an event's purchases newest first, bounded, and finds them by buyer or purchase id", async () => {
    const at = (second: number) => `2026-01-01T00:00:${String(second).padStart(2, '0')}.000Z`;
    const batch = ['ann', 'bob', 'ann', 'cy'].map((buyer, i) => ({
      ...buy(buyer, [[0, 1]]),
      acceptedAt: at(i),
    }));
    await storage.applyBatch(event.id, batch.slice(0, 2));
    await storage.applyBatch(event.id, batch.slice(2));
    const other = await storage.createEvent({
      name: 'Other night',
      salesOpenAt: event.salesOpenAt,
      holdSeconds: 0,
      ticketTypes: [{ name: 'GA', priceCents: 0, capacity: 5, maxPerBuyer: 4 }],
    });
    const elsewhere = { ...buy('ann', []), eventId: other.id };
    elsewhere.items = [{ ticketTypeId: other.ticketTypes[0]!.id, quantity: 1 }];
    await storage.applyBatch(other.id, [elsewhere]);
    const ids = (list: Array<{ purchaseId: string }>) => list.map((p) => p.purchaseId);
    const db = reopen();

    expect(ids(await db.listPurchases(event.id, { limit: 10 }))).toEqual(ids(batch).reverse());
    expect(ids(await db.listPurchases(event.id, { limit: 2 }))).toEqual([
      batch[3]!.purchaseId,
      batch[2]!.purchaseId,
    ]);
    expect(ids(await db.listPurchases(event.id, { match: 'ann', limit: 10 }))).toEqual([
      batch[2]!.purchaseId,
      batch[0]!.purchaseId,
    ]);
    const found = await db.listPurchases(event.id, { match: batch[1]!.purchaseId, limit: 10 });
    expect(found).toEqual([await db.getPurchase(batch[1]!.purchaseId)]);
    expect(found[0]!.tickets).toHaveLength(1);
    expect(await db.listPurchases(event.id, { match: 'nobody', limit: 10 })).toEqual([]);
    expect(await db.listPurchases('missing', { limit: 10 })).toEqual([]);
  });

  it('counts a buyer by the canonical id across batches, keeps the typed id and finds it by any spelling', async () => {
    const spelled = (typed: string, quantity: number) => ({
      ...buy(typed, [[1, quantity]]),
      canonicalBuyerId: canonicalBuyerId(typed),
    });
    const first = spelled('Zoë@Example.com', 1);
    const second = spelled(' ZOE\u0308@example.com', 1);
    const third = spelled('ｚｏｅ\u0308@example.com', 1);
    await storage.applyBatch(event.id, [first]);
    await storage.applyBatch(event.id, [second]);
    // VIP's maxPerBuyer is 2: the third spelling of the same buyer is over it.
    const result = await storage.applyBatch(event.id, [third]);
    expect(result.outcomes.map((o) => o.reason)).toEqual(['limit_exceeded']);
    const db = reopen();
    expect((await db.getPurchase(second.purchaseId))!.buyerId).toBe(' ZOE\u0308@example.com');
    for (const q of ['zoë@example.com', 'ZOË@EXAMPLE.COM', ' zoe\u0308@example.com ']) {
      const found = await db.listPurchases(event.id, { match: q, limit: 10 });
      expect(
        found.map((p) => p.buyerId),
        q,
      ).toEqual(expect.arrayContaining([first.buyerId, second.buyerId, third.buyerId]));
      expect(found).toHaveLength(3);
    }
  });

  it('keeps text verbatim', async () => {
    const name = "Zoë 💃🏽 ‏שלום‎ e\u0301 '; DROP TABLE events; -- \u0000 <b>";
    const created = await storage.createEvent({
      name,
      salesOpenAt: '2026-01-01T00:00:00.000Z',
      holdSeconds: 0,
      ticketTypes: [{ name, priceCents: 0, capacity: 1, maxPerBuyer: 1 }],
    });
    const read = (await reopen().getEvent(created.id))!;
    expect(read.name).toBe(name);
    expect(read.ticketTypes[0]!.name).toBe(name);
  });
});
