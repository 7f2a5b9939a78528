import { describe, expect, it } from 'vitest';
import {
  etaSeconds,
  headSpeed,
  joinEstimate,
  MAX_REFRESH_AFTER_SECONDS,
  placeView,
  RATE_WINDOW_MS,
  REFRESH_AFTER_SECONDS,
  refreshAfterSeconds,
  withProgress,
  type Line,
  type Place,
} from '../src/domain/waiting-room.js';

const OPEN = Date.parse('2030-01-01T12:00:00Z');

/**
 * A line whose sales opened at OPEN, created by a pre-queue join `prequeueMs` before, opened at OPEN, then
 * moved by `moves` ([ms after OPEN, positions]), every sample kept as the adapters keep them (withProgress).
 */
function lineAfter(moves: Array<[number, number]>, prequeueMs = 30_000): Line {
  let progress: Line['progress'] = [[OPEN - prequeueMs, 0, 0]];
  progress = withProgress(progress, OPEN, 0, 0);
  let head = 0;
  for (const [at, positions] of moves) {
    head += positions;
    progress = withProgress(progress, OPEN + at, head, head);
  }
  return {
    eventId: 'ev1',
    salesOpenAt: new Date(OPEN).toISOString(),
    opened: true,
    prequeued: 0,
    tail: 100_000,
    head,
    active: 40,
    admitted: head,
    expired: 0,
    soldOut: false,
    maxActiveBuyers: 40,
    maxAdmittedPerMinute: null,
    sessionSeconds: 600,
    powDifficulty: 0,
    progress,
  };
}

/** `count` steps of `positions`, one every `everyMs`, the first at `firstAt` ms after the opening. */
const steps = (firstAt: number, count: number, everyMs: number, positions: number): Array<[number, number]> =>
  Array.from({ length: count }, (_, i) => [firstAt + i * everyMs, positions]);

describe('the wait estimate', () => {
  it('is exact for a line moving at a steady speed', () => {
    // 10 positions every second for two minutes: 10 positions a second over the last minute.
    const line = lineAfter(steps(1000, 120, 1000, 10));
    const now = OPEN + 120_500;
    expect(headSpeed(line, now)).toBe(10);
    expect(etaSeconds(500, line, now)).toBe(50);
    expect(etaSeconds(1, line, now)).toBe(0);
  });

  it("measures the speed from the opening's fill, whatever the length of the pre-queue before it", () => {
    // The opening's step fills 40 slots, the first slot frees 1.25 s later, then 2 positions a second: 16
    // positions in the 8.75 s since the first freed slot.
    const moves: Array<[number, number]> = [[250, 40], ...steps(1250, 9, 1000, 2)];
    for (const prequeueMs of [5_000, 30_000, 300_000]) {
      const line = lineAfter(moves, prequeueMs);
      expect(headSpeed(line, OPEN + 10_000)).toBeCloseTo(16 / 8.75, 10);
      expect(etaSeconds(58, line, OPEN + 10_000)).toBe(32);
    }
  });

  it('leaves the fill and the wait for its first freed slot out while the window holds them, and counts every step once it has slid past', () => {
    // A fill of 2,000 slots, 3 s before the first slot frees, then 300 positions a second: the places behind
    // the fill move at 300 a second.
    const after = (seconds: number) => lineAfter([[250, 2_000], ...steps(3_250, seconds - 2, 1000, 300)]);
    expect(headSpeed(after(5), OPEN + 5_250)).toBeCloseTo(300, 10);
    expect(headSpeed(after(40), OPEN + 40_250)).toBeCloseTo(300, 10);
    // Once the window starts after the first freed slot: the last minute's 300 a second.
    expect(headSpeed(after(63), OPEN + 64_000)).toBeCloseTo(300, 10);
  });

  it('tells no estimate while the only move is the opening filling every free slot at once', () => {
    const line = lineAfter([[250, 40]]);
    // 40 positions in the first quarter second is no speed: slots free only as buyers finish.
    for (const at of [1_000, 5_000, 30_000, RATE_WINDOW_MS - 1]) {
      expect(headSpeed(line, OPEN + at)).toBeNull();
      expect(etaSeconds(100, line, OPEN + at)).toBeNull();
    }
    // The first slot freed and given to the next in line: the line's pace is measured from there.
    const freed = lineAfter([
      [250, 40],
      [4_000, 1],
    ]);
    expect(headSpeed(freed, OPEN + 5_000)).toBeNull();
    const moved = lineAfter([
      [250, 40],
      [4_000, 1],
      [4_500, 1],
    ]);
    expect(headSpeed(moved, OPEN + 5_500)).toBeCloseTo(1 / 1.5, 10);
  });

  it('keeps the samples in time order when a step read its clock before the opening that a join made', () => {
    // A join opened the line 5 ms after the sales opened; the step that then filled the slots read its
    // clock 44 ms before the opening (while it waited for the line): its sample still comes after.
    let progress: Line['progress'] = withProgress([[OPEN - 30_000, 0, 0]], OPEN + 5, 0, 0);
    progress = withProgress(progress, OPEN - 44, 40, 40);
    progress = withProgress(progress, OPEN + 3_000, 41, 41);
    progress = withProgress(progress, OPEN + 3_500, 42, 42);
    expect(progress.map((s) => s[0])).toEqual([
      OPEN - 30_000,
      OPEN + 5,
      OPEN + 5,
      OPEN + 3_000,
      OPEN + 3_500,
    ]);
    // The pace counts from the first slot freed after the fill.
    expect(headSpeed({ ...lineAfter([]), progress }, OPEN + 4_000)).toBeCloseTo(1, 10);
  });

  it('tells none in the first second, nor before the line moved, nor before the sales open', () => {
    expect(etaSeconds(10, lineAfter([]), OPEN + 10_000)).toBeNull();
    const line = lineAfter([
      [100, 40],
      [400, 1],
    ]);
    expect(etaSeconds(10, line, OPEN + 900)).toBeNull();
    expect(etaSeconds(10, line, OPEN - 1_000)).toBeNull();
  });

  it('counts a burst of the per-minute cap over the minute it stands for', () => {
    // maxAdmittedPerMinute 100: the cap's 100 at the opening, the next 100 a minute later.
    expect(headSpeed(lineAfter([[250, 100]]), OPEN + 59_000)).toBeNull();
    const line = lineAfter([
      [250, 100],
      [60_250, 100],
    ]);
    expect(headSpeed(line, OPEN + 60_500)).toBeCloseTo(100 / 60, 10);
    expect(etaSeconds(100, line, OPEN + 60_500)).toBe(60);
  });

  it('follows the line as it moves: the last minute only, and slowing down when it stops', () => {
    // 20 a second for a minute, then 5 a second for a minute.
    const line = lineAfter([...steps(1000, 60, 1000, 20), ...steps(61_000, 60, 1000, 5)]);
    expect(headSpeed(line, OPEN + 120_500)).toBe(5);
    expect(etaSeconds(100, line, OPEN + 120_500)).toBe(20);
    // Then it stops: 30 s later the same minute holds half the positions.
    expect(headSpeed(line, OPEN + 150_500)).toBe(2.5);
    // And a minute later nothing moved in the window: no speed, no estimate (never a negative or infinite one).
    expect(headSpeed(line, OPEN + 181_000)).toBeNull();
    expect(etaSeconds(100, line, OPEN + 181_000)).toBeNull();
  });

  it('gives a joining place the estimate of its position behind the head every server shows', () => {
    const line = lineAfter(steps(1000, 120, 1000, 10));
    const now = OPEN + 120_500;
    // The head shown is that of a second ago (1190); line number 1690 is 500 places behind it.
    expect(joinEstimate(1690, line, now)).toBe(50);
  });
});

describe('when the waiting page reads its place again', () => {
  const waiting = (etaSeconds: number | null) => ({
    state: 'waiting' as const,
    position: 10,
    aheadOfYou: 9,
    etaSeconds,
  });
  const line = lineAfter(steps(1000, 120, 1000, 10));

  it('reads every 5 s near the front and while no wait is estimated, every quarter of the wait further back, at most every 30 s', () => {
    expect(refreshAfterSeconds(waiting(null), line, OPEN)).toBe(REFRESH_AFTER_SECONDS);
    expect(refreshAfterSeconds(waiting(0), line, OPEN)).toBe(5);
    expect(refreshAfterSeconds(waiting(12), line, OPEN)).toBe(5);
    expect(refreshAfterSeconds(waiting(40), line, OPEN)).toBe(10);
    expect(refreshAfterSeconds(waiting(100), line, OPEN)).toBe(25);
    expect(refreshAfterSeconds(waiting(3600), line, OPEN)).toBe(MAX_REFRESH_AFTER_SECONDS);
  });

  it('reads at least every half session, so that a buyer admitted between two reads keeps half of it', () => {
    const shortSessions = { ...line, sessionSeconds: 20 };
    expect(refreshAfterSeconds(waiting(100), shortSessions, OPEN)).toBe(10);
    expect(refreshAfterSeconds(waiting(3600), shortSessions, OPEN)).toBe(10);
    expect(refreshAfterSeconds(waiting(3600), { ...line, sessionSeconds: 6 }, OPEN)).toBe(
      REFRESH_AFTER_SECONDS,
    );
    expect(refreshAfterSeconds(waiting(3600), { ...line, sessionSeconds: 90 }, OPEN)).toBe(30);
  });

  it('before the opening, reads every quarter of the time left to it, every 5 s in its last 20 s', () => {
    const prequeue = { state: 'prequeue' as const, position: null, aheadOfYou: null, etaSeconds: null };
    const before = (seconds: number) => OPEN - seconds * 1000;
    expect(refreshAfterSeconds(prequeue, line, before(3600))).toBe(30);
    expect(refreshAfterSeconds(prequeue, line, before(60))).toBe(15);
    expect(refreshAfterSeconds(prequeue, line, before(10))).toBe(5);
    expect(refreshAfterSeconds(prequeue, line, OPEN + 2_000)).toBe(5);
    expect(refreshAfterSeconds(prequeue, null, before(3600))).toBe(5);
  });

  it('tells a place far back in a line moving at a steady speed to read every 30 s, one near the front every 5 s', () => {
    const now = OPEN + 120_500;
    const far = placeView(placeAt(100_000, line.head + 5_000), line, now);
    expect(far.etaSeconds).toBeGreaterThan(4 * 30);
    expect(refreshAfterSeconds(far, line, now)).toBe(30);
    const near = placeView(placeAt(100_001, line.head + 20), line, now);
    expect(refreshAfterSeconds(near, line, now)).toBe(5);
  });
});

function placeAt(serial: number, lineNumber: number): Place {
  return {
    placeId: `p${serial}`,
    eventId: 'ev1',
    buyerId: `b${serial}`,
    canonicalBuyerId: `b${serial}`,
    joinedAt: new Date(OPEN).toISOString(),
    lineNumber,
    outcome: null,
    admittedAt: null,
    admissionExpiresAt: null,
    used: false,
    etaAtJoin: null,
  };
}
