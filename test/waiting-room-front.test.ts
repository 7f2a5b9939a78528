import { describe, expect, it } from 'vitest';
import {
  ABANDONED_AFTER_MS,
  decideFront,
  noDecisions,
  type FrontPlace,
  type Line,
} from '../src/domain/waiting-room.js';

const NOW = Date.parse('2030-01-01T12:10:00Z');

function line(over: Partial<Line> = {}): Line {
  return {
    eventId: 'ev1',
    salesOpenAt: '2030-01-01T12:00:00.000Z',
    opened: true,
    prequeued: 0,
    tail: 10,
    head: 2,
    active: 1,
    admitted: 2,
    expired: 0,
    soldOut: false,
    maxActiveBuyers: 5,
    maxAdmittedPerMinute: null,
    sessionSeconds: 600,
    powDifficulty: 0,
    progress: [],
    ...over,
  };
}

/** A place that joined `waitedMs` ago, last read `unreadMs` ago, told `eta` at join. */
const place = (id: string, waitedMs: number, unreadMs: number, eta: number | null = 30): FrontPlace => ({
  id,
  last_read_at: NOW - unreadMs,
  joined_at: new Date(NOW - waitedMs).toISOString(),
  eta_at_join: eta,
});

describe("one step's walk along the front", () => {
  it('admits in line order while the budget lasts, skipping abandoned places without spending it', () => {
    const l = line();
    const decided = noDecisions();
    const front = [
      place('p3', 40_000, 1_000),
      place('p4', 39_000, ABANDONED_AFTER_MS + 1),
      place('p5', 38_000, 2_000, null),
      place('p6', 37_000, 3_000),
      place('p7', 36_000, 4_000),
    ];
    const left = decideFront(l, front, 3, NOW, decided);
    expect(left).toBe(0);
    expect(decided.admit).toEqual(['p3', 'p5', 'p6']);
    expect(decided.expire).toEqual(['p4']);
    expect(decided.admitted).toEqual([
      { waitedSeconds: 40, etaAtJoin: 30 },
      { waitedSeconds: 38, etaAtJoin: null },
      { waitedSeconds: 37, etaAtJoin: 30 },
    ]);
    // p7 is left for the next step: the head stops after the last place decided.
    expect(l).toMatchObject({ head: 6, admitted: 5, active: 4, expired: 1 });
  });

  it('keeps the budget left when the chunk runs out, for the next chunk', () => {
    const l = line();
    const decided = noDecisions();
    expect(decideFront(l, [place('p3', 1_000, 1_000)], 3, NOW, decided)).toBe(2);
    expect(decideFront(l, [place('p4', 1_000, ABANDONED_AFTER_MS)], 2, NOW, decided)).toBe(1);
    expect(decided).toMatchObject({ admit: ['p3', 'p4'], expire: [] });
    expect(l.head).toBe(4);
  });
});
