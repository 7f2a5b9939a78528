import { describe, expect, it } from 'vitest';
import {
  checkInvariants,
  type FinalPurchase,
  type SentPurchase,
  type StockView,
} from '../src/simulate/invariants.js';

/** The checks must catch what they promise to catch; a checker that always passes proves nothing. */
describe('checkInvariants', () => {
  const ga = { ticketTypeId: 'ga', quantity: 1 };
  let clock = 0;
  function sent(purchaseId: string, status = 202): SentPurchase {
    clock += 10;
    return {
      buyerId: `b-${purchaseId}`,
      items: [ga],
      sentAt: clock,
      answeredAt: clock + 5,
      status,
      purchaseId,
    };
  }
  function final(
    purchaseId: string,
    status: string,
    reason: string | null,
    codes: string[] = [],
  ): FinalPurchase {
    return {
      purchaseId,
      buyerId: `b-${purchaseId}`,
      status,
      reason,
      items: [ga],
      tickets: codes.map((code) => ({ id: code, ticketTypeId: 'ga', code })),
    };
  }
  const stock = (sold: number, capacity = 2): StockView[] => [
    { id: 'ga', capacity, sold, held: 0, available: capacity - sold, maxPerBuyer: 1 },
  ];

  it('passes a clean sale', () => {
    const s = [sent('a'), sent('b'), sent('c')];
    const purchases = new Map([
      ['a', final('a', 'confirmed', null, ['x'])],
      ['b', final('b', 'confirmed', null, ['y'])],
      ['c', final('c', 'rejected', 'sold_out')],
    ]);
    expect(checkInvariants({ sent: s, purchases, stock: stock(2) })).toEqual([]);
  });

  it('catches an oversell', () => {
    const s = [sent('a'), sent('b'), sent('c')];
    const purchases = new Map(
      ['a', 'b', 'c'].map((id) => [id, final(id, 'confirmed', null, [`code-${id}`])]),
    );
    const kinds = checkInvariants({ sent: s, purchases, stock: stock(3, 2) }).map((v) => v.invariant);
    expect(kinds).toContain('no_oversell');
  });

  it('catches a lost and an unfinished purchase', () => {
    const s = [sent('a'), sent('b')];
    const purchases = new Map([
      ['a', null],
      ['b', final('b', 'queued', null)],
    ]);
    const v = checkInvariants({ sent: s, purchases, stock: stock(0) });
    expect(v.filter((x) => x.invariant === 'nothing_lost')).toHaveLength(2);
  });

  it('catches a duplicated ticket code and a double allocation', () => {
    const s = [sent('a'), sent('b')];
    const purchases = new Map([
      ['a', final('a', 'confirmed', null, ['same'])],
      ['b', final('b', 'confirmed', null, ['same', 'extra'])],
    ]);
    const kinds = checkInvariants({ sent: s, purchases, stock: stock(2) }).map((v) => v.invariant);
    expect(kinds.filter((k) => k === 'no_double_effect').length).toBeGreaterThanOrEqual(2);
  });

  it('catches a buyer over the limit', () => {
    const s = [sent('a'), sent('b')];
    const purchases = new Map([
      ['a', { ...final('a', 'confirmed', null, ['x']), buyerId: 'same' }],
      ['b', { ...final('b', 'confirmed', null, ['y']), buyerId: 'same' }],
    ]);
    const kinds = checkInvariants({ sent: s, purchases, stock: stock(2) }).map((v) => v.invariant);
    expect(kinds).toEqual(['per_buyer_limit']);
  });

  it('catches service out of order, and ignores overlapping requests', () => {
    const a = sent('a');
    const b = sent('b'); // sent after a's 202 arrived
    const purchases = new Map([
      ['a', final('a', 'rejected', 'sold_out')],
      ['b', final('b', 'confirmed', null, ['x'])],
    ]);
    expect(checkInvariants({ sent: [a, b], purchases, stock: stock(1, 1) }).map((v) => v.invariant)).toEqual([
      'first_come_first_served',
    ]);
    // Were they in flight together, either order is fair.
    const overlapping = { ...b, sentAt: a.sentAt + 1 };
    expect(checkInvariants({ sent: [a, overlapping], purchases, stock: stock(1, 1) })).toEqual([]);
  });

  it('checks a sale of the standard size (200,000 purchases) and still finds one out-of-order refusal', () => {
    // Comparing every pair would never finish here: the check must scale with the crowd (it did not once).
    const n = 200_000;
    const s: SentPurchase[] = [];
    const purchases = new Map<string, FinalPurchase>();
    for (let i = 0; i < n; i++) {
      const id = `p${i}`;
      s.push({
        buyerId: `b-${id}`,
        items: [ga],
        sentAt: i * 10,
        answeredAt: i * 10 + 5,
        status: 202,
        purchaseId: id,
      });
      // The first 50,000 get tickets, the rest are refused, except p70000: p50000 was refused before it came.
      const served = i < 50_000 || i === 70_000;
      purchases.set(id, served ? final(id, 'confirmed', null, [`c${i}`]) : final(id, 'rejected', 'sold_out'));
    }
    const v = checkInvariants({ sent: s, purchases, stock: stock(50_001, 50_001) });
    expect(v.map((x) => x.invariant)).toEqual(['first_come_first_served']);
    expect(v[0]!.detail).toContain('p50000');
    expect(v[0]!.detail).toContain('p70000');
  }, 60_000);
});
