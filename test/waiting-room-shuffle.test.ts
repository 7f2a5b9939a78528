import { randomInt } from 'node:crypto';
import { expect, it } from 'vitest';
import { shuffle } from '../src/domain/waiting-room.js';
import { SqliteWaitingRoom } from '../src/adapters/sqlite/waiting-room.js';
import { join } from 'node:path';
import { tempDir } from './helpers/processes.js';

/**
 * Pearson's chi-square of counts against equal expected frequencies. With 23 degrees of freedom (24
 * orders of 4), 49.7 is the 0.999 quantile; with 4 (5 ranks), 18.5.
 */
function chiSquare(counts: number[]): number {
  const total = counts.reduce((a, b) => a + b, 0);
  const expected = total / counts.length;
  return counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
}

/** How often each of the 24 orders of [0, 1, 2, 3] comes out of `order` in `runs` runs. */
function orderCounts(order: (items: number[]) => number[], runs: number): number[] {
  const counts = new Map<string, number>();
  for (let i = 0; i < runs; i++) {
    const key = order([0, 1, 2, 3]).join('');
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const all: number[] = [];
  for (const a of [0, 1, 2, 3])
    for (const b of [0, 1, 2, 3])
      for (const c of [0, 1, 2, 3])
        for (const d of [0, 1, 2, 3])
          if (new Set([a, b, c, d]).size === 4) all.push(counts.get(`${a}${b}${c}${d}`) ?? 0);
  return all;
}

const RUNS = 48_000;

it('the lottery gives every order of the pre-queue the same chance', () => {
  expect(chiSquare(orderCounts((items) => shuffle(items, randomInt), RUNS))).toBeLessThan(49.7);
});

it('the same test refuses join order and a classic biased shuffle', () => {
  expect(chiSquare(orderCounts((items) => items, RUNS))).toBeGreaterThan(49.7);
  // Swapping each item with any position (not only those not yet fixed) favours some orders.
  const naive = (items: number[]) => {
    for (let i = 0; i < items.length; i++) {
      const j = randomInt(items.length);
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  };
  expect(chiSquare(orderCounts(naive, RUNS))).toBeGreaterThan(49.7);
  // Sorting by a random comparator is biased too.
  expect(chiSquare(orderCounts((items) => items.sort(() => randomInt(2) - 0.5), RUNS))).toBeGreaterThan(49.7);
});

it('through the line itself: the first to join the pre-queue lands on each of 5 ranks alike', async () => {
  const dir = tempDir('onsale-shuffle-');
  const room = new SqliteWaitingRoom(`sqlite:${join(dir.path, 'onsale.db')}`);
  try {
    const open = Date.parse('2030-01-01T00:00:00.000Z');
    const ranks = [0, 0, 0, 0, 0];
    const lines = 400;
    for (let e = 0; e < lines; e++) {
      const eventId = `e${e}`;
      const joined = await room.join(
        ['first', 'second', 'third', 'fourth', 'fifth'].map((buyer, i) => ({
          eventId,
          buyerId: buyer,
          canonicalBuyerId: buyer,
          room: {
            opensAt: new Date(0).toISOString(),
            maxActiveBuyers: 1,
            maxAdmittedPerMinute: null,
            sessionSeconds: 60,
          },
          salesOpenAt: new Date(open).toISOString(),
          joinedAt: new Date(open - 10_000 + i).toISOString(),
        })),
      );
      await room.advance(eventId, { now: open, release: [], soldOut: false });
      const first = await room.getPlace(joined[0]!.place.placeId);
      ranks[first!.lineNumber! - 1]! += 1;
    }
    // Join order would put all 400 on rank 1 (chi-square 1600).
    expect(chiSquare(ranks)).toBeLessThan(18.5);
  } finally {
    await room.close();
    dir.remove();
  }
});
