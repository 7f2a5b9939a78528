import type { AcceptedPurchase } from '../../domain/types.js';
import type { DeadLetter, EnqueueRequest, EnqueueResult } from '../../ports/queue.js';
import { applyMigrations, KEYED_SESSION, PostgresDatabase, type Tx } from '../postgres/database.js';
import {
  buryQueued,
  findQueuedOrDead,
  findQueuedOrDeadSql,
  lockOrUnavailable,
  parsePayload,
  resolveRequestKeys,
  takeBackPurchases,
} from '../postgres/index-records.js';
import { DEAD_LETTER_SQL, inTurn, listDeadLetters } from '../postgres/queue-records.js';

/**
 * The statements of the index. Lists travel as arrays (`unnest`, `= ANY`): one statement per batch. Every
 * write is safe to run twice, as PostgresDatabase retries a whole transaction after a transient failure,
 * possibly one whose COMMIT had landed.
 */
export const SQL = {
  /**
   * Holds the append lock of each event of $2 (in lock space $1) to the end of the transaction, in one
   * order for every caller (so two batches never deadlock). Returns one row per event.
   */
  lockEvents: `SELECT pg_advisory_xact_lock($1::int, h)
    FROM (SELECT DISTINCT hashtext(e) AS h FROM unnest($2::text[]) AS u (e)) locks ORDER BY h`,
  /** The same lock of event $2, shared: a claim waits for the event's appender in flight. Returns one row. */
  lockEventShared: 'SELECT pg_advisory_xact_lock_shared($1::int, hashtext($2))',
  /** A claim does not wait longer than this for an appender (one holds the lock for an SQS round trip). */
  lockTimeout: "SET LOCAL lock_timeout = '10s'",
  /** Claim counts need no fsync of their own: a lost one only lets a poison purchase be tried once more. */
  noSync: 'SET LOCAL synchronous_commit = off',
  /**
   * Inserts purchases in array order (ids $1, event ids $2, payloads $3, accepted_at $4); an id already
   * there (the first attempt of a retried transaction committed) is skipped. Returns purchase_id, seq of
   * the rows inserted.
   */
  insert: `INSERT INTO sqs_purchases (purchase_id, event_id, payload, accepted_at)
    SELECT id, ev, pl, at FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS u (id, ev, pl, at, n)
    ORDER BY n
    ON CONFLICT (purchase_id) DO NOTHING
    RETURNING purchase_id, seq`,
  /** purchase_id, seq of the purchases $1 (those a retried insert skipped). */
  seqs: 'SELECT purchase_id, seq FROM sqs_purchases WHERE purchase_id = ANY($1::text[])',
  /** seq, payload of the $2 oldest queued purchases of event $1. */
  head: 'SELECT seq, payload FROM sqs_purchases WHERE event_id = $1 ORDER BY seq LIMIT $2',
  /** One more claim of the purchase of seq $1; returns claims. */
  claimHead: 'UPDATE sqs_purchases SET claims = claims + 1 WHERE seq = $1 RETURNING claims',
  /** The purchase ids among $1 that are still queued. */
  queued: 'SELECT purchase_id FROM sqs_purchases WHERE purchase_id = ANY($1::text[])',
  /** Deletes the queued purchases $1. Returns nothing. */
  remove: 'DELETE FROM sqs_purchases WHERE purchase_id = ANY($1::text[])',
  /** Deletes the queued purchases $1, to be buried in the same transaction. Returns seq, payload. */
  takeForBurial: 'DELETE FROM sqs_purchases WHERE purchase_id = ANY($1::text[]) RETURNING seq, payload',
  /** Every queued purchase, oldest first: seq, payload (to publish again into a queue SQS lost). */
  all: 'SELECT seq, payload FROM sqs_purchases ORDER BY seq',
  /** Purchase $1, queued or dead (see findQueuedOrDeadSql). */
  find: findQueuedOrDeadSql('sqs_purchases'),
  /** depth (queued purchases of all events) and oldest (accepted_at of the oldest queued one, or null). */
  depth: `SELECT (SELECT count(*) FROM sqs_purchases)::bigint AS depth,
    (SELECT accepted_at FROM sqs_purchases ORDER BY seq LIMIT 1) AS oldest`,
  /** queued and dead of event $1. One row. */
  depthOf: `SELECT (SELECT count(*) FROM sqs_purchases WHERE event_id = $1)::bigint AS queued,
    ${DEAD_LETTER_SQL.countOfEvent} AS dead`,
} as const;

/** A purchase as the index holds it: its acceptance sequence number (the order of its event) and itself. */
export interface IndexedPurchase {
  seq: number;
  purchase: AcceptedPurchase;
}

/**
 * The SQS queue's index in PostgreSQL: what SQS cannot answer or keep in order across messages. It holds
 * each queued purchase with its sequence number (acceptance order), the idempotency keys and the dead
 * letters (shared tables, see queue-records.ts), and how often each head was claimed.
 *
 * Its rule: every queued purchase is in at least one message on the SQS queue, in its event's message
 * group. record() and revive() insert rows and run `publish` (the SQS send) inside the transaction, which
 * commits only once SQS has taken every message; and the adapter deletes a message only once none of its
 * purchases is queued here any more. Appends to one event take turns on a lock per event, held through
 * commit, and claims read under the same lock shared, so no claim sees a later purchase of an event
 * before an earlier one.
 */
export class SqsIndex {
  readonly #db: PostgresDatabase;
  readonly #lockSpace: number;
  /** Which appends of this process take turns (see inTurn). */
  readonly #turns: string;

  constructor(url: string, name: string) {
    // Every statement of the index is a key lookup or a walk of an index (KEYED_SESSION says why it is forced).
    this.#db = new PostgresDatabase(url, KEYED_SESSION);
    this.#lockSpace = lockSpaceOf(name);
    this.#turns = `sqs ${name} ${url}`;
  }

  async migrate(): Promise<void> {
    await this.#db.transaction(async (tx) => {
      // Records first: the shared tables of idempotency keys and dead letters.
      await applyMigrations(tx, 'records');
      await applyMigrations(tx, 'sqs');
    });
  }

  /**
   * Resolves idempotency keys and records the accepted purchases, then runs `publish` on them inside the
   * same transaction, and commits only if it resolves.
   */
  async record(
    requests: readonly EnqueueRequest[],
    publish: (accepted: IndexedPurchase[]) => Promise<void>,
  ): Promise<EnqueueResult[]> {
    return inTurn(this.#turns, () =>
      this.#db.transaction(async (tx) => {
        await tx.query(SQL.lockEvents, [this.#lockSpace, requests.map((r) => r.purchase.eventId)]);
        const results = await resolveRequestKeys(tx, requests);
        const accepted = requests.filter((_, i) => results[i]!.status === 'accepted').map((r) => r.purchase);
        if (accepted.length > 0) await publish(await this.#insert(tx, accepted));
        return results;
      }),
    );
  }

  /**
   * Under the event's lock (shared): its `max` oldest queued purchases, and one more claim of the first.
   * Null when the event has none queued.
   */
  async take(
    eventId: string,
    max: number,
  ): Promise<{ purchases: AcceptedPurchase[]; claims: number } | null> {
    return this.#db.transaction(async (tx) => {
      await tx.query(SQL.noSync);
      await tx.query(SQL.lockTimeout);
      // A lock_timeout: an appender holds the event far longer than an SQS round trip may take.
      await lockOrUnavailable(
        () => tx.query(SQL.lockEventShared, [this.#lockSpace, eventId]),
        'an appender holds the event lock of the SQS index too long',
      );
      const rows = await tx.query<{ seq: number; payload: string }>(SQL.head, [eventId, max]);
      if (rows.rows.length === 0) return null;
      const claimed = await tx.query<{ claims: number }>(SQL.claimHead, [rows.rows[0]!.seq]);
      return { purchases: rows.rows.map((r) => parsePayload(r.payload)), claims: claimed.rows[0]!.claims };
    });
  }

  /** The purchase ids among `purchaseIds` still queued. */
  async stillQueued(purchaseIds: readonly string[]): Promise<Set<string>> {
    const rows = await this.#db.query<{ purchase_id: string }>(SQL.queued, [purchaseIds]);
    return new Set(rows.rows.map((r) => r.purchase_id));
  }

  /** Deletes queued purchases (acked: their effect is committed to storage). */
  async remove(purchaseIds: readonly string[]): Promise<void> {
    if (purchaseIds.length > 0) await this.#db.query(SQL.remove, [purchaseIds]);
  }

  /** Moves queued purchases to the dead letters, with the reason. */
  async bury(purchaseIds: readonly string[], reason: string): Promise<void> {
    await buryQueued(this.#db, SQL.takeForBurial, purchaseIds, reason);
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    return listDeadLetters(this.#db, limit);
  }

  /**
   * Puts dead letters (all, or those named) back on the queue with a new seq, and runs `publish` on them in
   * the same transaction, as record() does; returns how many.
   */
  async revive(
    purchaseIds: readonly string[] | undefined,
    publish: (revived: IndexedPurchase[]) => Promise<void>,
  ): Promise<number> {
    // Revived purchases go to the tail like any append: they take turns with this process's appends.
    return inTurn(this.#turns, () =>
      this.#db.transaction(async (tx) => {
        const revived = await takeBackPurchases(tx, purchaseIds);
        if (revived.length === 0) return 0;
        await tx.query(SQL.lockEvents, [this.#lockSpace, revived.map((p) => p.eventId)]);
        // Inserted again: a new seq, at the tail, as a fresh purchase (claims start again).
        await publish(await this.#insert(tx, revived));
        return revived.length;
      }),
    );
  }

  /** Every queued purchase, oldest first. */
  async all(): Promise<IndexedPurchase[]> {
    const rows = await this.#db.query<{ seq: number; payload: string }>(SQL.all);
    return rows.rows.map((r) => ({ seq: Number(r.seq), purchase: parsePayload(r.payload) }));
  }

  async find(purchaseId: string): Promise<AcceptedPurchase | null> {
    return findQueuedOrDead(this.#db, SQL.find, purchaseId);
  }

  async depth(): Promise<{ depth: number; oldestAcceptedAt: string | null }> {
    const rows = await this.#db.query<{ depth: string; oldest: string | null }>(SQL.depth);
    return { depth: Number(rows.rows[0]!.depth), oldestAcceptedAt: rows.rows[0]!.oldest };
  }

  async depthOf(eventId: string): Promise<{ queued: number; deadLetters: number }> {
    const rows = await this.#db.query<{ queued: string; dead: string }>(SQL.depthOf, [eventId]);
    return { queued: Number(rows.rows[0]!.queued), deadLetters: Number(rows.rows[0]!.dead) };
  }

  async ping(): Promise<void> {
    await this.#db.ping();
  }

  async close(): Promise<void> {
    await this.#db.close();
  }

  /** Inserts purchases at the tail; returns each with its seq (also those a retried insert skipped). */
  async #insert(tx: Tx, purchases: readonly AcceptedPurchase[]): Promise<IndexedPurchase[]> {
    const ids = purchases.map((p) => p.purchaseId);
    const inserted = await tx.query<{ purchase_id: string; seq: string }>(SQL.insert, [
      ids,
      purchases.map((p) => p.eventId),
      purchases.map((p) => JSON.stringify(p)),
      purchases.map((p) => p.acceptedAt),
    ]);
    const seqs = new Map(inserted.rows.map((r) => [r.purchase_id, Number(r.seq)]));
    if (seqs.size < ids.length) {
      const skipped = await tx.query<{ purchase_id: string; seq: string }>(SQL.seqs, [
        ids.filter((id) => !seqs.has(id)),
      ]);
      for (const r of skipped.rows) seqs.set(r.purchase_id, Number(r.seq));
    }
    return purchases.map((purchase) => ({ seq: seqs.get(purchase.purchaseId)!, purchase }));
  }
}

/** The advisory lock space of a queue name: a 32-bit FNV-1a hash, as the int4 first key. */
function lockSpaceOf(name: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(`sqs:${name}`, 'utf8')) hash = Math.imul(hash ^ byte, 0x01000193);
  return hash | 0;
}
