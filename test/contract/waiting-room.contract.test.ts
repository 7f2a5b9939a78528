import { afterAll, afterEach, beforeEach, expect, it } from 'vitest';
import type { WaitingRoomSettings } from '../../src/domain/types.js';
import { ABANDONED_AFTER_MS } from '../../src/domain/waiting-room.js';
import type { JoinRequest, WaitingRoom } from '../../src/ports/waiting-room.js';
import { waitingRoomAdapters } from '../helpers/adapters.js';
import { describeEach } from '../helpers/services.js';

const OPEN = Date.parse('2030-01-01T12:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

describeEach(waitingRoomAdapters, 'WaitingRoom contract: $name', (factory) => {
  let room: WaitingRoom;
  let reopen: () => WaitingRoom;
  let cleanup: () => Promise<void>;
  let eventSeq = 0;

  beforeEach(async () => {
    ({ adapter: room, reopen, cleanup } = await factory.open());
  });
  afterEach(async () => cleanup());
  afterAll(async () => factory.teardown?.());

  function settings(overrides: Partial<WaitingRoomSettings> = {}): WaitingRoomSettings {
    return {
      opensAt: iso(OPEN - 3_600_000),
      maxActiveBuyers: 1000,
      maxAdmittedPerMinute: null,
      sessionSeconds: 600,
      ...overrides,
    };
  }

  function requests(eventId: string, buyers: string[], at: number, room = settings()): JoinRequest[] {
    return buyers.map((b) => ({
      eventId,
      buyerId: b,
      canonicalBuyerId: b.toLowerCase(),
      room,
      salesOpenAt: iso(OPEN),
      joinedAt: iso(at),
    }));
  }

  const newEvent = () => `event-${++eventSeq}-${Math.random().toString(36).slice(2)}`;
  const step = async (eventId: string, now: number, release: string[] = [], soldOut = false) =>
    (await room.advance(eventId, { now, release, soldOut }))?.line ?? null;

  it('gives a buyer one place, however often and however spelled they join', async () => {
    const eventId = newEvent();
    const [first] = await room.join(requests(eventId, ['Ann'], OPEN + 1000));
    expect(first!.created).toBe(true);
    const [again, other] = await reopen().join([
      ...requests(eventId, ['ANN'], OPEN + 2000),
      ...requests(eventId, ['bob'], OPEN + 2000),
    ]);
    expect(again).toEqual({ place: first!.place, created: false });
    expect(other!.place.lineNumber).toBe(2);
    expect(first!.place).toMatchObject({ eventId, buyerId: 'Ann', canonicalBuyerId: 'ann', lineNumber: 1 });
    expect(await reopen().getPlace(first!.place.placeId)).toEqual(first!.place);
    expect(await room.getPlace('missing')).toBeNull();
    expect(await room.getLine('missing')).toBeNull();
  });

  it('numbers one batch spanning the opening and two events as if each join came alone', async () => {
    const [a, b] = [newEvent(), newEvent()];
    const early = await room.join(requests(a, ['p1', 'p2'], OPEN - 5_000));
    const batch = await room.join([
      ...requests(a, ['p3'], OPEN - 10),
      ...requests(a, ['late-1'], OPEN + 5),
      ...requests(b, ['other-1'], OPEN + 5),
      ...requests(a, ['LATE-1', 'late-2'], OPEN + 6),
      ...requests(b, ['other-2'], OPEN + 7),
    ]);
    expect(batch.map((j) => [j.place.lineNumber, j.created])).toEqual([
      [null, true],
      [4, true],
      [1, true],
      [4, false],
      [5, true],
      [2, true],
    ]);
    expect(batch[3]!.place).toEqual(batch[1]!.place);
    // The join after the opening ran the lottery over the three pre-queue places, the batch's own included.
    const prequeue = [...early, batch[0]!].map((j) => j.place.placeId);
    const numbers = await Promise.all(prequeue.map(async (id) => (await room.getPlace(id))!.lineNumber));
    expect([...numbers].sort()).toEqual([1, 2, 3]);
    expect(await room.getLine(a)).toMatchObject({ opened: true, prequeued: 3, tail: 5 });
    expect(await room.getLine(b)).toMatchObject({ opened: true, prequeued: 0, tail: 2 });
    // What each join answered is what was stored (the pre-queue place has been numbered since).
    for (const j of batch.slice(1)) expect(await reopen().getPlace(j.place.placeId)).toEqual(j.place);
  });

  it('shuffles the pre-queue once at opening, then lines up arrivals in order, and admits in that order', async () => {
    const eventId = newEvent();
    const early = Array.from({ length: 1500 }, (_, i) => `early-${i}`);
    const joined = [];
    for (let i = 0; i < early.length; i += 500) {
      joined.push(...(await room.join(requests(eventId, early.slice(i, i + 500), OPEN - 60_000 + i))));
    }
    expect(joined.every((j) => j.place.lineNumber === null)).toBe(true);
    expect((await room.getLine(eventId))!).toMatchObject({ opened: false, prequeued: 1500, tail: 0 });

    // Nothing moves before the opening.
    expect(await step(eventId, OPEN - 1)).toMatchObject({ opened: false, head: 0, admitted: 0 });
    const opened = await step(eventId, OPEN + 1, [], false);
    expect(opened).toMatchObject({ opened: true, tail: 1500 });

    const numbers = await Promise.all(
      joined.map(async (j) => (await room.getPlace(j.place.placeId))!.lineNumber!),
    );
    expect([...numbers].sort((a, b) => a - b)).toEqual(early.map((_, i) => i + 1));
    // Join order survives a uniform shuffle of 1,500 with probability 1/1500!.
    expect(numbers).not.toEqual(early.map((_, i) => i + 1));
    // The lottery is decided once: another step (another process) does not shuffle again.
    await reopen().advance(eventId, { now: OPEN + 2, release: [], soldOut: false });
    const again = await Promise.all(
      joined.map(async (j) => (await room.getPlace(j.place.placeId))!.lineNumber),
    );
    expect(again).toEqual(numbers);

    const late = Array.from({ length: 1500 }, (_, i) => `late-${i}`);
    const lateJoined = [];
    for (let i = 0; i < late.length; i += 300) {
      lateJoined.push(...(await room.join(requests(eventId, late.slice(i, i + 300), OPEN + 10 + i))));
    }
    expect(lateJoined.map((j) => j.place.lineNumber)).toEqual(late.map((_, i) => 1501 + i));

    // The first step admitted up to maxActiveBuyers (1000) in line order.
    const byNumber = new Map<number, string>();
    joined.forEach((j, i) => byNumber.set(numbers[i]!, j.place.placeId));
    lateJoined.forEach((j) => byNumber.set(j.place.lineNumber!, j.place.placeId));
    let line = (await room.getLine(eventId))!;
    expect(line).toMatchObject({ head: 1000, admitted: 1000, active: 1000 });
    for (let n = 1; n <= 3000; n += 1) {
      const place = (await room.getPlace(byNumber.get(n)!))!;
      expect(place.outcome, `line number ${n}`).toBe(n <= 1000 ? 'admitted' : null);
    }
    // Freeing 700 slots admits exactly the next 700.
    const release = Array.from({ length: 700 }, (_, i) => byNumber.get(i + 1)!);
    line = (await step(eventId, OPEN + 5000, release))!;
    expect(line).toMatchObject({ head: 1700, admitted: 1700, active: 1000 });
    expect((await room.getPlace(byNumber.get(1700)!))!.outcome).toBe('admitted');
    expect((await room.getPlace(byNumber.get(1701)!))!.outcome).toBeNull();
    // Releasing again the same places frees nothing more.
    line = (await step(eventId, OPEN + 6000, release))!;
    expect(line).toMatchObject({ head: 1700, active: 1000 });
  });

  it('admits within maxActiveBuyers and maxAdmittedPerMinute, which the organizer can change', async () => {
    const eventId = newEvent();
    const joined = await room.join(
      requests(
        eventId,
        Array.from({ length: 20 }, (_, i) => `b${i}`),
        OPEN + 1,
        settings({ maxActiveBuyers: 3, powDifficulty: 5 }),
      ),
    );
    const first3 = (await room.advance(eventId, { now: OPEN + 10, release: [], soldOut: false }))!;
    let line = first3.line;
    expect(line).toMatchObject({ head: 3, active: 3, admitted: 3, powDifficulty: 5 });
    // Each admitted buyer's wait beside the estimate it was told at join (none before the line moved).
    expect(first3.admitted).toEqual([0, 1, 2].map(() => ({ waitedSeconds: 0.009, etaAtJoin: null })));
    expect(first3.expired).toBe(0);
    line = (await step(eventId, OPEN + 20))!;
    expect(line).toMatchObject({ head: 3, active: 3 });
    const first = (await room.getPlace(joined[0]!.place.placeId))!;
    expect(first).toMatchObject({ outcome: 'admitted', admittedAt: iso(OPEN + 10) });
    expect(first.admissionExpiresAt).toBe(iso(OPEN + 10 + 600_000));

    expect(await room.setLimits(eventId, { maxActiveBuyers: 100, maxAdmittedPerMinute: 2 })).toMatchObject({
      maxActiveBuyers: 100,
      maxAdmittedPerMinute: 2,
    });
    line = (await step(eventId, OPEN + 30))!;
    // 3 admitted within the last minute already: none more until they age out of it.
    expect(line).toMatchObject({ head: 3 });
    line = (await step(eventId, OPEN + 10 + 60_001))!;
    expect(line).toMatchObject({ head: 5, admitted: 5 });
    line = (await step(eventId, OPEN + 10 + 90_000))!;
    expect(line).toMatchObject({ head: 5 });
    expect(await room.setLimits(eventId, { maxAdmittedPerMinute: null, powDifficulty: 0 })).toMatchObject({
      maxActiveBuyers: 100,
      maxAdmittedPerMinute: null,
      powDifficulty: 0,
    });
    expect(await reopen().getLine(eventId)).toMatchObject({ powDifficulty: 0, maxActiveBuyers: 100 });
    line = (await step(eventId, OPEN + 10 + 91_000))!;
    expect(line).toMatchObject({ head: 20, active: 20 });
    expect(await room.setLimits('missing', { maxActiveBuyers: 1 })).toBeNull();
  });

  it('skips as expired a place nobody read for five minutes when its turn comes', async () => {
    const eventId = newEvent();
    const joined = await room.join(
      requests(eventId, ['a', 'b', 'c'], OPEN + 1, settings({ maxActiveBuyers: 1 })),
    );
    const later = OPEN + 1 + ABANDONED_AFTER_MS + 1000;
    // b's page kept reading; a and c were left.
    await room.noteReads(new Map([[joined[1]!.place.placeId, later - 1000]]));
    const line = (await step(eventId, later))!;
    expect(line).toMatchObject({ head: 2, admitted: 1, expired: 1, active: 1 });
    expect((await room.getPlace(joined[0]!.place.placeId))!.outcome).toBe('expired');
    expect((await room.getPlace(joined[1]!.place.placeId))!.outcome).toBe('admitted');
    expect((await room.getPlace(joined[2]!.place.placeId))!.outcome).toBeNull();
  });

  it('lists active admissions with their purchases, and stops at sold out', async () => {
    const eventId = newEvent();
    const joined = await room.join(
      requests(eventId, ['a', 'b', 'c'], OPEN + 1, settings({ maxActiveBuyers: 2 })),
    );
    await step(eventId, OPEN + 10);
    // Recorded in one batch, then again: the second time changes nothing.
    const first = { placeId: joined[0]!.place.placeId, purchaseId: 'purchase-1' };
    await room.notePurchases([first, { placeId: joined[1]!.place.placeId, purchaseId: 'purchase-2' }]);
    await room.notePurchases([first]);
    await room.notePurchases([]);
    const active = await reopen().activeAdmissions(eventId);
    expect(active.map((a) => [a.placeId, a.purchaseIds]).sort()).toEqual(
      [
        [joined[0]!.place.placeId, ['purchase-1']],
        [joined[1]!.place.placeId, ['purchase-2']],
      ].sort(),
    );
    expect((await room.getPlace(joined[0]!.place.placeId))!.used).toBe(true);
    expect(await room.movingLines()).toContain(eventId);
    const line = (await step(
      eventId,
      OPEN + 20,
      [joined[0]!.place.placeId, joined[1]!.place.placeId],
      true,
    ))!;
    expect(line).toMatchObject({ soldOut: true, active: 0, head: 2 });
    expect(await room.movingLines()).not.toContain(eventId);
  });

  it('never admits anyone twice when several processes step the line at once', async () => {
    const eventId = newEvent();
    const buyers = Array.from({ length: 300 }, (_, i) => `buyer-${i}`);
    await room.join(requests(eventId, buyers, OPEN + 1, settings({ maxActiveBuyers: 120 })));
    const rooms = [room, reopen(), reopen()];
    await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        rooms[i % 3]!.advance(eventId, { now: OPEN + 100 + i, release: [], soldOut: false }),
      ),
    );
    const line = (await room.getLine(eventId))!;
    expect(line).toMatchObject({ head: 120, admitted: 120, active: 120 });
    expect(new Set((await room.activeAdmissions(eventId)).map((a) => a.placeId)).size).toBe(120);
  });
});
