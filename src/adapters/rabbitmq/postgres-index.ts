import type { AcceptedPurchase } from '../../domain/types.js';
import type { DeadLetter, EnqueueResult } from '../../ports/queue.js';
import {
  applyMigrations,
  KEYED_SESSION,
  PostgresDatabase,
  prepareStatements,
  type Tx,
} from '../postgres/database.js';
import {
  buryQueued,
  findQueuedOrDead,
  findQueuedOrDeadSql,
  lockOrUnavailable,
  resolveRequestKeys,
  takeBackPurchases,
} from '../postgres/index-records.js';
import { DEAD_LETTER_SQL, inTurn, listDeadLetters } from '../postgres/queue-records.js';
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
export const SQL = {
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
   * Inserts purchases in array order (ids $1, event ids $2, payloads $3, accepted_at $4) and adds those
   * inserted to their events' queued counts, in one statement: one round trip fewer while the partition's
   * lock is held. An id already there (the first attempt of a retried transaction committed) is skipped and
   * not counted again. Returns purchase_id, seq of the rows inserted.
   */
  insertPurchases: `WITH inserted AS (
      INSERT INTO rabbitmq_purchases (purchase_id, event_id, payload, accepted_at)
      SELECT id, ev, pl, at FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS u (id, ev, pl, at, n)
      ORDER BY n
      ON CONFLICT (purchase_id) DO NOTHING
      RETURNING purchase_id, seq, event_id
    ), counted AS (
      INSERT INTO rabbitmq_counts (event_id, queued)
      SELECT event_id, count(*) FROM inserted GROUP BY event_id
      ON CONFLICT (event_id) DO UPDATE SET queued = rabbitmq_counts.queued + EXCLUDED.queued
    )
    SELECT purchase_id, seq FROM inserted`,
  /** purchase_id, seq of the purchases $1 (those a retried insert skipped). */
  seqs: 'SELECT purchase_id, seq FROM rabbitmq_purchases WHERE purchase_id = ANY($1::text[])',
  /** purchase_id, dead of the purchases $1 that the index holds, queued or among the dead letters. */
  states: `SELECT purchase_id, false AS dead FROM rabbitmq_purchases WHERE purchase_id = ANY($1::text[])
    UNION ALL
    SELECT purchase_id, true AS dead FROM queue_dead_letters WHERE purchase_id = ANY($1::text[])`,
  /** One more claim of purchase $1; returns claims. */
  claimHead: 'UPDATE rabbitmq_purchases SET claims = claims + 1 WHERE purchase_id = $1 RETURNING claims',
  /** Deletes the queued purchases $1 and takes them off their events' counts. Returns nothing. */
  remove: `WITH gone AS (
      DELETE FROM rabbitmq_purchases WHERE purchase_id = ANY($1::text[]) RETURNING event_id
    )
    UPDATE rabbitmq_counts c SET queued = c.queued - g.n
    FROM (SELECT event_id, count(*) AS n FROM gone GROUP BY event_id) g WHERE c.event_id = g.event_id`,
  /**
   * Deletes the queued purchases $1 and takes them off their events' counts, to be buried (in the same
   * transaction). Returns seq, payload of those deleted.
   */
  takeForBurial: `WITH gone AS (
      DELETE FROM rabbitmq_purchases WHERE purchase_id = ANY($1::text[]) RETURNING seq, event_id, payload
    ), counted AS (
      UPDATE rabbitmq_counts c SET queued = c.queued - g.n
      FROM (SELECT event_id, count(*) AS n FROM gone GROUP BY event_id) g WHERE c.event_id = g.event_id
    )
    SELECT seq, payload FROM gone`,
  /** Purchase $1, queued or dead (see findQueuedOrDeadSql). */
  find: findQueuedOrDeadSql('rabbitmq_purchases'),
  /** depth (queued purchases of all events) and oldest (accepted_at of the oldest queued one, or null). */
  depth: `SELECT (SELECT coalesce(sum(queued), 0)::bigint FROM rabbitmq_counts) AS depth,
    (SELECT accepted_at FROM rabbitmq_purchases ORDER BY seq LIMIT 1) AS oldest`,
  /** queued (0 when the event never had a purchase) and dead of event $1. One row. */
  depthOf: `SELECT coalesce((SELECT queued FROM rabbitmq_counts WHERE event_id = $1), 0)::bigint AS queued,
    ${DEAD_LETTER_SQL.countOfEvent} AS dead`,
} as const;

/** What every batch runs, a web server's enqueue and a worker's inspect and remove: prepared once per connection. */
prepareStatements('rabbitmq', {
  lockPartition: SQL.lockPartition,
  lockPartitionShared: SQL.lockPartitionShared,
  insertPurchases: SQL.insertPurchases,
  states: SQL.states,
  claimHead: SQL.claimHead,
  remove: SQL.remove,
});

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
    // Every statement of the index is a key lookup or a walk of an index (KEYED_SESSION says why it is forced).
    this.#db = new PostgresDatabase(url, KEYED_SESSION);
    this.#prefix = prefix;
    this.#lockSpace = partitionOf(prefix, 2 ** 32) | 0;
    this.#turns = `rabbitmq ${prefix} ${url}`;
  }

  async migrate(partitions: number): Promise<void> {
    const known = await this.#db.transaction(async (tx) => {
      // Records first: the index's migration 0002 moves its keys and dead letters into their tables.
      await applyMigrations(tx, 'records');
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
      const results = await resolveRequestKeys(
        tx,
        requests.map((r) => r.request),
      );
      const accepted = requests
        .filter((_, i) => results[i]!.status === 'accepted')
        .map((r) => r.request.purchase);
      if (accepted.length === 0) return results;
      const ids = accepted.map((p) => p.purchaseId);
      const payloads = accepted.map((p) => JSON.stringify(p));
      const inserted = await tx.query<{ purchase_id: string; seq: number }>(SQL.insertPurchases, [
        ids,
        accepted.map((p) => p.eventId),
        payloads,
        accepted.map((p) => p.acceptedAt),
      ]);
      const seqs = new Map(inserted.rows.map((r) => [r.purchase_id, r.seq]));
      if (seqs.size < accepted.length) {
        const skipped = await tx.query<{ purchase_id: string; seq: number }>(SQL.seqs, [
          ids.filter((id) => !seqs.has(id)),
        ]);
        for (const r of skipped.rows) seqs.set(r.purchase_id, r.seq);
      }
      await publish(
        accepted.map((purchase, i) => ({
          seq: seqs.get(purchase.purchaseId)!,
          purchase,
          payload: payloads[i]!,
        })),
      );
      return results;
    });
  }

  async inspect(partition: number, purchaseIds: readonly string[]): Promise<Inspection> {
    return this.#db.transaction(async (tx) => {
      await tx.query(SQL.noSync);
      await tx.query(SQL.lockTimeout);
      await lockOrUnavailable(
        () => tx.query(SQL.lockPartitionShared, [this.#lockSpace, partition]),
        'a publisher holds the partition lock of the RabbitMQ index too long',
      );
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
    await buryQueued(this.#db, SQL.takeForBurial, purchaseIds, reason);
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    return listDeadLetters(this.#db, limit);
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
      const revived = await takeBackPurchases(tx, purchaseIds);
      if (revived.length === 0) return 0;
      // Inserted again: a new seq, at the tail, as a fresh purchase (claims start again).
      const payloads = revived.map((p) => JSON.stringify(p));
      const inserted = await tx.query<{ purchase_id: string; seq: number }>(SQL.insertPurchases, [
        revived.map((p) => p.purchaseId),
        revived.map((p) => p.eventId),
        payloads,
        revived.map((p) => p.acceptedAt),
      ]);
      const seqs = new Map(inserted.rows.map((r) => [r.purchase_id, r.seq]));
      await publish(
        revived.map((purchase, i) => ({
          seq: seqs.get(purchase.purchaseId)!,
          purchase,
          payload: payloads[i]!,
        })),
      );
      return revived.length;
    });
  }

  async find(purchaseId: string): Promise<AcceptedPurchase | null> {
    return findQueuedOrDead(this.#db, SQL.find, purchaseId);
  }

  async depth(): Promise<{ depth: number; oldestAcceptedAt: string | null }> {
    const rows = await this.#db.query<{ depth: number; oldest: string | null }>(SQL.depth);
    return { depth: rows.rows[0]!.depth, oldestAcceptedAt: rows.rows[0]!.oldest };
  }

  async depthOf(eventId: string): Promise<{ queued: number; deadLetters: number }> {
    const rows = await this.#db.query<{ queued: number; dead: number }>(SQL.depthOf, [eventId]);
    return { queued: rows.rows[0]!.queued, deadLetters: rows.rows[0]!.dead };
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
}
