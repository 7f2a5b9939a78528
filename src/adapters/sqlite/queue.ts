import type { Statement } from 'better-sqlite3';
import { canonicalBuyerId } from '../../domain/buyer.js';
import type { AcceptedPurchase, PurchaseItem } from '../../domain/types.js';
import type {
  ClaimedBatch,
  DeadLetter,
  EnqueueRequest,
  EnqueueResult,
  InlineAck,
  Queue,
} from '../../ports/queue.js';
import {
  guarded,
  migrateSqlite,
  openSqlite,
  prepareAll,
  SMALL_CACHE_MIB,
  type SqliteDatabase,
} from './database.js';
import { DEAD_LETTER_SQL } from './queue-records.js';
import { ENQUEUE_SQL, QueueWriter } from './queue-writer.js';

interface QueueRow {
  seq: number;
  purchase_id: string;
  event_id: string;
  buyer_id: string;
  items: string;
  accepted_at: string;
}

const SQL = {
  ...DEAD_LETTER_SQL,
  ...ENQUEUE_SQL,
  // The event whose oldest queued purchase is the oldest, among those no other worker holds.
  nextEvent: `SELECT e.event_id FROM queue_events e
    WHERE e.pending > 0 AND (e.lease_owner IS NULL OR e.lease_owner = @worker OR e.lease_expires_at <= @now)
    ORDER BY (SELECT min(q.seq) FROM queue_purchases q WHERE q.event_id = e.event_id) LIMIT 1`,
  // Takes the lease and counts one more delivery of the head (restarting at 1 for a new head).
  lease: `UPDATE queue_events SET lease_owner = @worker, lease_expires_at = @expires,
    head_deliveries = CASE WHEN head_seq = @head THEN head_deliveries + 1 ELSE 1 END, head_seq = @head
    WHERE event_id = @event RETURNING head_deliveries`,
  // Read as arrays (raw), in this column order: a batch is hundreds of rows, and an object per row costs more.
  head: `SELECT seq, purchase_id, buyer_id, items, accepted_at FROM queue_purchases
    WHERE event_id = ? ORDER BY seq LIMIT ?`,
  // Entries at or below the batch's last seq of that event are exactly the batch: it was the event's head.
  remove: 'DELETE FROM queue_purchases WHERE event_id = ? AND seq <= ?',
  subPending: 'UPDATE queue_events SET pending = pending - ? WHERE event_id = ?',
  unlease:
    'UPDATE queue_events SET lease_owner = NULL, lease_expires_at = 0 WHERE event_id = ? AND lease_owner = ?',
  find: 'SELECT * FROM queue_purchases WHERE purchase_id = ?',
  depth: 'SELECT coalesce(sum(pending), 0) FROM queue_events',
  oldest: 'SELECT accepted_at FROM queue_purchases ORDER BY seq LIMIT 1',
  depthOf: 'SELECT coalesce(sum(pending), 0) FROM queue_events WHERE event_id = ?',
} as const;

const ackStatements = new WeakMap<SqliteDatabase, { remove: Statement; subPending: Statement }>();

/**
 * Takes an acked batch off the queue tables of `db`: call it INSIDE the transaction that applied the batch
 * (SqliteStorage.applyBatch, when storage and queue share the file), so that the batch leaves the queue
 * exactly when its effect is committed. Safe to repeat: a second run removes nothing.
 */
export function removeAcked(db: SqliteDatabase, ack: InlineAck): void {
  let s = ackStatements.get(db);
  if (!s) {
    s = { remove: db.prepare(SQL.remove), subPending: db.prepare(SQL.subPending) };
    ackStatements.set(db, s);
  }
  const removed = s.remove.run(ack.eventId, ack.throughSeq).changes;
  if (removed > 0) s.subPending.run(removed, ack.eventId);
}

/** A row of the `head` statement, read raw. */
type HeadRow = [seq: number, purchaseId: string, buyerId: string, items: string, acceptedAt: string];

interface DeadRow extends Omit<QueueRow, 'seq'> {
  reason: string;
  dead_at: string;
}

function toPurchase(row: Omit<QueueRow, 'seq'>): AcceptedPurchase {
  return purchaseOf(row.purchase_id, row.event_id, row.buyer_id, row.items, row.accepted_at);
}

function fromHead(eventId: string, [, purchaseId, buyerId, items, acceptedAt]: HeadRow): AcceptedPurchase {
  return purchaseOf(purchaseId, eventId, buyerId, items, acceptedAt);
}

function purchaseOf(
  purchaseId: string,
  eventId: string,
  buyerId: string,
  items: string,
  acceptedAt: string,
): AcceptedPurchase {
  return {
    purchaseId,
    eventId,
    buyerId,
    // The table keeps the id as typed; the canonical one is derived again (no second column to migrate).
    canonicalBuyerId: canonicalBuyerId(buyerId),
    items: JSON.parse(items) as PurchaseItem[],
    acceptedAt,
  };
}

/** The embedded queue: a table in a SQLite file, by default the same file as the storage. */
export class SqliteQueue implements Queue {
  readonly #db: SqliteDatabase;
  readonly #stmt: Record<keyof typeof SQL, Statement>;
  readonly #writer: QueueWriter;

  constructor(url: string) {
    this.#db = guarded(() => openSqlite(url, SMALL_CACHE_MIB));
    migrateSqlite(this.#db, 'queue');
    this.#stmt = prepareAll(this.#db, SQL);
    for (const name of ['nextEvent', 'lease', 'depth', 'oldest', 'depthOf', 'deadOf'] as const)
      this.#stmt[name].pluck();
    this.#stmt.head.raw();
    this.#writer = new QueueWriter(this.#db);
  }

  async migrate(): Promise<void> {
    guarded(() => migrateSqlite(this.#db, 'queue'));
  }

  enqueue(requests: readonly EnqueueRequest[]): Promise<EnqueueResult[]> {
    return this.#writer.write(requests);
  }

  async claim(workerId: string, max: number, leaseMs: number): Promise<ClaimedBatch | null> {
    const s = this.#stmt;
    // An idle worker polls every few milliseconds: look without the write lock first, so that polling an
    // empty queue never makes a web server wait for the lock.
    if (guarded(() => s.nextEvent.get({ worker: workerId, now: Date.now() })) === undefined) return null;
    // The claim's commit is not synced (synchronous=NORMAL, WAL: written, not fsynced): a lease lost with a
    // power cut only ends early, and the next synced commit of this file (the batch's) syncs it anyway. That
    // is one fsync less per batch; everything else on this connection stays synchronous=FULL.
    const take = this.#db.transaction((): ClaimedBatch | null => {
      const now = Date.now();
      const eventId = s.nextEvent.get({ worker: workerId, now }) as string | undefined;
      if (eventId === undefined) return null;
      const rows = s.head.all(eventId, max) as HeadRow[];
      if (rows.length === 0) return null;
      const deliveries = s.lease.get({
        worker: workerId,
        expires: now + leaseMs,
        head: rows[0]![0],
        event: eventId,
      });
      return {
        eventId,
        purchases: rows.map((row) => fromHead(eventId, row)),
        receipts: rows.map((r) => r[0]),
        deliveries: deliveries as number,
        lease: workerId,
      };
    });
    return guarded(() => {
      this.#db.pragma('synchronous = NORMAL');
      try {
        return take.immediate();
      } finally {
        this.#db.pragma('synchronous = FULL');
      }
    });
  }

  async ack(batch: ClaimedBatch): Promise<void> {
    const ack = this.inlineAck(batch);
    if (ack) guarded(() => this.#db.transaction(() => removeAcked(this.#db, ack)).immediate());
  }

  inlineAck(batch: ClaimedBatch): InlineAck | null {
    const throughSeq = batch.receipts.at(-1) as number | undefined;
    return throughSeq === undefined ? null : { eventId: batch.eventId, throughSeq };
  }

  async release(batch: ClaimedBatch): Promise<void> {
    guarded(() => this.#stmt.unlease.run(batch.eventId, batch.lease as string));
  }

  async deadLetter(batch: ClaimedBatch, reason: string): Promise<void> {
    const s = this.#stmt;
    const last = batch.receipts.at(-1) as number | undefined;
    if (last === undefined) return;
    guarded(() =>
      this.#db
        .transaction(() => {
          s.bury.run({ reason, now: new Date().toISOString(), event: batch.eventId, last });
          const removed = s.remove.run(batch.eventId, last).changes;
          if (removed > 0) s.subPending.run(removed, batch.eventId);
        })
        .immediate(),
    );
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    const rows = guarded(() => this.#stmt.deadLetters.all(limit)) as DeadRow[];
    return rows.map((r) => ({ purchase: toPurchase(r), reason: r.reason, deadAt: r.dead_at }));
  }

  async replayDeadLetters(purchaseIds?: readonly string[]): Promise<number> {
    const s = this.#stmt;
    const replay = this.#db.transaction((): number => {
      const rows = (
        purchaseIds ? s.deadLettersNamed.all(JSON.stringify(purchaseIds)) : s.deadLettersAll.all()
      ) as DeadRow[];
      const perEvent = new Map<string, number>();
      for (const r of rows) {
        s.insert.run(r.purchase_id, r.event_id, r.buyer_id, r.items, r.accepted_at);
        s.unbury.run(r.purchase_id);
        perEvent.set(r.event_id, (perEvent.get(r.event_id) ?? 0) + 1);
      }
      for (const [eventId, count] of perEvent) s.addPending.run(eventId, count);
      return rows.length;
    });
    return guarded(() => replay.immediate());
  }

  async find(purchaseId: string): Promise<AcceptedPurchase | null> {
    const row = guarded(() => this.#stmt.find.get(purchaseId) ?? this.#stmt.findDead.get(purchaseId)) as
      QueueRow | undefined;
    return row ? toPurchase(row) : null;
  }

  async depth(): Promise<{ depth: number; oldestAcceptedAt: string | null }> {
    return guarded(() =>
      this.#db.transaction(() => ({
        depth: this.#stmt.depth.get() as number,
        oldestAcceptedAt: (this.#stmt.oldest.get() as string | undefined) ?? null,
      }))(),
    );
  }

  async depthOf(eventId: string): Promise<{ queued: number; deadLetters: number }> {
    return guarded(() =>
      this.#db.transaction(() => ({
        queued: this.#stmt.depthOf.get(eventId) as number,
        deadLetters: this.#stmt.deadOf.get(eventId) as number,
      }))(),
    );
  }

  async ping(): Promise<void> {
    guarded(() => this.#db.prepare('SELECT 1').get());
  }

  async close(): Promise<void> {
    this.#db.close();
  }
}
