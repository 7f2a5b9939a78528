import { UnavailableError } from '../../domain/errors.js';
import type { AcceptedPurchase } from '../../domain/types.js';
import type { DeadLetter, EnqueueResult } from '../../ports/queue.js';
import { applyMigrations, PostgresDatabase, toDb, type Tx } from '../postgres/database.js';
import { inTurn, RABBITMQ_KEYS, resolveKeys } from '../postgres/queue-records.js';
import { partitionOf } from './broker.js';
import {
  partitionMismatch,
  type IndexedPurchase,
  type Inspection,
  type PartitionedRequest,
  type PurchaseIndex,
} from './index-store.js';

/** Statements of the migration step, after the index's migrations (applyMigrations). */
const MIGRATION_SQL = {
  /** Records prefix $1 with $2 partitions unless it is known. Returns nothing. */
  claimPrefix:
    'INSERT INTO rabbitmq_topology (prefix, partitions) VALUES ($1, $2) ON CONFLICT (prefix) DO NOTHING',
  /** partitions of prefix $1. */
  prefixPartitions: 'SELECT partitions FROM rabbitmq_topology WHERE prefix = $1',
} as const;

/**
 * The statements of the index. Lists travel as arrays (`unnest`, `= ANY`): one statement per batch. Every
 * write is safe to run twice, as PostgresDatabase retries a whole transaction after a transient failure,
 * possibly one whose COMMIT had landed.
 */
const SQL = {
  /**
   * Holds partition $2 of lock space $1 (the prefix's) to the end of the transaction, exclusively:
   * publishers of one partition take turns. Returns one row.
   */
  lockPartition: 'SELECT pg_advisory_xact_lock($1::int, $2::int)',
  /** The same lock, shared: a worker's inspect waits for the partition's publisher in flight. Returns one row. */
  lockPartitionShared: 'SELECT pg_advisory_xact_lock_shared($1::int, $2::int)',
  /** A worker does not wait longer than this for a publisher (one holds the lock at most ~2 s). */
  lockTimeout: "SET LOCAL lock_timeout = '10s'",
  /**
   * Claim counts need no fsync of their own: a lost one (a crash before the next commit) only lets a poison
   * purchase be tried once more.
   */
  noSync: 'SET LOCAL synchronous_commit = off',
  /**
   * Inserts purchases in array order (ids $1, event ids $2, payloads $3, accepted_at $4); an id already
   * there (the first attempt of a retried transaction committed) is skipped. Returns purchase_id, seq of
   * the rows inserted.
   */
  insertPurchases: `INSERT INTO rabbitmq_purchases (purchase_id, event_id, payload, accepted_at)
    SELECT id, ev, pl, at FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS u (id, ev, pl, at, n)
    ORDER BY n
    ON CONFLICT (purchase_id) DO NOTHING
    RETURNING purchase_id, seq`,
  /** purchase_id, seq of the purchases $1 (those a retried insert skipped). */
  seqs: 'SELECT purchase_id, seq FROM rabbitmq_purchases WHERE purchase_id = ANY($1::text[])',
  /** Adds one queued purchase per entry of $1 (event ids) to its event's count. Returns nothing. */
  addQueued: `INSERT INTO rabbitmq_counts (event_id, queued)
    SELECT e, count(*) FROM unnest($1::text[]) AS u (e) GROUP BY e
    ON CONFLICT (event_id) DO UPDATE SET queued = rabbitmq_counts.queued + EXCLUDED.queued`,
  /** purchase_id, dead of the purchases $1 that the index holds. */
  states:
    'SELECT purchase_id, dead_at IS NOT NULL AS dead FROM rabbitmq_purchases WHERE purchase_id = ANY($1::text[])',
  /** One more claim of purchase $1; returns claims. */
  claimHead: 'UPDATE rabbitmq_purchases SET claims = claims + 1 WHERE purchase_id = $1 RETURNING claims',
  /** Deletes the queued purchases $1 and takes them off their events' counts. Returns nothing. */
  remove: `WITH gone AS (
      DELETE FROM rabbitmq_purchases WHERE purchase_id = ANY($1::text[]) AND dead_at IS NULL RETURNING event_id
    )
    UPDATE rabbitmq_counts c SET queued = c.queued - g.n
    FROM (SELECT event_id, count(*) AS n FROM gone GROUP BY event_id) g WHERE c.event_id = g.event_id`,
  /** Marks the queued purchases $1 dead with reason $2, and moves them to the dead counts. Returns nothing. */
  bury: `WITH buried AS (
      UPDATE rabbitmq_purchases SET dead_reason = $2, dead_at = now()
      WHERE purchase_id = ANY($1::text[]) AND dead_at IS NULL RETURNING event_id
    )
    UPDATE rabbitmq_counts c SET queued = c.queued - g.n, dead = c.dead + g.n
    FROM (SELECT event_id, count(*) AS n FROM buried GROUP BY event_id) g WHERE c.event_id = g.event_id`,
  /** Dead letters (all, oldest first), locked: purchase_id, event_id, payload, accepted_at. */
  deadAll: `SELECT purchase_id, event_id, payload, accepted_at FROM rabbitmq_purchases
    WHERE dead_at IS NOT NULL ORDER BY dead_at, seq FOR UPDATE`,
  /** The dead letters among $1, oldest first, locked: purchase_id, event_id, payload, accepted_at. */
  deadNamed: `SELECT purchase_id, event_id, payload, accepted_at FROM rabbitmq_purchases
    WHERE dead_at IS NOT NULL AND purchase_id = ANY($1::text[]) ORDER BY dead_at, seq FOR UPDATE`,
  /** Deletes the purchases $1 (dead letters about to go back on the queue with a new seq). Returns nothing. */
  deleteMany: 'DELETE FROM rabbitmq_purchases WHERE purchase_id = ANY($1::text[])',
  /** Moves one purchase per entry of $1 (event ids) from the dead count to the queued one. Returns nothing. */
  deadToQueued: `UPDATE rabbitmq_counts c SET queued = c.queued + g.n, dead = c.dead - g.n
    FROM (SELECT e, count(*) AS n FROM unnest($1::text[]) AS u (e) GROUP BY e) g WHERE c.event_id = g.e`,
  /** Dead letters, oldest first, at most $1: payload, dead_reason, dead_at. */
  deadLetters: `SELECT payload, dead_reason, dead_at FROM rabbitmq_purchases
    WHERE dead_at IS NOT NULL ORDER BY dead_at, seq LIMIT $1`,
  /** payload of purchase $1. */
  find: 'SELECT payload FROM rabbitmq_purchases WHERE purchase_id = $1',
  /** depth (queued purchases of all events) and oldest (accepted_at of the oldest queued one, or null). */
  depth: `SELECT (SELECT coalesce(sum(queued), 0)::bigint FROM rabbitmq_counts) AS depth,
    (SELECT accepted_at FROM rabbitmq_purchases WHERE dead_at IS NULL ORDER BY seq LIMIT 1) AS oldest`,
  /** queued, dead of event $1 (no row: none ever). */
  depthOf: 'SELECT queued, dead FROM rabbitmq_counts WHERE event_id = $1',
} as const;

/**
 * The index in PostgreSQL (the deployment's database). "The partition's lock" of PurchaseIndex is a
 * transaction-level advisory lock per partition, in a lock space of the queue prefix: publishers of
 * different partitions (so, different events) run at the same time.
 */
export class PostgresIndex implements PurchaseIndex {
  readonly #db: PostgresDatabase;
  readonly #prefix: string;
  /** The advisory lock space of this prefix: its hash, as the int4 first key. */
  readonly #lockSpace: number;
  /** Which appends of this process take turns with this index's (see inTurn). */
  readonly #turns: string;

  constructor(url: string, prefix: string) {
    this.#db = new PostgresDatabase(url);
    this.#prefix = prefix;
    this.#lockSpace = partitionOf(prefix, 2 ** 32) | 0;
    this.#turns = `rabbitmq ${prefix} ${url}`;
  }

  async migrate(partitions: number): Promise<void> {
    const known = await this.#db.transaction(async (tx) => {
      await applyMigrations(tx, 'rabbitmq');
      await tx.query(MIGRATION_SQL.claimPrefix, [this.#prefix, partitions]);
      const row = await tx.query<{ partitions: number }>(MIGRATION_SQL.prefixPartitions, [this.#prefix]);
      return row.rows[0]!.partitions;
    });
    if (known !== partitions) throw partitionMismatch(this.#prefix, known, partitions);
  }

  async record(
    requests: readonly PartitionedRequest[],
    publish: (accepted: IndexedPurchase[]) => Promise<void>,
  ): Promise<EnqueueResult[]> {
    return inTurn(this.#turns, () => this.#record(requests, publish));
  }

  async #record(
    requests: readonly PartitionedRequest[],
    publish: (accepted: IndexedPurchase[]) => Promise<void>,
  ): Promise<EnqueueResult[]> {
    return this.#db.transaction(async (tx) => {
      await this.#lock(
        tx,
        requests.map((r) => r.partition),
      );
      const results = await this.#resolveKeys(tx, requests);
      const accepted = requests
        .filter((_, i) => results[i]!.status === 'accepted')
        .map((r) => r.request.purchase);
      if (accepted.length === 0) return results;
      const ids = accepted.map((p) => p.purchaseId);
      const inserted = await tx.query<{ purchase_id: string; seq: number }>(SQL.insertPurchases, [
        ids,
        accepted.map((p) => p.eventId),
        accepted.map((p) => JSON.stringify(p)),
        accepted.map((p) => p.acceptedAt),
      ]);
      const seqs = new Map(inserted.rows.map((r) => [r.purchase_id, r.seq]));
      const fresh = accepted.filter((p) => seqs.has(p.purchaseId));
      if (fresh.length > 0) await tx.query(SQL.addQueued, [fresh.map((p) => p.eventId)]);
      if (fresh.length < accepted.length) {
        const skipped = await tx.query<{ purchase_id: string; seq: number }>(SQL.seqs, [
          ids.filter((id) => !seqs.has(id)),
        ]);
        for (const r of skipped.rows) seqs.set(r.purchase_id, r.seq);
      }
      await publish(accepted.map((purchase) => ({ seq: seqs.get(purchase.purchaseId)!, purchase })));
      return results;
    });
  }

  /**
   * Keys first seen in this batch are recorded for their first purchase; a key met again, in this batch
   * or before, answers duplicate (same body) or conflict. Event and purchase ids are stored as they are
   * (this server makes them), client text as toDb() writes it.
   */
  async #resolveKeys(tx: Tx, requests: readonly PartitionedRequest[]): Promise<EnqueueResult[]> {
    const verdicts = await resolveKeys(
      tx,
      RABBITMQ_KEYS,
      requests.map(({ request: { purchase, idempotency } }) =>
        idempotency
          ? {
              eventId: purchase.eventId,
              buyerId: toDb(purchase.buyerId),
              key: toDb(idempotency.key),
              requestHash: idempotency.requestHash,
              purchaseId: purchase.purchaseId,
            }
          : null,
      ),
    );
    return verdicts.map((verdict, i): EnqueueResult => {
      if (verdict?.status === 'duplicate')
        return { status: 'duplicate', purchaseId: verdict.storedPurchaseId };
      if (verdict?.status === 'conflict') return { status: 'conflict' };
      return { status: 'accepted', purchaseId: requests[i]!.request.purchase.purchaseId };
    });
  }

  async inspect(partition: number, purchaseIds: readonly string[]): Promise<Inspection> {
    return this.#db.transaction(async (tx) => {
      await tx.query(SQL.noSync);
      await tx.query(SQL.lockTimeout);
      await this.#lockOrUnavailable(() => tx.query(SQL.lockPartitionShared, [this.#lockSpace, partition]));
      const rows = await tx.query<{ purchase_id: string; dead: boolean }>(SQL.states, [purchaseIds]);
      const dead = new Map(rows.rows.map((r) => [r.purchase_id, r.dead]));
      const found: Inspection = { queued: [], dead: [], gone: [], headClaims: 0 };
      for (const id of purchaseIds) {
        const isDead = dead.get(id);
        if (isDead === undefined) found.gone.push(id);
        else if (isDead) found.dead.push(id);
        else found.queued.push(id);
      }
      if (found.queued.length > 0) {
        const claimed = await tx.query<{ claims: number }>(SQL.claimHead, [found.queued[0]]);
        found.headClaims = claimed.rows[0]!.claims;
      }
      return found;
    });
  }

  async remove(purchaseIds: readonly string[]): Promise<void> {
    if (purchaseIds.length > 0) await this.#db.query(SQL.remove, [purchaseIds]);
  }

  async bury(purchaseIds: readonly string[], reason: string): Promise<void> {
    if (purchaseIds.length > 0) await this.#db.query(SQL.bury, [purchaseIds, reason]);
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    const rows = await this.#db.query<{ payload: string; dead_reason: string; dead_at: Date }>(
      SQL.deadLetters,
      [limit],
    );
    return rows.rows.map((r) => ({
      purchase: parse(r.payload),
      reason: r.dead_reason,
      deadAt: r.dead_at.toISOString(),
    }));
  }

  async revive(
    purchaseIds: readonly string[] | undefined,
    partitions: readonly number[],
    publish: (revived: IndexedPurchase[]) => Promise<void>,
  ): Promise<number> {
    // Revived purchases go to the tail like any append: they take turns with this process's appends.
    return inTurn(this.#turns, () => this.#revive(purchaseIds, partitions, publish));
  }

  async #revive(
    purchaseIds: readonly string[] | undefined,
    partitions: readonly number[],
    publish: (revived: IndexedPurchase[]) => Promise<void>,
  ): Promise<number> {
    return this.#db.transaction(async (tx) => {
      await this.#lock(tx, partitions);
      const rows = await tx.query<{
        purchase_id: string;
        event_id: string;
        payload: string;
        accepted_at: string;
      }>(purchaseIds ? SQL.deadNamed : SQL.deadAll, purchaseIds ? [purchaseIds] : []);
      if (rows.rows.length === 0) return 0;
      const ids = rows.rows.map((r) => r.purchase_id);
      // Deleted and inserted again: a new seq, at the tail, as a fresh purchase (claims start again).
      await tx.query(SQL.deleteMany, [ids]);
      const inserted = await tx.query<{ purchase_id: string; seq: number }>(SQL.insertPurchases, [
        ids,
        rows.rows.map((r) => r.event_id),
        rows.rows.map((r) => r.payload),
        rows.rows.map((r) => r.accepted_at),
      ]);
      await tx.query(SQL.deadToQueued, [rows.rows.map((r) => r.event_id)]);
      const seqs = new Map(inserted.rows.map((r) => [r.purchase_id, r.seq]));
      await publish(rows.rows.map((r) => ({ seq: seqs.get(r.purchase_id)!, purchase: parse(r.payload) })));
      return rows.rows.length;
    });
  }

  async find(purchaseId: string): Promise<AcceptedPurchase | null> {
    const rows = await this.#db.query<{ payload: string }>(SQL.find, [purchaseId]);
    return rows.rows[0] ? parse(rows.rows[0].payload) : null;
  }

  async depth(): Promise<{ depth: number; oldestAcceptedAt: string | null }> {
    const rows = await this.#db.query<{ depth: number; oldest: string | null }>(SQL.depth);
    return { depth: rows.rows[0]!.depth, oldestAcceptedAt: rows.rows[0]!.oldest };
  }

  async depthOf(eventId: string): Promise<{ queued: number; deadLetters: number }> {
    const rows = await this.#db.query<{ queued: number; dead: number }>(SQL.depthOf, [eventId]);
    return { queued: rows.rows[0]?.queued ?? 0, deadLetters: rows.rows[0]?.dead ?? 0 };
  }

  async ping(): Promise<void> {
    await this.#db.ping();
  }

  async close(): Promise<void> {
    await this.#db.close();
  }

  /** Takes the partitions' locks exclusively, in ascending order (so two batches never deadlock). */
  async #lock(tx: Tx, partitions: readonly number[]): Promise<void> {
    for (const p of [...new Set(partitions)].sort((a, b) => a - b)) {
      await tx.query(SQL.lockPartition, [this.#lockSpace, p]);
    }
  }

  /** lock_timeout (55P03) means a publisher holds the partition far longer than it may: unavailable. */
  async #lockOrUnavailable(take: () => Promise<unknown>): Promise<void> {
    try {
      await take();
    } catch (error) {
      if ((error as { code?: unknown }).code === '55P03') {
        throw new UnavailableError(
          'a publisher holds the partition lock of the RabbitMQ index too long',
          error,
        );
      }
      throw error;
    }
  }
}

function parse(payload: string): AcceptedPurchase {
  return JSON.parse(payload) as AcceptedPurchase;
}
