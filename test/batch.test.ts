import { describe, expect, it } from 'vitest';
import { buyerKey, type StockLevel, type TicketGenerator } from '../src/domain/allocation.js';
import { pendingBuyers, planBatch } from '../src/domain/batch.js';
import type { AcceptedPurchase } from '../src/domain/types.js';

/** Ticket ids and codes from a counter, so that a plan is the same on every run. */
function counter(): TicketGenerator {
  let n = 0;
  return (count) =>
    Array.from({ length: count }, () => {
      n += 1;
      return { id: `t${n}`, code: `c${n}` };
    });
}

function purchase(id: string, buyerId: string, items: Array<[string, number]>): AcceptedPurchase {
  return {
    purchaseId: id,
    eventId: 'e',
    buyerId,
    canonicalBuyerId: buyerId,
    items: items.map(([ticketTypeId, quantity]) => ({ ticketTypeId, quantity })),
    acceptedAt: '2026-01-01T00:00:00.000Z',
  };
}

function stock(entries: Record<string, [capacity: number, maxPerBuyer: number, sold?: number]>) {
  return new Map<string, StockLevel>(
    Object.entries(entries).map(([id, [capacity, maxPerBuyer, sold = 0]]) => [
      id,
      { capacity, sold, held: 0, maxPerBuyer },
    ]),
  );
}

const none: ReadonlySet<string> = new Set();

describe('planBatch', () => {
  it('counts one buyer by the canonical id, whatever each purchase typed, and totals by it', () => {
    const spelled = (id: string, typed: string) => ({
      ...purchase(id, typed, [['ga', 2]]),
      canonicalBuyerId: 'alice@example.com',
    });
    const batch = [spelled('p1', 'Alice@Example.com'), spelled('p2', ' alice@example.com')];
    const bought = new Map([[buyerKey('alice@example.com', 'ga'), 1]]);
    const plan = planBatch(batch, none, stock({ ga: [100, 4] }), bought, counter());
    expect(plan.outcomes.map((o) => o.reason)).toEqual([null, 'limit_exceeded']);
    expect([...plan.bought.values()]).toEqual([
      { buyerId: 'alice@example.com', ticketTypeId: 'ga', quantity: 2 },
    ]);
    expect(pendingBuyers(batch, none)).toEqual(['alice@example.com']);
  });

  it('skips purchases already applied, and their buyers', () => {
    const batch = [purchase('p1', 'a', [['ga', 1]]), purchase('p2', 'b', [['ga', 1]])];
    const applied = new Set(['p1']);
    expect(pendingBuyers(batch, applied)).toEqual(['b']);
    expect(pendingBuyers(batch, new Set(['p1', 'p2']))).toEqual([]);

    const plan = planBatch(batch, applied, stock({ ga: [5, 4] }), new Map(), counter());
    expect(plan.outcomes.map((o) => o.purchaseId)).toEqual(['p2']);
    expect(plan.decisions.map((d) => d.purchase.purchaseId)).toEqual(['p2']);
    expect(plan.sold).toEqual(new Map([['ga', 1]]));
    expect([...plan.bought.values()]).toEqual([{ buyerId: 'b', ticketTypeId: 'ga', quantity: 1 }]);
  });

  it('serves first come first served within a batch, then says not enough left and sold out', () => {
    const batch = [
      purchase('p1', 'a', [['ga', 3]]),
      purchase('p2', 'b', [['ga', 3]]), // 2 left: not enough
      purchase('p3', 'c', [['ga', 2]]),
      purchase('p4', 'd', [['ga', 1]]), // none left
    ];
    const levels = stock({ ga: [5, 4] });
    const plan = planBatch(batch, none, levels, new Map(), counter());
    expect(plan.outcomes).toEqual([
      { purchaseId: 'p1', acceptedAt: batch[0]!.acceptedAt, outcome: 'confirmed', reason: null },
      {
        purchaseId: 'p2',
        acceptedAt: batch[1]!.acceptedAt,
        outcome: 'rejected',
        reason: 'insufficient_inventory',
      },
      { purchaseId: 'p3', acceptedAt: batch[2]!.acceptedAt, outcome: 'confirmed', reason: null },
      { purchaseId: 'p4', acceptedAt: batch[3]!.acceptedAt, outcome: 'rejected', reason: 'sold_out' },
    ]);
    expect(plan.counts).toEqual({ confirmed: 2, rejected: 2, held: 0, waitlisted: 0 });
    expect(plan.sold).toEqual(new Map([['ga', 5]]));
    expect(levels.get('ga')!.sold).toBe(5);
  });

  it('counts the per-buyer limit across the batch and the totals bought before', () => {
    const bought = new Map([[buyerKey('a', 'ga'), 2]]);
    const batch = [
      purchase('p1', 'a', [['ga', 1]]),
      purchase('p2', 'a', [['ga', 1]]), // 2 before + 1 + 1 = the limit
      purchase('p3', 'a', [['ga', 1]]), // one over
      purchase('p4', 'b', [['ga', 3]]),
      purchase('p5', 'b', [['ga', 2]]), // 3 + 2 > 4 within the batch alone
    ];
    const plan = planBatch(batch, none, stock({ ga: [100, 4] }), bought, counter());
    expect(plan.outcomes.map((o) => o.reason ?? o.outcome)).toEqual([
      'confirmed',
      'confirmed',
      'limit_exceeded',
      'confirmed',
      'limit_exceeded',
    ]);
    // One entry per (buyer, type) with what this batch adds; `bought` holds the totals after it.
    expect([...plan.bought]).toEqual([
      [buyerKey('a', 'ga'), { buyerId: 'a', ticketTypeId: 'ga', quantity: 2 }],
      [buyerKey('b', 'ga'), { buyerId: 'b', ticketTypeId: 'ga', quantity: 3 }],
    ]);
    expect(bought.get(buyerKey('a', 'ga'))).toBe(4);
    expect(bought.get(buyerKey('b', 'ga'))).toBe(3);
  });

  it('reports sold out against stock sold before the batch', () => {
    const plan = planBatch(
      [purchase('p1', 'a', [['vip', 1]])],
      none,
      stock({ vip: [2, 2, 2] }),
      new Map(),
      counter(),
    );
    expect(plan.outcomes[0]).toMatchObject({ outcome: 'rejected', reason: 'sold_out' });
    expect(plan.sold.size).toBe(0);
    expect(plan.bought.size).toBe(0);
  });

  it('never sells more than is left, whatever the batch', () => {
    // A fixed pseudo-random crowd: many buyers, two types, quantities 1..4.
    let seed = 7;
    const next = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    const batch = Array.from({ length: 500 }, (_, i) =>
      purchase(`p${i}`, `b${next(60)}`, [[next(2) === 0 ? 'ga' : 'vip', 1 + next(4)]]),
    );
    const levels = stock({ ga: [300, 6, 40], vip: [50, 2, 10] });
    const plan = planBatch(batch, none, levels, new Map(), counter());
    expect(plan.sold.get('ga')!).toBeLessThanOrEqual(300 - 40);
    expect(plan.sold.get('vip')!).toBeLessThanOrEqual(50 - 10);
    for (const level of levels.values()) expect(level.sold + level.held).toBeLessThanOrEqual(level.capacity);

    const issued = plan.decisions.flatMap((d) => (d.outcome === 'confirmed' ? d.tickets : []));
    expect(issued).toHaveLength([...plan.sold.values()].reduce((a, b) => a + b, 0));
    expect(new Set(issued.map((t) => t.code)).size).toBe(issued.length);
    const perBuyer = [...plan.bought.values()];
    for (const b of perBuyer) expect(b.quantity).toBeLessThanOrEqual(b.ticketTypeId === 'ga' ? 6 : 2);
  });

  it('is deterministic under a deterministic generator', () => {
    const batch = [
      purchase('p1', 'a', [
        ['ga', 2],
        ['vip', 1],
      ]),
      purchase('p2', 'b', [['vip', 2]]),
      purchase('p3', 'c', [['ga', 1]]),
    ];
    const run = () => planBatch(batch, none, stock({ ga: [10, 4], vip: [2, 2] }), new Map(), counter());
    const first = run();
    expect(run()).toEqual(first);
    expect(first.decisions[0]).toEqual({
      purchase: batch[0],
      outcome: 'confirmed',
      tickets: [
        { id: 't1', code: 'c1', ticketTypeId: 'ga' },
        { id: 't2', code: 'c2', ticketTypeId: 'ga' },
        { id: 't3', code: 'c3', ticketTypeId: 'vip' },
      ],
    });
    expect(first.decisions[1]).toMatchObject({ outcome: 'rejected', reason: 'insufficient_inventory' });
    expect(first.decisions[2]).toMatchObject({ tickets: [{ id: 't4', code: 'c4', ticketTypeId: 'ga' }] });
  });
});
