import { canonicalBuyerId } from '../../domain/buyer.js';
import type { AcceptedPurchase, PurchaseItem } from '../../domain/types.js';
import type { DeadLetter } from '../../ports/queue.js';
import { fromDb, type Tx } from './database.js';

/**
 * What the queues kept in PostgreSQL share: the table queue (PostgresQueue) and the RabbitMQ queue's index
 * (PostgresIndex) keep their idempotency keys and dead letters in the same tables (idempotency_keys and
 * queue_dead_letters, component records), with the same statements, and order their appends the same way.
 * These live here once. Client text (buyer ids, keys, reasons) is stored as toDb() writes it; ids this
 * server makes are the same either way.
 */

/** The statements over idempotency_keys (columns event_id, buyer_id, key, request_hash, purchase_id). */
export const KEY_SQL = {
  /**
   * Records keys not seen before; a key already there (from an earlier batch) is left alone. One array per
   * column: $1 event ids, $2 buyer ids, $3 keys, $4 request hashes, $5 purchase ids. Returns nothing
   * (`read` tells who owns each key).
   */
  insert: `INSERT INTO idempotency_keys (event_id, buyer_id, key, request_hash, purchase_id)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
    ON CONFLICT (event_id, buyer_id, key) DO NOTHING`,
  /**
   * The owner of each (event id $1[i], buyer id $2[i], key $3[i]): event_id, buyer_id, key, request_hash,
   * purchase_id. One index probe per key, whatever the statistics say: as a plain join, the planner hashed
   * the whole table per batch while its statistics lagged a rush (42 ms per 500 keys at 100,000 keys).
   */
  read: `SELECT k.event_id, k.buyer_id, k.key, k.request_hash, k.purchase_id
    FROM unnest($1::text[], $2::text[], $3::text[]) AS u (event_id, buyer_id, key)
    CROSS JOIN LATERAL (SELECT * FROM idempotency_keys
      WHERE event_id = u.event_id AND buyer_id = u.buyer_id AND key = u.key OFFSET 0) AS k`,
} as const;

/** The statements over queue_dead_letters. Each queue takes its purchases out of its own tables first. */
export const DEAD_LETTER_SQL = {
  /**
   * Buries purchases with reason $7; a purchase already buried (a retried transaction whose first COMMIT
   * landed) is left alone. One array per column: $1 purchase ids, $2 event ids, $3 buyer ids, $4 items
   * (JSON), $5 acceptance times, $6 their seq on the queue. Returns nothing.
   */
  bury: `INSERT INTO queue_dead_letters (purchase_id, event_id, buyer_id, items, accepted_at, seq, reason)
    SELECT u.*, $7::text FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) AS u
    ON CONFLICT (purchase_id) DO NOTHING`,
  /** The $1 oldest dead letters: purchase columns, reason, dead_at. */
  list: `SELECT purchase_id, event_id, buyer_id, items, accepted_at, reason, dead_at
    FROM queue_dead_letters ORDER BY dead_at, seq LIMIT $1`,
  /**
   * Takes out the dead letters whose purchase id is in $1 (all when $1 is null), to go back on the queue.
   * Returns their purchase columns, oldest first (the order they are listed in).
   */
  takeBack: `WITH taken AS (
      DELETE FROM queue_dead_letters WHERE $1::text[] IS NULL OR purchase_id = ANY($1::text[])
      RETURNING purchase_id, event_id, buyer_id, items, accepted_at, seq, dead_at
    )
    SELECT purchase_id, event_id, buyer_id, items, accepted_at FROM taken ORDER BY dead_at, seq`,
  /** Dead purchase $1 (purchase columns), or no row: a branch of a queue's find, which reads both. */
  find: 'SELECT purchase_id, event_id, buyer_id, items, accepted_at FROM queue_dead_letters WHERE purchase_id = $1',
  /** A scalar subquery: the dead letters of event $1, for a queue's depthOf. */
  countOfEvent: '(SELECT count(*) FROM queue_dead_letters WHERE event_id = $1)',
} as const;

/** A purchase's columns as the queues store them: client text as toDb() writes it, items as JSON. */
export interface PurchaseRow {
  purchase_id: string;
  event_id: string;
  buyer_id: string;
  items: string;
  accepted_at: string;
}

/** The purchase a row holds. */
export function toPurchase(row: PurchaseRow): AcceptedPurchase {
  return {
    purchaseId: fromDb(row.purchase_id),
    eventId: fromDb(row.event_id),
    buyerId: fromDb(row.buyer_id),
    // The tables keep the id as typed; the canonical one is derived again (no second column to migrate).
    canonicalBuyerId: canonicalBuyerId(fromDb(row.buyer_id)),
    items: JSON.parse(row.items) as PurchaseItem[],
    acceptedAt: row.accepted_at,
  };
}

/**
 * Inside the transaction that took `purchases` off a queue: buries them, each with the seq it had there,
 * with `reason` (stored form).
 */
export async function buryPurchases(
  tx: Tx,
  purchases: ReadonlyArray<PurchaseRow & { seq: number }>,
  reason: string,
): Promise<void> {
  if (purchases.length === 0) return;
  await tx.query(DEAD_LETTER_SQL.bury, [
    purchases.map((p) => p.purchase_id),
    purchases.map((p) => p.event_id),
    purchases.map((p) => p.buyer_id),
    purchases.map((p) => p.items),
    purchases.map((p) => p.accepted_at),
    purchases.map((p) => p.seq),
    reason,
  ]);
}

/** The `limit` oldest dead letters, oldest first. */
export async function listDeadLetters(db: Tx, limit: number): Promise<DeadLetter[]> {
  const { rows } = await db.query<PurchaseRow & { reason: string; dead_at: Date }>(DEAD_LETTER_SQL.list, [
    limit,
  ]);
  return rows.map((r) => ({
    purchase: toPurchase(r),
    reason: fromDb(r.reason),
    deadAt: r.dead_at.toISOString(),
  }));
}

/**
 * Inside the transaction that puts them back on a queue: takes out the dead letters whose purchase ids (in
 * stored form) are `named`, or all when null, and returns their rows oldest first.
 */
export async function takeBackDeadLetters(tx: Tx, named: readonly string[] | null): Promise<PurchaseRow[]> {
  const { rows } = await tx.query<PurchaseRow>(DEAD_LETTER_SQL.takeBack, [named]);
  return rows;
}

/** A request's idempotency key and its purchase, each column as its table stores it. */
interface StoredKey {
  eventId: string;
  buyerId: string;
  key: string;
  requestHash: string;
  purchaseId: string;
}

/** What a key's owner says of a request: it is the owner, or a repeat of the owner's request, or a conflict. */
type KeyVerdict =
  { status: 'owner' } | { status: 'duplicate'; storedPurchaseId: string } | { status: 'conflict' };

interface KeyRow {
  event_id: string;
  buyer_id: string;
  key: string;
  request_hash: string;
  purchase_id: string;
}

/**
 * Inside the enqueue transaction: records the keys of a batch (null: a request without a key) and says,
 * per request, what its key's owner makes of it. The first request of the batch with a given key is its
 * candidate owner; a key known before keeps its owner. Owning the key means the request is accepted: just
 * now, or by this same batch's first attempt, whose COMMIT landed before its answer was lost (the retried
 * transaction finds its own purchase id there). Two statements per batch, whatever its size.
 */
export async function resolveKeys(
  tx: Tx,
  keys: ReadonlyArray<StoredKey | null>,
): Promise<Array<KeyVerdict | null>> {
  // Stored forms hold no NUL (toDb), so NUL joins a key's parts unambiguously.
  const nameOf = (k: StoredKey) => `${k.eventId}\u0000${k.buyerId}\u0000${k.key}`;
  const candidates = new Map<string, StoredKey>();
  for (const k of keys) if (k && !candidates.has(nameOf(k))) candidates.set(nameOf(k), k);
  if (candidates.size === 0) return keys.map(() => null);
  const first = [...candidates.values()];
  const ids = [first.map((k) => k.eventId), first.map((k) => k.buyerId), first.map((k) => k.key)];
  await tx.query(KEY_SQL.insert, [...ids, first.map((k) => k.requestHash), first.map((k) => k.purchaseId)]);
  const owners = await tx.query<KeyRow>(KEY_SQL.read, ids);
  const ownerOf = new Map(owners.rows.map((r) => [`${r.event_id}\u0000${r.buyer_id}\u0000${r.key}`, r]));
  return keys.map((k): KeyVerdict | null => {
    if (!k) return null;
    const owner = ownerOf.get(nameOf(k))!;
    if (owner.purchase_id === k.purchaseId) return { status: 'owner' };
    return owner.request_hash === k.requestHash
      ? { status: 'duplicate', storedPurchaseId: owner.purchase_id }
      : { status: 'conflict' };
  });
}

/**
 * This process's appends to one queue (by `queue`: a database URL, with the RabbitMQ prefix for its index),
 * one after another. The advisory lock already makes them take turns in commit order; this also makes their
 * promises resolve in that order. PostgreSQL releases the lock inside COMMIT before the reply leaves, so
 * without it a second transaction could lock, append and commit, and its reply overtake the first's: the
 * contract's "concurrent writers" case saw adjacent swaps in 3 runs of 10 on a loaded machine (the table
 * queue), and in 1 of 5 (the RabbitMQ index). (Order across processes is the advisory lock's: a purchase
 * sent after another's 202 always comes later.) Group commit keeps one enqueue in flight per web server
 * anyway, so in production this costs nothing.
 */
const appendTurns = new Map<string, Promise<void>>();

export function inTurn<T>(queue: string, work: () => Promise<T>): Promise<T> {
  const result = (appendTurns.get(queue) ?? Promise.resolve()).then(work);
  const settled = result.then(
    () => undefined,
    () => undefined,
  );
  appendTurns.set(queue, settled);
  void settled.then(() => {
    if (appendTurns.get(queue) === settled) appendTurns.delete(queue);
  });
  return result;
}
