import { randomInt } from 'node:crypto';
import type { Statement } from 'better-sqlite3';
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
import { PLACE_COLUMNS, roomRows, sameText, type LineColumns, type PlaceColumns } from '../sql-rows.js';
import {
  guarded,
  migrateSqlite,
  openSqlite,
  prepareAll,
  withoutBlockingOnLock,
  type SqliteDatabase,
} from './database.js';

/** SQLite returns 0/1 and JSON text. */
interface LineRow extends LineColumns {
  opened: number;
  sold_out: number;
  progress: string;
}

interface PlaceRow extends PlaceColumns {
  used: number;
}

/** Rows to domain values; SQLite keeps text as written. */
const toDomain = roomRows(sameText);

/** How many places of the front one step of advance() reads at a time. */
const CHUNK = 500;

const SQL = {
  createLine: `INSERT INTO room_lines (event_id, sales_open_at, session_seconds, max_active_buyers,
    max_admitted_per_minute, pow_difficulty, progress) VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (event_id) DO NOTHING`,
  getLine: 'SELECT * FROM room_lines WHERE event_id = ?',
  placeOfBuyer: `SELECT ${PLACE_COLUMNS} FROM room_places WHERE event_id = ? AND buyer_key = ?`,
  getPlace: `SELECT ${PLACE_COLUMNS} FROM room_places WHERE id = ?`,
  insertPlace: `INSERT INTO room_places (id, event_id, buyer_id, buyer_key, joined_at, join_seq, line_number,
    eta_at_join, last_read_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  countJoin: 'UPDATE room_lines SET prequeued = prequeued + ?, tail = tail + ? WHERE event_id = ?',
  prequeue: 'SELECT id FROM room_places WHERE event_id = ? AND line_number IS NULL ORDER BY join_seq',
  number: 'UPDATE room_places SET line_number = ? WHERE id = ?',
  open: 'UPDATE room_lines SET opened = 1, tail = ?, progress = ? WHERE event_id = ?',
  noteRead: 'UPDATE room_places SET last_read_at = max(last_read_at, ?) WHERE id = ?',
  notePurchase: 'INSERT INTO room_purchases (place_id, purchase_id) VALUES (?, ?) ON CONFLICT DO NOTHING',
  setMaxActive: 'UPDATE room_lines SET max_active_buyers = ? WHERE event_id = ?',
  setMaxPerMinute: 'UPDATE room_lines SET max_admitted_per_minute = ? WHERE event_id = ?',
  setPowDifficulty: 'UPDATE room_lines SET pow_difficulty = ? WHERE event_id = ?',
  movingLines: 'SELECT event_id FROM room_lines WHERE sold_out = 0 OR active > 0',
  active: `SELECT id, admission_expires_at,
    (SELECT json_group_array(purchase_id) FROM room_purchases WHERE place_id = room_places.id) AS purchases
    FROM room_places WHERE event_id = ? AND outcome = 'admitted' AND released = 0`,
  release: `UPDATE room_places SET released = 1
    WHERE id = ? AND event_id = ? AND outcome = 'admitted' AND released = 0`,
  front: `SELECT id, last_read_at, joined_at, eta_at_join FROM room_places WHERE event_id = ? AND line_number > ?
    ORDER BY line_number LIMIT ?`,
  admit: `UPDATE room_places SET outcome = 'admitted', admitted_at = ?, admission_expires_at = ? WHERE id = ?`,
  expire: `UPDATE room_places SET outcome = 'expired' WHERE id = ?`,
  saveLine: `UPDATE room_lines SET head = ?, active = ?, admitted = ?, expired = ?, sold_out = ?, progress = ?
    WHERE event_id = ?`,
} as const;

/** The waiting room on the embedded SQLite file; its write lock serializes joins and steps. */
export class SqliteWaitingRoom implements WaitingRoom {
  readonly #db: SqliteDatabase;
  readonly #stmt: Record<keyof typeof SQL, Statement>;

  constructor(url: string) {
    this.#db = guarded(() => openSqlite(url));
    migrateSqlite(this.#db, 'room');
    this.#stmt = prepareAll(this.#db, SQL);
  }

  async migrate(): Promise<void> {
    guarded(() => migrateSqlite(this.#db, 'room'));
  }

  async join(requests: readonly JoinRequest[]): Promise<JoinResult[]> {
    const s = this.#stmt;
    return withoutBlockingOnLock(this.#db, () =>
      this.#db
        .transaction(() => {
          // Each event's line, read once per batch (and again after it opens) and counted here as the
          // batch joins it: its progress is parsed once, not once per join.
          const lines = new Map<string, Line>();
          const lineOf = (request: JoinRequest, now: number): Line => {
            let line = lines.get(request.eventId);
            if (!line) {
              s.createLine.run(
                request.eventId,
                request.salesOpenAt,
                request.room.sessionSeconds,
                request.room.maxActiveBuyers,
                request.room.maxAdmittedPerMinute,
                request.room.powDifficulty ?? 0,
                JSON.stringify([[now, 0, 0]]),
              );
              line = toLine(s.getLine.get(request.eventId) as LineRow);
            }
            if (!line.opened && request.joinedAt >= line.salesOpenAt) {
              this.#open(s.getLine.get(request.eventId) as LineRow, now);
              line = toLine(s.getLine.get(request.eventId) as LineRow);
            }
            lines.set(request.eventId, line);
            return line;
          };
          return requests.map((request): JoinResult => {
            const existing = s.placeOfBuyer.get(request.eventId, request.canonicalBuyerId) as
              PlaceRow | undefined;
            if (existing) return { place: toPlace(existing), created: false };
            const now = Date.parse(request.joinedAt);
            const line = lineOf(request, now);
            const prequeue = !line.opened;
            const place: Place = {
              placeId: newPlaceId(),
              eventId: request.eventId,
              buyerId: request.buyerId,
              canonicalBuyerId: request.canonicalBuyerId,
              joinedAt: request.joinedAt,
              lineNumber: prequeue ? null : line.tail + 1,
              outcome: null,
              admittedAt: null,
              admissionExpiresAt: null,
              used: false,
              etaAtJoin: prequeue ? null : joinEstimate(line.tail + 1, line, now),
            };
            s.insertPlace.run(
              place.placeId,
              place.eventId,
              place.buyerId,
              place.canonicalBuyerId,
              place.joinedAt,
              prequeue ? line.prequeued + 1 : null,
              place.lineNumber,
              place.etaAtJoin,
              now,
            );
            s.countJoin.run(prequeue ? 1 : 0, prequeue ? 0 : 1, request.eventId);
            if (prequeue) line.prequeued += 1;
            else line.tail += 1;
            return { place, created: true };
          });
        })
        .immediate(),
    );
  }

  /** The opening lottery: the pre-queue in a uniformly random order at the front of the line. */
  #open(line: LineRow, now: number): void {
    const ids = shuffle(this.#stmt.prequeue.pluck().all(line.event_id) as string[], randomInt);
    this.#stmt.prequeue.pluck(false);
    ids.forEach((id, i) => this.#stmt.number.run(i + 1, id));
    const progress = withProgress(parseProgress(line.progress), now, line.head, line.admitted);
    this.#stmt.open.run(ids.length, JSON.stringify(progress), line.event_id);
  }

  async getPlace(placeId: string): Promise<Place | null> {
    const row = guarded(() => this.#stmt.getPlace.get(placeId)) as PlaceRow | undefined;
    return row ? toPlace(row) : null;
  }

  async getLine(eventId: string): Promise<Line | null> {
    const row = guarded(() => this.#stmt.getLine.get(eventId)) as LineRow | undefined;
    return row ? toLine(row) : null;
  }

  async noteReads(reads: ReadonlyMap<string, number>): Promise<void> {
    if (reads.size === 0) return;
    await withoutBlockingOnLock(this.#db, () =>
      this.#db
        .transaction(() => {
          for (const [placeId, at] of reads) this.#stmt.noteRead.run(at, placeId);
        })
        .immediate(),
    );
  }

  async notePurchases(purchases: readonly AdmittedPurchase[]): Promise<void> {
    if (purchases.length === 0) return;
    await withoutBlockingOnLock(this.#db, () =>
      this.#db
        .transaction(() => {
          for (const { placeId, purchaseId } of purchases) this.#stmt.notePurchase.run(placeId, purchaseId);
        })
        .immediate(),
    );
  }

  async setLimits(eventId: string, limits: RoomLimits): Promise<Line | null> {
    return withoutBlockingOnLock(this.#db, () =>
      this.#db
        .transaction(() => {
          if (limits.maxActiveBuyers !== undefined)
            this.#stmt.setMaxActive.run(limits.maxActiveBuyers, eventId);
          if (limits.maxAdmittedPerMinute !== undefined)
            this.#stmt.setMaxPerMinute.run(limits.maxAdmittedPerMinute, eventId);
          if (limits.powDifficulty !== undefined)
            this.#stmt.setPowDifficulty.run(limits.powDifficulty, eventId);
          const row = this.#stmt.getLine.get(eventId) as LineRow | undefined;
          return row ? toLine(row) : null;
        })
        .immediate(),
    );
  }

  async movingLines(): Promise<string[]> {
    return guarded(() => this.#stmt.movingLines.pluck().all() as string[]);
  }

  async activeAdmissions(eventId: string): Promise<ActiveAdmission[]> {
    const rows = guarded(() => this.#stmt.active.all(eventId)) as Array<{
      id: string;
      admission_expires_at: string;
      purchases: string;
    }>;
    return rows.map((r) => ({
      placeId: r.id,
      admissionExpiresAt: r.admission_expires_at,
      purchaseIds: JSON.parse(r.purchases) as string[],
    }));
  }

  async advance(eventId: string, step: AdvanceStep): Promise<AdvanceResult | null> {
    const s = this.#stmt;
    return withoutBlockingOnLock(this.#db, () =>
      this.#db
        .transaction(() => {
          let row = s.getLine.get(eventId) as LineRow | undefined;
          if (!row) return null;
          if (!row.opened && new Date(step.now).toISOString() >= row.sales_open_at) {
            this.#open(row, step.now);
            row = s.getLine.get(eventId) as LineRow;
          }
          const line = toLine(row);
          for (const placeId of step.release) line.active -= s.release.run(placeId, eventId).changes;
          line.soldOut = step.soldOut;
          const before = { head: line.head, admitted: line.admitted };
          let budget = admissionBudget(line, step.now);
          const decided = noDecisions();
          while (budget > 0 && line.head < line.tail) {
            const front = s.front.all(eventId, line.head, CHUNK) as FrontRow[];
            if (front.length === 0) break;
            budget = decideFront(line, front, budget, step.now, decided);
          }
          const admittedAt = new Date(step.now).toISOString();
          const expiresAt = new Date(step.now + line.sessionSeconds * 1000).toISOString();
          for (const placeId of decided.expire) s.expire.run(placeId);
          for (const placeId of decided.admit) s.admit.run(admittedAt, expiresAt, placeId);
          if (line.head !== before.head || line.admitted !== before.admitted) {
            line.progress = withProgress(line.progress, step.now, line.head, line.admitted);
          }
          s.saveLine.run(
            line.head,
            line.active,
            line.admitted,
            line.expired,
            line.soldOut ? 1 : 0,
            JSON.stringify(line.progress),
            eventId,
          );
          return { line, admitted: decided.admitted, expired: decided.expire.length };
        })
        .immediate(),
    );
  }

  async close(): Promise<void> {
    this.#db.close();
  }
}

function parseProgress(text: string): Line['progress'] {
  return JSON.parse(text) as Line['progress'];
}

function toLine(row: LineRow): Line {
  const progress = parseProgress(row.progress);
  return toDomain.line(row, { opened: row.opened === 1, soldOut: row.sold_out === 1, progress });
}

function toPlace(row: PlaceRow): Place {
  return toDomain.place(row, row.used === 1);
}
