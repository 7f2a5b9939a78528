import type { Statement } from 'better-sqlite3';
import { fileURLToPath } from 'node:url';
import type { AcceptedPurchase } from '../../domain/types.js';
import type { DeadLetter, EnqueueResult } from '../../ports/queue.js';
import {
  guarded,
  migrateSqlite,
  openSqlite,
  prepareAll,
  withoutBlockingOnLock,
  type SqliteDatabase,
} from '../sqlite/database.js';
import {
  partitionMismatch,
  type IndexedPurchase,
  type Inspection,
  type PartitionedRequest,
  type PurchaseIndex,
} from './index-store.js';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/sqlite/', import.meta.url));
/** The component name of these migrations in schema_migrations (shared with the storage's and queue's). */
const COMPONENT = 'rabbitmq';

const MIGRATION_SQL = {
  /** Records the partition count of a prefix the first time it is seen. */
  claimPrefix:
    'INSERT INTO rabbitmq_topology (prefix, partitions) VALUES (?, ?) ON CONFLICT (prefix) DO NOTHING',
  /** The partition count a prefix was created with. */
  prefixPartitions: 'SELECT partitions FROM rabbitmq_topology WHERE prefix = ?',
} as const;

/** Statements of the writing connection. Lists of ids travel as one JSON array parameter (json_each). */
const WRITE_SQL = {
  /** The owner of an idempotency key: request_hash, purchase_id. */
  findKey:
    'SELECT request_hash, purchase_id FROM rabbitmq_idempotency_keys WHERE event_id = ? AND buyer_id = ? AND key = ?',
  insertKey:
    'INSERT INTO rabbitmq_idempotency_keys (event_id, buyer_id, key, request_hash, purchase_id, created_at) VALUES (?, ?, ?, ?, ?, ?)',
  insert: 'INSERT INTO rabbitmq_purchases (purchase_id, event_id, payload, accepted_at) VALUES (?, ?, ?, ?)',
  addQueued:
    'INSERT INTO rabbitmq_counts (event_id, queued) VALUES (?, ?) ON CONFLICT (event_id) DO UPDATE SET queued = queued + excluded.queued',
  /** purchase_id and dead (0/1) of each listed purchase the index holds. */
  states:
    'SELECT purchase_id, dead_at IS NOT NULL AS dead FROM rabbitmq_purchases WHERE purchase_id IN (SELECT value FROM json_each(?))',
  /** One more claim of a head; returns its claims. */
  claimHead: 'UPDATE rabbitmq_purchases SET claims = claims + 1 WHERE purchase_id = ? RETURNING claims',
  /** Deletes the listed queued purchases; returns the event_id of each. */
  remove:
    'DELETE FROM rabbitmq_purchases WHERE purchase_id IN (SELECT value FROM json_each(?)) AND dead_at IS NULL RETURNING event_id',
  subQueued: 'UPDATE rabbitmq_counts SET queued = queued - ? WHERE event_id = ?',
  /** Marks the listed queued purchases dead (@reason, @now); returns the event_id of each. */
  bury: `UPDATE rabbitmq_purchases SET dead_reason = @reason, dead_at = @now
    WHERE purchase_id IN (SELECT value FROM json_each(@ids)) AND dead_at IS NULL RETURNING event_id`,
  queuedToDead: 'UPDATE rabbitmq_counts SET queued = queued - ?, dead = dead + ? WHERE event_id = ?',
  deadNamed:
    'SELECT * FROM rabbitmq_purchases WHERE dead_at IS NOT NULL AND purchase_id IN (SELECT value FROM json_each(?)) ORDER BY dead_at, seq',
  deadAll: 'SELECT * FROM rabbitmq_purchases WHERE dead_at IS NOT NULL ORDER BY dead_at, seq',
  deleteOne: 'DELETE FROM rabbitmq_purchases WHERE purchase_id = ?',
  deadToQueued: 'UPDATE rabbitmq_counts SET queued = queued + ?, dead = dead - ? WHERE event_id = ?',
} as const;

/** Statements of the reading connection, which never waits for the write lock. */
const READ_SQL = {
  find: 'SELECT payload FROM rabbitmq_purchases WHERE purchase_id = ?',
  depth: 'SELECT coalesce(sum(queued), 0) FROM rabbitmq_counts',
  oldest: 'SELECT accepted_at FROM rabbitmq_purchases WHERE dead_at IS NULL ORDER BY seq LIMIT 1',
  depthOf: 'SELECT queued, dead FROM rabbitmq_counts WHERE event_id = ?',
  deadLetters:
    'SELECT payload, dead_reason, dead_at FROM rabbitmq_purchases WHERE dead_at IS NOT NULL ORDER BY dead_at, seq LIMIT ?',
} as const;

interface PurchaseRow {
  seq: number;
  purchase_id: string;
  event_id: string;
  payload: string;
  dead_reason: string | null;
  dead_at: string | null;
}

/**
 * The index in a SQLite file (by default the storage's own file). SQLite has one write lock per file, so
 * "the partition's lock" of PurchaseIndex is that lock: a write transaction holds it from BEGIN IMMEDIATE
 * to COMMIT, across the wait for RabbitMQ's confirms.
 *
 * Two connections: writes go through one, one at a time (a transaction stays open across an await, so
 * nothing else may use that connection meanwhile); reads (find, depth) use the other and never wait for a
 * publish in flight, nor see its uncommitted rows.
 */
export class SqliteIndex implements PurchaseIndex {
  readonly #db: SqliteDatabase;
  readonly #reader: SqliteDatabase;
  /** The queue prefix (its partition count is checked by migrate). */
  readonly #prefix: string;
  readonly #write: Record<keyof typeof WRITE_SQL, Statement>;
  readonly #read: Record<keyof typeof READ_SQL, Statement>;
  /** The tail of the chain of writes on #db: each runs after the previous one ended. */
  #tail: Promise<unknown> = Promise.resolve();

  constructor(url: string, prefix: string) {
    this.#prefix = prefix;
    this.#db = guarded(() => openSqlite(url));
    this.#reader = guarded(() => openSqlite(url));
    migrateIndex(this.#db);
    this.#write = prepareAll(this.#db, WRITE_SQL);
    this.#read = prepareAll(this.#reader, READ_SQL);
    this.#read.depth.pluck();
    this.#read.oldest.pluck();
    this.#read.find.pluck();
    this.#write.claimHead.pluck();
  }

  async migrate(partitions: number): Promise<void> {
    await this.#exclusive(async () => {
      guarded(() => migrateIndex(this.#db));
      const db = this.#db;
      guarded(() => db.prepare(MIGRATION_SQL.claimPrefix).run(this.#prefix, partitions));
      const known = guarded(() => db.prepare(MIGRATION_SQL.prefixPartitions).pluck().get(this.#prefix));
      if (known !== partitions) throw partitionMismatch(this.#prefix, known as number, partitions);
    });
  }

  async record(
    requests: readonly PartitionedRequest[],
    publish: (accepted: IndexedPurchase[]) => Promise<void>,
  ): Promise<EnqueueResult[]> {
    const s = this.#write;
    return this.#transaction(async () => {
      const now = new Date().toISOString();
      const accepted: IndexedPurchase[] = [];
      const perEvent = new Map<string, number>();
      const results = requests.map(({ request: { purchase: p, idempotency } }): EnqueueResult => {
        if (idempotency) {
          const seen = s.findKey.get(p.eventId, p.buyerId, idempotency.key) as
            { request_hash: string; purchase_id: string } | undefined;
          if (seen) {
            return seen.request_hash === idempotency.requestHash
              ? { status: 'duplicate', purchaseId: seen.purchase_id }
              : { status: 'conflict' };
          }
          s.insertKey.run(p.eventId, p.buyerId, idempotency.key, idempotency.requestHash, p.purchaseId, now);
        }
        const { lastInsertRowid } = s.insert.run(p.purchaseId, p.eventId, JSON.stringify(p), p.acceptedAt);
        accepted.push({ seq: Number(lastInsertRowid), purchase: p });
        perEvent.set(p.eventId, (perEvent.get(p.eventId) ?? 0) + 1);
        return { status: 'accepted', purchaseId: p.purchaseId };
      });
      for (const [eventId, count] of perEvent) s.addQueued.run(eventId, count);
      if (accepted.length > 0) await publish(accepted);
      return results;
    });
  }

  async inspect(_partition: number, purchaseIds: readonly string[]): Promise<Inspection> {
    const s = this.#write;
    // A lost claim count (power cut before the next fsync) only lets a poison purchase be tried once more:
    // no fsync for this write. In WAL mode the next FULL commit makes it durable with its own.
    return this.#transaction(async () => {
      const rows = s.states.all(JSON.stringify(purchaseIds)) as Array<{ purchase_id: string; dead: number }>;
      const dead = new Map(rows.map((r) => [r.purchase_id, r.dead === 1]));
      const found: Inspection = { queued: [], dead: [], gone: [], headClaims: 0 };
      for (const id of purchaseIds) {
        const isDead = dead.get(id);
        if (isDead === undefined) found.gone.push(id);
        else if (isDead) found.dead.push(id);
        else found.queued.push(id);
      }
      if (found.queued.length > 0) found.headClaims = s.claimHead.get(found.queued[0]) as number;
      return found;
    }, 'relaxed');
  }

  async remove(purchaseIds: readonly string[]): Promise<void> {
    if (purchaseIds.length === 0) return;
    const s = this.#write;
    await this.#transaction(async () => {
      const removed = s.remove.all(JSON.stringify(purchaseIds)) as Array<{ event_id: string }>;
      for (const [eventId, count] of countBy(removed)) s.subQueued.run(count, eventId);
    });
  }

  async bury(purchaseIds: readonly string[], reason: string): Promise<void> {
    if (purchaseIds.length === 0) return;
    const s = this.#write;
    await this.#transaction(async () => {
      const buried = s.bury.all({
        reason,
        now: new Date().toISOString(),
        ids: JSON.stringify(purchaseIds),
      }) as Array<{
        event_id: string;
      }>;
      for (const [eventId, count] of countBy(buried)) s.queuedToDead.run(count, count, eventId);
    });
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    const rows = guarded(() => this.#read.deadLetters.all(limit)) as Array<{
      payload: string;
      dead_reason: string;
      dead_at: string;
    }>;
    return rows.map((r) => ({ purchase: parse(r.payload), reason: r.dead_reason, deadAt: r.dead_at }));
  }

  async revive(
    purchaseIds: readonly string[] | undefined,
    _partitions: readonly number[],
    publish: (revived: IndexedPurchase[]) => Promise<void>,
  ): Promise<number> {
    const s = this.#write;
    return this.#transaction(async () => {
      const rows = (
        purchaseIds ? s.deadNamed.all(JSON.stringify(purchaseIds)) : s.deadAll.all()
      ) as PurchaseRow[];
      const revived: IndexedPurchase[] = [];
      for (const r of rows) {
        // Deleted and inserted again: a new seq, at the tail, as a fresh purchase (claims start again).
        s.deleteOne.run(r.purchase_id);
        const purchase = parse(r.payload);
        const { lastInsertRowid } = s.insert.run(r.purchase_id, r.event_id, r.payload, purchase.acceptedAt);
        revived.push({ seq: Number(lastInsertRowid), purchase });
      }
      for (const [eventId, count] of countBy(rows)) s.deadToQueued.run(count, count, eventId);
      if (revived.length > 0) await publish(revived);
      return revived.length;
    });
  }

  async find(purchaseId: string): Promise<AcceptedPurchase | null> {
    const payload = guarded(() => this.#read.find.get(purchaseId)) as string | undefined;
    return payload === undefined ? null : parse(payload);
  }

  async depth(): Promise<{ depth: number; oldestAcceptedAt: string | null }> {
    return guarded(() =>
      this.#reader.transaction(() => ({
        depth: this.#read.depth.get() as number,
        oldestAcceptedAt: (this.#read.oldest.get() as string | undefined) ?? null,
      }))(),
    );
  }

  async depthOf(eventId: string): Promise<{ queued: number; deadLetters: number }> {
    const row = guarded(() => this.#read.depthOf.get(eventId)) as
      { queued: number; dead: number } | undefined;
    return { queued: row?.queued ?? 0, deadLetters: row?.dead ?? 0 };
  }

  async ping(): Promise<void> {
    guarded(() => this.#reader.prepare('SELECT 1').get());
  }

  async close(): Promise<void> {
    await this.#tail;
    this.#db.close();
    this.#reader.close();
  }

  /** Runs `fn` once every write queued before it on this connection has ended. */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn, fn);
    this.#tail = run.catch(() => undefined);
    return run;
  }

  /**
   * Runs `body` in an IMMEDIATE transaction (holding the write lock throughout, awaits included) and
   * commits, or rolls back when it throws. `relaxed` commits without an fsync.
   */
  #transaction<T>(body: () => Promise<T>, durability: 'full' | 'relaxed' = 'full'): Promise<T> {
    return this.#exclusive(async () => {
      // Changed only between transactions, never inside one.
      if (durability === 'relaxed') this.#db.pragma('synchronous = NORMAL');
      try {
        await this.#begin();
        try {
          const result = await body();
          guarded(() => this.#db.exec('COMMIT'));
          return result;
        } catch (error) {
          if (this.#db.inTransaction) guarded(() => this.#db.exec('ROLLBACK'));
          throw error;
        }
      } finally {
        if (durability === 'relaxed') this.#db.pragma('synchronous = FULL');
      }
    });
  }

  /** Takes the write lock without blocking the event loop (as SqliteQueue does). */
  async #begin(): Promise<void> {
    await withoutBlockingOnLock(this.#db, () => this.#db.exec('BEGIN IMMEDIATE'));
  }
}

/** Applies the numbered, append-only migrations of the index that the file has not seen yet. */
function migrateIndex(db: SqliteDatabase): void {
  migrateSqlite(db, COMPONENT, MIGRATIONS_DIR);
}

function countBy(rows: ReadonlyArray<{ event_id: string }>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of rows) counts.set(r.event_id, (counts.get(r.event_id) ?? 0) + 1);
  return counts;
}

function parse(payload: string): AcceptedPurchase {
  return JSON.parse(payload) as AcceptedPurchase;
}
