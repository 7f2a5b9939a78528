import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { checkAdmissionOrder, type PlaceRecord } from '../src/simulate/room-order.js';
import type { RoomReport } from '../src/simulate/waiting-room.js';
import { ADMIN_TOKEN, LOOPBACK_EXEMPT, runCli, startOnsale, tempDir } from './helpers/processes.js';

/** `onsale simulate --waiting-room`, through the real CLI against a real `onsale start`. */

const dir = tempDir('onsale-simulate-room-');
afterAll(() => dir.remove());

interface StoredPlace {
  joined_at: string;
  join_seq: number | null;
  line_number: number | null;
  outcome: string | null;
  admitted_at: string | null;
  eta_at_join: number | null;
}

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

describe('onsale simulate --waiting-room', () => {
  it('plays a crowd through the line; its report matches what the server stored', async () => {
    const onsale = await startOnsale({ mode: 'start', env: LOOPBACK_EXEMPT });
    try {
      const json = join(dir.path, 'room.json');
      const html = join(dir.path, 'room.html');
      const run = runCli(
        [
          'simulate',
          '--waiting-room',
          '--url',
          onsale.baseUrl,
          '--buyers',
          '240',
          '--tickets',
          '150',
          '--arrival',
          'ramp',
          '--duration',
          '12',
          '--prequeue',
          '3',
          '--max-active-buyers',
          '15',
          '--session-seconds',
          '10',
          '--abandon-place-rate',
          '0.1',
          '--settle',
          '60',
          '--report-json',
          json,
          '--report-html',
          html,
        ],
        { ONSALE_ADMIN_TOKEN: ADMIN_TOKEN },
      );
      const { code } = await run.exited;
      expect(code, run.output()).toBe(0);
      const report = JSON.parse(readFileSync(json, 'utf8')) as RoomReport;
      expect(report.checks).toEqual({ ok: true, violations: [] });
      expect(run.output()).toContain('checks: all held');
      expect(readFileSync(html, 'utf8')).toContain('Every check held');

      const t = report.totals;
      expect(t.buyers).toBe(240);
      expect(t.joined).toBe(240);
      expect(t.abandoned).toBeGreaterThan(0);
      expect(t.admitted).toBeGreaterThan(0);
      expect(t.soldOutTold).toBeGreaterThan(0);
      expect(t.unfinished + t.gaveUp).toBe(0);
      expect(t.joined).toBe(t.admitted + t.soldOutTold + t.expired + t.abandoned);
      expect(t.ticketsSold).toBe(150);
      expect(report.timeToSellOutSec).toBeGreaterThan(0);
      // Every purchase was made on an admission, and only admitted buyers bought.
      expect(t.purchases).toBe(t.admitted);
      expect(t.accepted).toBe(t.purchases);
      expect(t.confirmed + t.rejected).toBe(t.accepted);
      // Nobody admitted after sold out bought (the line is told sold_out at once).
      expect(report.afterSoldOut.admittedAfterSoldOut).toBe(0);

      // What the server stored.
      const db = new Database(join(onsale.dataDir, 'onsale.db'), { readonly: true, fileMustExist: true });
      let places: StoredPlace[];
      let purchases: number;
      try {
        places = db
          .prepare(
            'SELECT joined_at, join_seq, line_number, outcome, admitted_at, eta_at_join FROM room_places ' +
              'WHERE event_id = ? ORDER BY line_number',
          )
          .all(report.eventId) as StoredPlace[];
        purchases = (
          db
            .prepare(
              'SELECT count(*) AS n FROM room_purchases p JOIN room_places r ON r.id = p.place_id WHERE r.event_id = ?',
            )
            .get(report.eventId) as { n: number }
        ).n;
      } finally {
        db.close();
      }
      expect(places).toHaveLength(t.joined);
      expect(places.filter((p) => p.join_seq !== null)).toHaveLength(t.prequeued);
      expect(t.prequeued).toBeGreaterThan(0);
      expect(t.prequeued).toBeLessThan(t.joined);
      const admitted = places.filter((p) => p.outcome === 'admitted');
      expect(report.server?.admitted).toBe(admitted.length);
      // Abandoned places may have been admitted unseen, and an admission may have expired before its buyer
      // read it: the server admitted at least what buyers saw.
      expect(admitted.length).toBeGreaterThanOrEqual(t.admitted);
      expect(admitted.length).toBeLessThanOrEqual(t.admitted + t.abandoned + t.expired);
      expect(purchases).toBe(t.accepted);
      const counted = report.admissionsPerMinute.perMinute.reduce((a, b) => a + b, 0);
      expect(counted).toBeGreaterThanOrEqual(t.admitted);
      expect(counted).toBeLessThanOrEqual(admitted.length);
      // The server admitted in line order: admission times never go back along the line.
      const times = admitted.map((p) => Date.parse(p.admitted_at!));
      expect(times).toEqual([...times].sort((a, b) => a - b));

      // The estimate: the server's own record of what it told and when it admitted, against the report.
      const told = admitted.filter((p) => p.eta_at_join !== null);
      expect(report.estimate.buyers).toBeGreaterThan(0);
      expect(report.estimate.buyers).toBeLessThanOrEqual(told.length);
      const storedError = median(
        told.map((p) =>
          Math.abs(p.eta_at_join! - (Date.parse(p.admitted_at!) - Date.parse(p.joined_at)) / 1000),
        ),
      );
      expect(Math.abs(report.estimate.medianAbsErrorSec! - storedError)).toBeLessThan(3);
      expect(report.waitSec.count).toBe(t.admitted);
      expect(report.waitSec.max).toBeGreaterThanOrEqual(report.waitSec.p90);
      expect(report.waitSec.p90).toBeGreaterThanOrEqual(report.waitSec.p50);
    } finally {
      await onsale.stop();
    }
  }, 120_000);

  it('catches a fabricated out-of-order record set', () => {
    const place = (buyerId: string, over: Partial<PlaceRecord>): PlaceRecord => ({
      buyerId,
      joinSentAt: 0,
      joinAnsweredAt: 0,
      prequeue: false,
      outcome: 'admitted',
      admittedAt: 0,
      ...over,
    });
    const inOrder = [
      place('lottery-1', { prequeue: true, admittedAt: 1000 }),
      place('lottery-2', { prequeue: true, admittedAt: 1000 }),
      place('first', { joinSentAt: 10, joinAnsweredAt: 20, admittedAt: 1000 }),
      place('second', { joinSentAt: 30, joinAnsweredAt: 40, admittedAt: 2000 }),
      // Joined while `second` was in flight: either order is fair.
      place('concurrent', { joinSentAt: 35, joinAnsweredAt: 45, admittedAt: 1500 }),
      place('left', { joinSentAt: 50, joinAnsweredAt: 60, outcome: 'abandoned', admittedAt: null }),
      place('third', { joinSentAt: 70, joinAnsweredAt: 80, admittedAt: 3000 }),
      place('late', { joinSentAt: 90, joinAnsweredAt: 100, outcome: 'sold_out', admittedAt: null }),
    ];
    expect(checkAdmissionOrder(inOrder)).toEqual([]);
    // A join sent before the opening and answered after it may have taken its place in either part of the
    // line (an earlier attempt whose answer was lost): it is held to neither order.
    const unsure = place('unsure', { prequeue: null, joinSentAt: 5, joinAnsweredAt: 95, admittedAt: 900 });
    expect(checkAdmissionOrder([...inOrder, unsure])).toEqual([]);

    // A later joiner admitted before an earlier one.
    const swapped = inOrder.map((r) => (r.buyerId === 'second' ? { ...r, admittedAt: 3500 } : r));
    const found = checkAdmissionOrder(swapped);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ check: 'admission_order' });
    expect(found[0]!.detail).toContain('second');
    expect(found[0]!.detail).toContain('third');

    // A pre-queue place admitted after one who joined after the opening.
    const lotteryLate = inOrder.map((r) => (r.buyerId === 'lottery-2' ? { ...r, admittedAt: 1200 } : r));
    expect(checkAdmissionOrder(lotteryLate).map((v) => v.detail)).toEqual([
      expect.stringContaining('lottery-2'),
    ]);

    // An earlier place told sold_out while a later one was admitted.
    const skipped = inOrder.map((r) =>
      r.buyerId === 'first' ? { ...r, outcome: 'sold_out' as const, admittedAt: null } : r,
    );
    const sold = checkAdmissionOrder(skipped);
    expect(sold.length).toBeGreaterThan(0);
    expect(sold.every((v) => v.detail.includes('first') && v.detail.includes('sold_out'))).toBe(true);
  });

  it('refuses bad room flags with exit 2, naming the flag', async () => {
    const bad: Array<[string[], string]> = [
      [['--abandon-place-rate', '1.5'], '--abandon-place-rate'],
      [['--max-active-buyers', '0'], '--max-active-buyers'],
      [['--max-admitted-per-minute', 'lots'], '--max-admitted-per-minute'],
      [['--prequeue', '-1'], '--prequeue'],
      [['--session-seconds', '5'], '--session-seconds'],
      [['--processes', '2'], '--processes'],
    ];
    // In parallel: each is a CLI start-up, and they are independent.
    await Promise.all(
      bad.map(async ([flags, name]) => {
        const run = runCli(['simulate', '--waiting-room', '--url', 'http://127.0.0.1:9', ...flags], {
          ONSALE_ADMIN_TOKEN: ADMIN_TOKEN,
        });
        expect((await run.exited).code, run.output()).toBe(2);
        expect(run.output()).toContain(name);
      }),
    );
  }, 60_000);
});
