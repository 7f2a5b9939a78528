import type { AcceptedPurchase } from '../../domain/types.js';
import type {
  ClaimedBatch,
  DeadLetter,
  EnqueueRequest,
  EnqueueResult,
  InlineAck,
  Queue,
} from '../../ports/queue.js';
import {
  ADVISORY_LOCK,
  applyMigrations,
  fromDb,
  PostgresDatabase,
  prepareStatements,
  toDb,
  type Tx,
} from './database.js';
import {
  buryPurchases,
  DEAD_LETTER_SQL,
  inTurn,
  listDeadLetters,
  resolveKeys,
  takeBackDeadLetters,
  toPurchase,
  type PurchaseRow,
} from './queue-records.js';

interface QueueRow extends PurchaseRow {
  seq: number;
}

/** Where the reads of event $1's queue start (see migration 0002). */
const REMOVED_THROUGH = '(SELECT removed_through FROM queue_depth WHERE event_id = $1)';

/** Statements of migrate() around the migrations themselves. None takes parameters. */
const MIGRATION_SQL = {
  /** The lock every migration takes (see migratePostgres), held from before the check below. One row. */
  lock: `SELECT pg_advisory_xact_lock(${ADVISORY_LOCK.migrate})`,
  /** One row, aside: true when the records' tables exist but the queue's do not. */
  recordsBeforeQueue: `SELECT to_regclass('idempotency_keys') IS NOT NULL
    AND to_regclass('queue_purchases') IS NULL AS aside`,
  /** Moves the records' tables, with their rows, indexes and constraints, to a schema of their own. */
  stepAside: `CREATE SCHEMA onsale_records_aside;
    ALTER TABLE idempotency_keys SET SCHEMA onsale_records_aside;
    ALTER TABLE queue_dead_letters SET SCHEMA onsale_records_aside`,
  /** Drops the queue migration's empty copies and moves the records' tables back where they were. */
  stepBack: `DROP TABLE idempotency_keys, queue_dead_letters;
    DO $$ BEGIN
      EXECUTE format('ALTER TABLE onsale_records_aside.idempotency_keys SET SCHEMA %I', current_schema());
      EXECUTE format('ALTER TABLE onsale_records_aside.queue_dead_letters SET SCHEMA %I', current_schema());
    END $$;
    DROP SCHEMA onsale_records_aside`,
} as const;

/**
 * The statements of the queue adapter. Each says what it returns and what its parameters are. Lists travel
 * as arrays (`unnest($1, $2, …)`): one statement per batch, never one per row.
 */
const SQL = {
  /**
   * Serializes the transactions that add to queue_purchases, until their commit. Returns one row.
   * Why: seq values are drawn when a row is inserted, but rows become visible when their transaction
   * commits. Without the lock, a web server could draw seq 10, another seq 11 and commit first, and a
   * worker would claim and ack 11 before 10 is visible: out of acceptance order, and the ack of "seq <= 11"
   * would later never see 10 either. Under the lock seq order is commit order, so every snapshot holds a
   * prefix of the queue. The cost is one enqueue transaction at a time across all web servers; group commit
   * makes each carry every purchase that arrived meanwhile, so the lock is taken per batch, not per buyer.
   * (The alternative, a claim that never reads past a gap of an in-flight transaction, needs the gap's
   * transaction id and a wait, and is harder to get right than one lock.)
   */
  lockEnqueue: `SELECT pg_advisory_xact_lock(${ADVISORY_LOCK.enqueue})`,
  /**
   * Appends purchases in array order (each draws the next seq), creates their events' rows and adds to their
   * events' depth. A purchase id already queued (a retry whose first COMMIT had landed) is skipped and not
   * counted twice. One array per column: $1 purchase ids, $2 event ids, $3 buyer ids, $4 items (JSON),
   * $5 acceptance times. Returns nothing.
   */
  append: `WITH added AS (
      INSERT INTO queue_purchases (purchase_id, event_id, buyer_id, items, accepted_at)
      SELECT u.purchase_id, u.event_id, u.buyer_id, u.items, u.accepted_at
      FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
        WITH ORDINALITY AS u (purchase_id, event_id, buyer_id, items, accepted_at, n)
      ORDER BY u.n
      ON CONFLICT (purchase_id) DO NOTHING
      RETURNING event_id
    ), counted AS (
      SELECT event_id, count(*) AS n FROM added GROUP BY event_id
    ), new_events AS (
      INSERT INTO queue_events (event_id) SELECT event_id FROM counted ON CONFLICT (event_id) DO NOTHING
    )
    INSERT INTO queue_depth (event_id, queued) SELECT event_id, n FROM counted ORDER BY event_id
    ON CONFLICT (event_id) DO UPDATE SET queued = queue_depth.queued + excluded.queued`,
  /**
   * The event whose oldest queued purchase is the oldest, among those no other worker holds a live lease
   * on, locked until the end of the transaction. SKIP LOCKED: a worker never waits for another's claim, it
   * takes the next event. $1 worker id. Returns event_id, or no row.
   */
  pickEvent: `SELECT e.event_id FROM queue_events e JOIN queue_depth d ON d.event_id = e.event_id
    WHERE d.queued > 0
      AND (e.lease_owner IS NULL OR e.lease_owner = $1 OR e.lease_expires_at <= clock_timestamp())
    ORDER BY (SELECT min(q.seq) FROM queue_purchases q WHERE q.event_id = e.event_id AND q.seq > d.removed_through)
    LIMIT 1
    FOR UPDATE OF e SKIP LOCKED`,
  /**
   * As pickEvent, while worker $1's batch of event $2 up to seq $3 is still being applied (claimNext): that
   * event's queue counts from after $3. An event with nothing left after it sorts last.
   */
  pickEventAfter: `SELECT e.event_id FROM queue_events e JOIN queue_depth d ON d.event_id = e.event_id
    WHERE d.queued > 0
      AND (e.lease_owner IS NULL OR e.lease_owner = $1 OR e.lease_expires_at <= clock_timestamp())
    ORDER BY (SELECT min(q.seq) FROM queue_purchases q WHERE q.event_id = e.event_id
      AND q.seq > CASE WHEN e.event_id = $2 THEN greatest(d.removed_through, $3) ELSE d.removed_through END)
    LIMIT 1
    FOR UPDATE OF e SKIP LOCKED`,
  /**
   * The first $2 queued purchases of event $1 after seq $3 (0: from the start), in acceptance order (all
   * columns of queue_purchases). Like every read of an event's queue, it starts after removed_through (see
   * migration 0002).
   */
  head: `SELECT seq, purchase_id, event_id, buyer_id, items, accepted_at FROM queue_purchases
    WHERE event_id = $1 AND seq > greatest(${REMOVED_THROUGH}, $3) ORDER BY seq LIMIT $2`,
  /**
   * Gives event $1 to worker $2 for $3 ms (database clock, so workers on several hosts agree), and counts one
   * more delivery of head seq $4 (starting again at 1 for a new head). Returns head_deliveries.
   */
  lease: `UPDATE queue_events SET lease_owner = $2,
      lease_expires_at = clock_timestamp() + $3 * interval '1 millisecond',
      head_deliveries = CASE WHEN head_seq = $4 THEN head_deliveries + 1 ELSE 1 END,
      head_seq = $4
    WHERE event_id = $1 RETURNING head_deliveries`,
  /**
   * As lease, for claimNext: renews worker $2's lease of event $1 for $3 ms and tells how many times head
   * seq $4 has been delivered, this time included, without recording it (the event's recorded head stays
   * that of the batch still being applied, whose count a failure goes on from). Returns head_deliveries.
   */
  renewLease: `UPDATE queue_events SET lease_owner = $2,
      lease_expires_at = clock_timestamp() + $3 * interval '1 millisecond'
    WHERE event_id = $1 RETURNING CASE WHEN head_seq = $4 THEN head_deliveries + 1 ELSE 1 END AS head_deliveries`,
  /**
   * Removes the purchases of event $1 up to seq $2 (exactly a claimed batch, which was the event's head: no
   * smaller seq can appear later, see lockEnqueue), takes them off the depth and moves removed_through up.
   * Returns nothing.
   */
  remove: `WITH removed AS (
      DELETE FROM queue_purchases WHERE event_id = $1 AND seq > ${REMOVED_THROUGH} AND seq <= $2 RETURNING 1
    )
    UPDATE queue_depth
    SET queued = queued - (SELECT count(*) FROM removed), removed_through = greatest(removed_through, $2)
    WHERE event_id = $1`,
  /** Ends worker $2's lease of event $1, if it still holds it. Returns nothing. */
  unlease: `UPDATE queue_events SET lease_owner = NULL, lease_expires_at = NULL
    WHERE event_id = $1 AND lease_owner = $2`,
  /**
   * Takes the purchases of event $1 up to seq $2 off the queue and the depth, to be buried (in the same
   * transaction). Safe to repeat: a second run takes nothing. Returns the purchases taken (all columns).
   */
  takeForBurial: `WITH removed AS (
      DELETE FROM queue_purchases WHERE event_id = $1 AND seq > ${REMOVED_THROUGH} AND seq <= $2
      RETURNING seq, purchase_id, event_id, buyer_id, items, accepted_at
    ), depth AS (
      UPDATE queue_depth
      SET queued = queued - (SELECT count(*) FROM removed), removed_through = greatest(removed_through, $2)
      WHERE event_id = $1
    )
    SELECT seq, purchase_id, event_id, buyer_id, items, accepted_at FROM removed`,
  /** Purchase $1 if queued or dead-lettered (purchase columns), or no row. One statement: one snapshot. */
  find: `SELECT purchase_id, event_id, buyer_id, items, accepted_at FROM queue_purchases WHERE purchase_id = $1
    UNION ALL
    ${DEAD_LETTER_SQL.find}
    LIMIT 1`,
  /**
   * Queued purchases in all, and the acceptance time of the oldest (or null): the oldest of the events'
   * heads. One row: depth, oldest. (sum() of bigint is numeric, which node-postgres reads as text: hence
   * the casts back to bigint here and below.)
   */
  depth: `SELECT (SELECT coalesce(sum(queued), 0)::bigint FROM queue_depth) AS depth,
    (SELECT h.accepted_at FROM queue_depth d CROSS JOIN LATERAL (
        SELECT q.seq, q.accepted_at FROM queue_purchases q
        WHERE q.event_id = d.event_id AND q.seq > d.removed_through ORDER BY q.seq LIMIT 1
      ) h
      WHERE d.queued > 0 ORDER BY h.seq LIMIT 1) AS oldest`,
  /** Queued purchases and dead letters of event $1. One row: queued, dead. */
  depthOf: `SELECT (SELECT coalesce(sum(queued), 0)::bigint FROM queue_depth WHERE event_id = $1) AS queued,
    ${DEAD_LETTER_SQL.countOfEvent} AS dead`,
} as const;

/** A worker's claim and ack, run for every batch: prepared once per connection. */
prepareStatements('queue', {
  pickEvent: SQL.pickEvent,
  pickEventAfter: SQL.pickEventAfter,
  head: SQL.head,
  lease: SQL.lease,
  renewLease: SQL.renewLease,
  remove: SQL.remove,
});

/**
 * Server settings of the queue's connections. Every queue read is a key lookup or a walk of an index in
 * order (the head of an event by (event_id, seq)); a bitmap scan never helps and, before autovacuum has
 * analyzed a queue that filled up fast (a sale opening), the planner picks one for the head read: it then
 * reads every queued row of the event and sorts them. Measured: claiming 500 from a 95,000-purchase queue
 * took 97 ms that way, against 0.3 ms along the index.
 */
const QUEUE_SESSION = { enable_bitmapscan: 'off' };

/**
 * Takes an acked batch off the queue tables in `tx`: call it INSIDE the transaction that applied the batch
 * (PostgresStorage.applyBatch, when storage and queue share the database), last, so that the queue's depth
 * row is locked only until that commit. Safe to repeat: a second run removes nothing.
 */
export async function removeAcked(tx: Tx, ack: InlineAck): Promise<void> {
  await tx.query(SQL.remove, [toDb(ack.eventId), ack.throughSeq]);
}

/**
 * The queue as tables in PostgreSQL: the default queue when the database is PostgreSQL (the queue URL is
 * then the database URL). The same design as the SQLite queue: a sequence number for acceptance order, a
 * lease per event for first come, first served with several workers, idempotency keys resolved in the
 * enqueue transaction, dead letters beside the queue.
 */
export class PostgresQueue implements Queue {
  readonly #db: PostgresDatabase;
  readonly #url: string;

  constructor(url: string) {
    this.#db = new PostgresDatabase(url, QUEUE_SESSION);
    this.#url = url;
  }

  /**
   * The queue's migrations, then the records' (the queue's first migration creates the records' tables, so
   * records finds them there). A database whose records came first, from a RabbitMQ index, has those
   * tables already, and the queue's first migration would fail on them: they step aside while it runs, and
   * then replace the empty copies it made.
   */
  async migrate(): Promise<void> {
    await this.#db.transaction(async (tx) => {
      await tx.query(MIGRATION_SQL.lock);
      const { rows } = await tx.query<{ aside: boolean }>(MIGRATION_SQL.recordsBeforeQueue);
      const aside = rows[0]!.aside;
      if (aside) await tx.query(MIGRATION_SQL.stepAside);
      await applyMigrations(tx, 'queue');
      if (aside) await tx.query(MIGRATION_SQL.stepBack);
      await applyMigrations(tx, 'records');
    });
  }

  async enqueue(requests: readonly EnqueueRequest[]): Promise<EnqueueResult[]> {
    if (requests.length === 0) return [];
    return inTurn(this.#url, () => this.#append(requests));
  }

  async #append(requests: readonly EnqueueRequest[]): Promise<EnqueueResult[]> {
    return this.#db.transaction(async (tx) => {
      await tx.query(SQL.lockEnqueue);
      const verdicts = await resolveKeys(
        tx,
        requests.map(({ purchase: p, idempotency }) =>
          idempotency
            ? {
                eventId: toDb(p.eventId),
                buyerId: toDb(p.canonicalBuyerId),
                key: toDb(idempotency.key),
                requestHash: idempotency.requestHash,
                purchaseId: toDb(p.purchaseId),
              }
            : null,
        ),
      );
      // Undefined: accepted (no key, or its owner), appended below.
      const results = verdicts.map((verdict): EnqueueResult | undefined => {
        if (verdict?.status === 'duplicate')
          return { status: 'duplicate', purchaseId: fromDb(verdict.storedPurchaseId) };
        return verdict?.status === 'conflict' ? { status: 'conflict' } : undefined;
      });

      const accepted = requests.filter((_, i) => results[i] === undefined).map((r) => r.purchase);
      if (accepted.length > 0) {
        await this.#appendRows(
          tx,
          accepted.map((p) => ({
            purchase_id: toDb(p.purchaseId),
            event_id: toDb(p.eventId),
            buyer_id: toDb(p.buyerId),
            items: JSON.stringify(p.items),
            accepted_at: p.acceptedAt,
          })),
        );
      }
      return results.map(
        (r, i): EnqueueResult => r ?? { status: 'accepted', purchaseId: requests[i]!.purchase.purchaseId },
      );
    });
  }

  /** Appends purchases (stored form) in array order: see SQL.append. */
  async #appendRows(tx: Tx, rows: readonly PurchaseRow[]): Promise<void> {
    await tx.query(SQL.append, [
      rows.map((r) => r.purchase_id),
      rows.map((r) => r.event_id),
      rows.map((r) => r.buyer_id),
      rows.map((r) => r.items),
      rows.map((r) => r.accepted_at),
    ]);
  }

  async claim(workerId: string, max: number, leaseMs: number): Promise<ClaimedBatch | null> {
    return this.#claim(workerId, max, leaseMs, null);
  }

  async claimNext(
    workerId: string,
    max: number,
    leaseMs: number,
    pending: ClaimedBatch,
  ): Promise<ClaimedBatch | null> {
    const throughSeq = pending.receipts.at(-1) as number | undefined;
    if (throughSeq === undefined) return this.claim(workerId, max, leaseMs);
    return this.#claim(workerId, max, leaseMs, { eventId: toDb(pending.eventId), throughSeq });
  }

  /** claim, or claimNext when `after` names the batch still being applied. */
  async #claim(
    workerId: string,
    max: number,
    leaseMs: number,
    after: { eventId: string; throughSeq: number } | null,
  ): Promise<ClaimedBatch | null> {
    const worker = toDb(workerId);
    return this.#db.transaction(async (tx): Promise<ClaimedBatch | null> => {
      const picked = after
        ? await tx.query<{ event_id: string }>(SQL.pickEventAfter, [worker, after.eventId, after.throughSeq])
        : await tx.query<{ event_id: string }>(SQL.pickEvent, [worker]);
      const event = picked.rows[0]?.event_id;
      if (event === undefined) return null;
      const from = after?.eventId === event ? after.throughSeq : 0;
      const { rows } = await tx.query<QueueRow>(SQL.head, [event, max, from]);
      if (rows.length === 0) return null;
      const leased = await tx.query<{ head_deliveries: number }>(after ? SQL.renewLease : SQL.lease, [
        event,
        worker,
        Math.max(0, Math.round(leaseMs)),
        rows[0]!.seq,
      ]);
      return {
        eventId: fromDb(event),
        purchases: rows.map(toPurchase),
        receipts: rows.map((r) => r.seq),
        deliveries: leased.rows[0]!.head_deliveries,
        lease: workerId,
      };
    });
  }

  async ack(batch: ClaimedBatch): Promise<void> {
    const ack = this.inlineAck(batch);
    if (ack) await this.#db.query(SQL.remove, [toDb(ack.eventId), ack.throughSeq]);
  }

  inlineAck(batch: ClaimedBatch): InlineAck | null {
    const throughSeq = batch.receipts.at(-1) as number | undefined;
    return throughSeq === undefined ? null : { eventId: batch.eventId, throughSeq };
  }

  async release(batch: ClaimedBatch): Promise<void> {
    await this.#db.query(SQL.unlease, [toDb(batch.eventId), toDb(batch.lease as string)]);
  }

  async deadLetter(batch: ClaimedBatch, reason: string): Promise<void> {
    const last = batch.receipts.at(-1) as number | undefined;
    if (last === undefined) return;
    await this.#db.transaction(async (tx) => {
      const taken = await tx.query<QueueRow>(SQL.takeForBurial, [toDb(batch.eventId), last]);
      await buryPurchases(tx, taken.rows, toDb(reason));
    });
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    return listDeadLetters(this.#db, limit);
  }

  async replayDeadLetters(purchaseIds?: readonly string[]): Promise<number> {
    const named = purchaseIds ? purchaseIds.map(toDb) : null;
    // Replayed purchases draw new seq values: they take turns and the enqueue lock like any append.
    return inTurn(this.#url, () =>
      this.#db.transaction(async (tx) => {
        await tx.query(SQL.lockEnqueue);
        // Back at the tail, oldest first, as fresh appends (a new seq each).
        const revived = await takeBackDeadLetters(tx, named);
        if (revived.length > 0) await this.#appendRows(tx, revived);
        return revived.length;
      }),
    );
  }

  async find(purchaseId: string): Promise<AcceptedPurchase | null> {
    const { rows } = await this.#db.query<QueueRow>(SQL.find, [toDb(purchaseId)]);
    return rows[0] ? toPurchase(rows[0]) : null;
  }

  async depth(): Promise<{ depth: number; oldestAcceptedAt: string | null }> {
    const { rows } = await this.#db.query<{ depth: number; oldest: string | null }>(SQL.depth);
    return { depth: rows[0]!.depth, oldestAcceptedAt: rows[0]!.oldest };
  }

  async depthOf(eventId: string): Promise<{ queued: number; deadLetters: number }> {
    const { rows } = await this.#db.query<{ queued: number; dead: number }>(SQL.depthOf, [toDb(eventId)]);
    return { queued: rows[0]!.queued, deadLetters: rows[0]!.dead };
  }

  async ping(): Promise<void> {
    await this.#db.ping();
  }

  async close(): Promise<void> {
    await this.#db.close();
  }
}
