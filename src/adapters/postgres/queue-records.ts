import type { Tx } from './database.js';

/**
 * What the queues kept in PostgreSQL share: the table queue (PostgresQueue) and the RabbitMQ queue's index
 * (PostgresIndex) each keep idempotency keys in a table of their own, with the same columns and the same
 * rules, and both order their appends the same way. These live here once.
 */

/** The two statements over one idempotency-key table (columns event_id, buyer_id, key, request_hash, purchase_id). */
interface KeyStatements {
  /**
   * Records keys not seen before; a key already there (from an earlier batch) is left alone. One array per
   * column: $1 event ids, $2 buyer ids, $3 keys, $4 request hashes, $5 purchase ids. Returns nothing
   * (`read` tells who owns each key).
   */
  insert: string;
  /** The owner of each (event id $1[i], buyer id $2[i], key $3[i]): event_id, buyer_id, key, request_hash, purchase_id. */
  read: string;
}

function keyStatements(table: string): KeyStatements {
  return {
    insert: `INSERT INTO ${table} (event_id, buyer_id, key, request_hash, purchase_id)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
    ON CONFLICT (event_id, buyer_id, key) DO NOTHING`,
    read: `SELECT k.event_id, k.buyer_id, k.key, k.request_hash, k.purchase_id
    FROM ${table} k
    JOIN unnest($1::text[], $2::text[], $3::text[]) AS u (event_id, buyer_id, key) USING (event_id, buyer_id, key)`,
  };
}

/** The table queue's keys (queue migration 0001). */
export const QUEUE_KEYS = keyStatements('idempotency_keys');
/** The RabbitMQ index's keys (rabbitmq migration 0001). */
export const RABBITMQ_KEYS = keyStatements('rabbitmq_idempotency_keys');

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
  statements: KeyStatements,
  keys: ReadonlyArray<StoredKey | null>,
): Promise<Array<KeyVerdict | null>> {
  // Stored forms hold no NUL (toDb), so NUL joins a key's parts unambiguously.
  const nameOf = (k: StoredKey) => `${k.eventId}\u0000${k.buyerId}\u0000${k.key}`;
  const candidates = new Map<string, StoredKey>();
  for (const k of keys) if (k && !candidates.has(nameOf(k))) candidates.set(nameOf(k), k);
  if (candidates.size === 0) return keys.map(() => null);
  const first = [...candidates.values()];
  const ids = [first.map((k) => k.eventId), first.map((k) => k.buyerId), first.map((k) => k.key)];
  await tx.query(statements.insert, [
    ...ids,
    first.map((k) => k.requestHash),
    first.map((k) => k.purchaseId),
  ]);
  const owners = await tx.query<KeyRow>(statements.read, ids);
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
