import { describe, expect, it } from 'vitest';
import { allocate, buyerKey, type StockLevel } from '../src/domain/allocation.js';
import { newTickets } from '../src/shared/ids.js';
import type { AcceptedPurchase } from '../src/domain/types.js';

let n = 0;
function p(buyerId: string, items: Array<[string, number]>): AcceptedPurchase {
  n += 1;
  return {
    purchaseId: `p${n}`,
    eventId: 'e',
    buyerId,
    canonicalBuyerId: buyerId,
    items: items.map(([ticketTypeId, quantity]) => ({ ticketTypeId, quantity })),
    acceptedAt: new Date().toISOString(),
  };
}

function stock(entries: Record<string, [capacity: number, maxPerBuyer: number]>): Map<string, StockLevel> {
  return new Map(
    Object.entries(entries).map(([id, [capacity, maxPerBuyer]]) => [
      id,
      { capacity, sold: 0, held: 0, maxPerBuyer },
    ]),
  );
}

describe('allocate', () => {
  it('serves purchases in order until stock runs out, then says sold out', () => {
    const s = stock({ ga: [5, 4] });
    const out = allocate(
      [p('a', [['ga', 3]]), p('b', [['ga', 3]]), p('c', [['ga', 2]]), p('d', [['ga', 1]])],
      s,
      new Map(),
      newTickets,
    );
    expect(out.map((d) => (d.outcome === 'rejected' ? d.reason : 'ok'))).toEqual([
      'ok',
      'insufficient_inventory',
      'ok',
      'sold_out',
    ]);
    expect(s.get('ga')!.sold).toBe(5);
  });

  it('is all or nothing across items', () => {
    const s = stock({ ga: [10, 10], vip: [1, 10] });
    const [first, second] = allocate(
      [
        p('a', [['vip', 1]]),
        p('b', [
          ['ga', 2],
          ['vip', 1],
        ]),
      ],
      s,
      new Map(),
      newTickets,
    );
    expect(first!.outcome).toBe('confirmed');
    expect(second).toMatchObject({ outcome: 'rejected', reason: 'sold_out' });
    expect(s.get('ga')!.sold).toBe(0);
  });

  it('counts the per-buyer limit across purchases, including earlier batches', () => {
    const s = stock({ ga: [100, 4] });
    const bought = new Map([[buyerKey('a', 'ga'), 2]]);
    const out = allocate(
      [p('a', [['ga', 2]]), p('a', [['ga', 1]]), p('b', [['ga', 4]])],
      s,
      bought,
      newTickets,
    );
    expect(out.map((d) => d.outcome)).toEqual(['confirmed', 'rejected', 'confirmed']);
    expect(out[1]).toMatchObject({ reason: 'limit_exceeded' });
    expect(bought.get(buyerKey('a', 'ga'))).toBe(4);
  });

  it('issues one ticket per unit with distinct codes', () => {
    const out = allocate(
      [
        p('a', [
          ['ga', 3],
          ['vip', 2],
        ]),
      ],
      stock({ ga: [10, 10], vip: [10, 10] }),
      new Map(),
      newTickets,
    );
    const d = out[0]!;
    if (d.outcome !== 'confirmed') throw new Error('expected confirmed');
    expect(d.tickets.filter((t) => t.ticketTypeId === 'ga')).toHaveLength(3);
    expect(d.tickets.filter((t) => t.ticketTypeId === 'vip')).toHaveLength(2);
    expect(new Set(d.tickets.map((t) => t.code)).size).toBe(5);
    // The time in milliseconds, then 128 random bits: codes sort in issue order, and cannot be guessed.
    for (const t of d.tickets) expect(t.code).toMatch(/^[0-9a-f]{12}[A-Za-z0-9_-]{22}$/);
  });
});
