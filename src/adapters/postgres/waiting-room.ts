import { randomInt } from 'node:crypto';
import {
  admissionBudget,
  decideFront,
  joinEstimate,
  noDecisions,
  type FrontPlace as FrontRow,
  shuffle,
  withProgress,
  type Line,
  type Place,
} from '../../domain/waiting-room.js';
import type {
  ActiveAdmission,
  AdmittedPurchase,
  AdvanceResult,
  AdvanceStep,
  JoinRequest,
  JoinResult,
  RoomLimits,
  WaitingRoom,
} from '../../ports/waiting-room.js';
import { newPlaceId } from '../../shared/ids.js';
import { PLACE_COLUMNS, roomRows, type LineColumns, type PlaceColumns } from '../sql-rows.js';
import { fromDb, KEYED_SESSION, migratePostgres, PostgresDatabase, toDb, type Tx } from './database.js';

/** node-postgres returns booleans and the parsed jsonb. */
interface LineRow extends LineColumns {
  opened: boolean;
  sold_out: boolean;
  progress: Line['progress'];
}

interface PlaceRow extends PlaceColumns {
  used: boolean;
}

/** Rows to domain values; text comes back through fromDb, as toDb escaped it. */
const toDomain = roomRows(fromDb);

/** How many places of the front one step of advance() reads at a time. */
const CHUNK = 500;

/** The statements of the room; ids and buyer ids travel through toDb/fromDb. */
export const SQL = {
  /** Creates an event's line at its first join. $1 event, $2 sales_open_at, $3..$6 limits, $7 progress. */
  createLine: `INSERT INTO room_lines (event_id, sales_open_at, session_seconds, max_active_buyers,
    max_admitted_per_minute, pow_difficulty, progress) VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (event_id) DO NOTHING`,
  /** The line, locked until the end of the transaction: joins and steps of one line take turns. */
  lockLine: 'SELECT * FROM room_lines WHERE event_id = $1 FOR UPDATE',
  getLine: 'SELECT * FROM room_lines WHERE event_id = $1',
  placeOfBuyer: `SELECT ${PLACE_COLUMNS} FROM room_places WHERE event_id = $1 AND buyer_key = $2`,
  getPlace: `SELECT ${PLACE_COLUMNS} FROM room_places WHERE id = $1`,
  insertPlace: `INSERT INTO room_places (id, event_id, buyer_id, buyer_key, joined_at, join_seq, line_number,
    eta_at_join, last_read_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
  countJoin: 'UPDATE room_lines SET prequeued = prequeued + $1, tail = tail + $2 WHERE event_id = $3',
  prequeue: 'SELECT id FROM room_places WHERE event_id = $1 AND line_number IS NULL ORDER BY join_seq',
  /** Numbers the places $1 (ids) with $2 (line numbers). */
  number: `UPDATE room_places SET line_number = n.line_number
    FROM unnest($1::text[], $2::bigint[]) AS n(id, line_number) WHERE room_places.id = n.id`,
  open: 'UPDATE room_lines SET opened = true, tail = $1, progress = $2 WHERE event_id = $3',
  noteReads: `UPDATE room_places SET last_read_at = greatest(last_read_at, r.at)
    FROM unnest($1::text[], $2::bigint[]) AS r(id, at) WHERE room_places.id = r.id`,
  notePurchases: `INSERT INTO room_purchases (place_id, purchase_id)
    SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING`,
  setLimits: `UPDATE room_lines SET
    max_active_buyers = CASE WHEN $2 THEN $3 ELSE max_active_buyers END,
    max_admitted_per_minute = CASE WHEN $4 THEN $5 ELSE max_admitted_per_minute END,
    pow_difficulty = CASE WHEN $6 THEN $7 ELSE pow_difficulty END
    WHERE event_id = $1 RETURNING *`,
  movingLines: 'SELECT event_id FROM room_lines WHERE NOT sold_out OR active > 0',
  active: `SELECT id, admission_expires_at,
    ARRAY(SELECT purchase_id FROM room_purchases WHERE place_id = room_places.id) AS purchases
    FROM room_places WHERE event_id = $1 AND outcome = 'admitted' AND NOT released`,
  release: `UPDATE room_places SET released = true
    WHERE id = ANY($1::text[]) AND event_id = $2 AND outcome = 'admitted' AND NOT released`,
  front: `SELECT id, last_read_at, joined_at, eta_at_join FROM room_places WHERE event_id = $1 AND line_number > $2
    ORDER BY line_number LIMIT $3`,
  admit: `UPDATE room_places SET outcome = 'admitted', admitted_at = $2, admission_expires_at = $3
    WHERE id = ANY($1::text[])`,
  expire: `UPDATE room_places SET outcome = 'expired' WHERE id = ANY($1::text[])`,
  saveLine: `UPDATE room_lines SET head = $2, active = $3, admitted = $4, expired = $5, sold_out = $6,
    progress = $7 WHERE event_id = $1`,
} as const;

/**
 * The waiting room on PostgreSQL, shared by every web server and worker of a cluster. A join and a step
 * lock their line's row, so one line's joins are numbered in commit order and its steps never overlap.
 */
export class PostgresWaitingRoom implements WaitingRoom {
  readonly #db: PostgresDatabase;

  constructor(url: string) {
    // Every room statement is a key lookup or a walk of an index (KEYED_SESSION says why it is forced).
    this.#db = new PostgresDatabase(url, KEYED_SESSION);
  }

  async migrate(): Promise<void> {
    await migratePostgres(this.#db, 'room');
  }

  async join(requests: readonly JoinRequest[]): Promise<JoinResult[]> {
    // Ids are made before the first attempt: a retried transaction inserts the same places.
    const ids = requests.map(() => newPlaceId());
    // Lines are locked in one order, so two batches of joins to the same events cannot deadlock.
    const events = [...new Set(requests.map((r) => r.eventId))].sort();
    return this.#db.transaction(async (tx) => {
      const lines = new Map<string, LineRow>();
      for (const eventId of events) {
        const first = requests.find((r) => r.eventId === eventId)!;
        await tx.query(SQL.createLine, [
          toDb(eventId),
          first.salesOpenAt,
          first.room.sessionSeconds,
          first.room.maxActiveBuyers,
          first.room.maxAdmittedPerMinute,
          first.room.powDifficulty ?? 0,
          JSON.stringify([[Date.parse(first.joinedAt), 0, 0]]),
        ]);
        lines.set(eventId, await lockLine(tx, eventId));
      }
      const results: JoinResult[] = [];
      for (const [i, request] of requests.entries()) {
        const existing = await tx.query<PlaceRow>(SQL.placeOfBuyer, [
          toDb(request.eventId),
          toDb(request.canonicalBuyerId),
        ]);
        if (existing.rows[0]) {
          results.push({ place: toPlace(existing.rows[0]), created: false });
          continue;
        }
        let line = lines.get(request.eventId)!;
        const now = Date.parse(request.joinedAt);
        if (!line.opened && request.joinedAt >= line.sales_open_at) {
          await openLine(tx, line, now);
          line = await lockLine(tx, request.eventId);
        }
        const prequeue = !line.opened;
        const placeId = ids[i]!;
        await tx.query(SQL.insertPlace, [
          placeId,
          toDb(request.eventId),
          toDb(request.buyerId),
          toDb(request.canonicalBuyerId),
          request.joinedAt,
          prequeue ? line.prequeued + 1 : null,
          prequeue ? null : line.tail + 1,
          prequeue ? null : joinEstimate(line.tail + 1, toLine(line), now),
          now,
        ]);
        await tx.query(SQL.countJoin, [prequeue ? 1 : 0, prequeue ? 0 : 1, toDb(request.eventId)]);
        lines.set(request.eventId, {
          ...line,
          prequeued: line.prequeued + (prequeue ? 1 : 0),
          tail: line.tail + (prequeue ? 0 : 1),
        });
        const created = await tx.query<PlaceRow>(SQL.getPlace, [placeId]);
        results.push({ place: toPlace(created.rows[0]!), created: true });
      }
      return results;
    });
  }

  async getPlace(placeId: string): Promise<Place | null> {
    const { rows } = await this.#db.query<PlaceRow>(SQL.getPlace, [toDb(placeId)]);
    return rows[0] ? toPlace(rows[0]) : null;
  }

  async getLine(eventId: string): Promise<Line | null> {
    const { rows } = await this.#db.query<LineRow>(SQL.getLine, [toDb(eventId)]);
    return rows[0] ? toLine(rows[0]) : null;
  }

  async noteReads(reads: ReadonlyMap<string, number>): Promise<void> {
    if (reads.size === 0) return;
    // Sorted, so that two servers' batches touch rows in one order and never deadlock.
    const sorted = [...reads].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    await this.#db.query(SQL.noteReads, [sorted.map(([id]) => toDb(id)), sorted.map(([, at]) => at)]);
  }

  async notePurchases(purchases: readonly AdmittedPurchase[]): Promise<void> {
    if (purchases.length === 0) return;
    await this.#db.query(SQL.notePurchases, [
      purchases.map((p) => toDb(p.placeId)),
      purchases.map((p) => p.purchaseId),
    ]);
  }

  async setLimits(eventId: string, limits: RoomLimits): Promise<Line | null> {
    const { rows } = await this.#db.query<LineRow>(SQL.setLimits, [
      toDb(eventId),
      limits.maxActiveBuyers !== undefined,
      limits.maxActiveBuyers ?? null,
      limits.maxAdmittedPerMinute !== undefined,
      limits.maxAdmittedPerMinute ?? null,
      limits.powDifficulty !== undefined,
      limits.powDifficulty ?? 0,
    ]);
    return rows[0] ? toLine(rows[0]) : null;
  }

  async movingLines(): Promise<string[]> {
    const { rows } = await this.#db.query<{ event_id: string }>(SQL.movingLines);
    return rows.map((r) => fromDb(r.event_id));
  }

  async activeAdmissions(eventId: string): Promise<ActiveAdmission[]> {
    const { rows } = await this.#db.query<{ id: string; admission_expires_at: string; purchases: string[] }>(
      SQL.active,
      [toDb(eventId)],
    );
    return rows.map((r) => ({
      placeId: fromDb(r.id),
      admissionExpiresAt: r.admission_expires_at,
      purchaseIds: r.purchases,
    }));
  }

  async advance(eventId: string, step: AdvanceStep): Promise<AdvanceResult | null> {
    const id = toDb(eventId);
    return this.#db.transaction(async (tx) => {
      const locked = await tx.query<LineRow>(SQL.lockLine, [id]);
      let row = locked.rows[0];
      if (!row) return null;
      if (!row.opened && new Date(step.now).toISOString() >= row.sales_open_at) {
        await openLine(tx, row, step.now);
        row = await lockLine(tx, eventId);
      }
      const line = toLine(row);
      if (step.release.length > 0) {
        const released = await tx.query(SQL.release, [step.release.map(toDb), id]);
        line.active -= released.rowCount ?? 0;
      }
      line.soldOut = step.soldOut;
      const before = { head: line.head, admitted: line.admitted };
      let budget = admissionBudget(line, step.now);
      const decided = noDecisions();
      while (budget > 0 && line.head < line.tail) {
        const front = await tx.query<FrontRow>(SQL.front, [id, line.head, CHUNK]);
        if (front.rows.length === 0) break;
        budget = decideFront(line, front.rows, budget, step.now, decided);
      }
      const { admit, expire, admitted } = decided;
      if (admit.length > 0) {
        await tx.query(SQL.admit, [
          admit,
          new Date(step.now).toISOString(),
          new Date(step.now + line.sessionSeconds * 1000).toISOString(),
        ]);
      }
      if (expire.length > 0) await tx.query(SQL.expire, [expire]);
      if (line.head !== before.head || line.admitted !== before.admitted) {
        line.progress = withProgress(line.progress, step.now, line.head, line.admitted);
      }
      await tx.query(SQL.saveLine, [
        id,
        line.head,
        line.active,
        line.admitted,
        line.expired,
        line.soldOut,
        JSON.stringify(line.progress),
      ]);
      return { line, admitted, expired: expire.length };
    });
  }

  async close(): Promise<void> {
    await this.#db.close();
  }
}

async function lockLine(tx: Tx, eventId: string): Promise<LineRow> {
  const { rows } = await tx.query<LineRow>(SQL.lockLine, [toDb(eventId)]);
  return rows[0]!;
}

/** The opening lottery: the pre-queue in a uniformly random order at the front of the line. */
async function openLine(tx: Tx, line: LineRow, now: number): Promise<void> {
  const { rows } = await tx.query<{ id: string }>(SQL.prequeue, [line.event_id]);
  const ids = shuffle(
    rows.map((r) => r.id),
    randomInt,
  );
  if (ids.length > 0) await tx.query(SQL.number, [ids, ids.map((_, i) => i + 1)]);
  const progress = withProgress(line.progress, now, Number(line.head), Number(line.admitted));
  await tx.query(SQL.open, [ids.length, JSON.stringify(progress), line.event_id]);
}

function toLine(row: LineRow): Line {
  return toDomain.line(row, { opened: row.opened, soldOut: row.sold_out, progress: row.progress });
}

function toPlace(row: PlaceRow): Place {
  return toDomain.place(row, row.used);
}
