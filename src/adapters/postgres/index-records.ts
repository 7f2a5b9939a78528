import { withCanonicalBuyerId } from '../../domain/buyer.js';
import { UnavailableError } from '../../domain/errors.js';
import type { AcceptedPurchase } from '../../domain/types.js';
import type { EnqueueRequest, EnqueueResult } from '../../ports/queue.js';
import { toDb, type PostgresDatabase, type Tx } from './database.js';
import {
  buryPurchases,
  DEAD_LETTER_SQL,
  resolveKeys,
  takeBackDeadLetters,
  toPurchase,
  type PurchaseRow,
} from './queue-records.js';

/**
 * What the two indexes kept in PostgreSQL share beyond queue-records.ts: the RabbitMQ queue's index
 * (PostgresIndex) and the SQS queue's (SqsIndex). Each keeps its queued purchases in a table of its own
 * (purchase_id, seq, payload: the purchase as JSON), with statements of its own, and shares the idempotency
 * keys and dead letters with the table queue. Unlike the table queue, an index stores event and purchase ids
 * as they are: this server makes them, and toDb() leaves them unchanged.
 */

/** A queued purchase from its payload (the buyer's canonical id is derived again, as toPurchase does). */
export function parsePayload(payload: string): AcceptedPurchase {
  return withCanonicalBuyerId(JSON.parse(payload) as AcceptedPurchase);
}

/** A purchase as the shared dead-letter table stores it: ids as they are, client text as toDb() writes it. */
function toRow(purchase: AcceptedPurchase): PurchaseRow {
  return {
    purchase_id: purchase.purchaseId,
    event_id: purchase.eventId,
    buyer_id: toDb(purchase.buyerId),
    items: JSON.stringify(purchase.items),
    accepted_at: purchase.acceptedAt,
  };
}

/**
 * Keys first seen in this batch are recorded for their first purchase; a key met again, in this batch or
 * before, answers duplicate (same body) or conflict; the others are accepted. Inside the enqueue
 * transaction, under the index's append lock.
 */
export async function resolveRequestKeys(
  tx: Tx,
  requests: readonly EnqueueRequest[],
): Promise<EnqueueResult[]> {
  const verdicts = await resolveKeys(
    tx,
    requests.map(({ purchase, idempotency }) =>
      idempotency
        ? {
            eventId: purchase.eventId,
            buyerId: toDb(purchase.canonicalBuyerId),
            key: toDb(idempotency.key),
            requestHash: idempotency.requestHash,
            purchaseId: purchase.purchaseId,
          }
        : null,
    ),
  );
  return verdicts.map((verdict, i): EnqueueResult => {
    if (verdict?.status === 'duplicate') return { status: 'duplicate', purchaseId: verdict.storedPurchaseId };
    if (verdict?.status === 'conflict') return { status: 'conflict' };
    return { status: 'accepted', purchaseId: requests[i]!.purchase.purchaseId };
  });
}

/**
 * Moves queued purchases to the dead letters with `reason`, in one transaction. `takeForBurial` is the
 * index's statement that deletes the queued purchases $1 (and whatever it keeps beside them) and returns
 * seq, payload of those deleted.
 */
export async function buryQueued(
  db: PostgresDatabase,
  takeForBurial: string,
  purchaseIds: readonly string[],
  reason: string,
): Promise<void> {
  if (purchaseIds.length === 0) return;
  await db.transaction(async (tx) => {
    const taken = await tx.query<{ seq: number; payload: string }>(takeForBurial, [purchaseIds]);
    const buried = taken.rows.map((r) => ({ ...toRow(parsePayload(r.payload)), seq: r.seq }));
    await buryPurchases(tx, buried, toDb(reason));
  });
}

/**
 * Inside the transaction that puts them back on the index: takes out the dead letters named (all when
 * undefined), oldest first, as purchases.
 */
export async function takeBackPurchases(
  tx: Tx,
  purchaseIds: readonly string[] | undefined,
): Promise<AcceptedPurchase[]> {
  const rows = await takeBackDeadLetters(tx, purchaseIds ?? null);
  return rows.map(toPurchase);
}

/**
 * The statement of findQueuedOrDead over the index's table `purchases`: purchase $1, queued (payload) or
 * dead (the purchase columns of queue_dead_letters), or no row. One statement: one snapshot, so a purchase
 * buried meanwhile is found on one side or the other.
 */
export function findQueuedOrDeadSql(purchases: string): string {
  return `SELECT payload, NULL AS purchase_id, NULL AS event_id, NULL AS buyer_id, NULL AS items, NULL AS accepted_at
    FROM ${purchases} WHERE purchase_id = $1
    UNION ALL
    SELECT NULL, * FROM (${DEAD_LETTER_SQL.find}) d
    LIMIT 1`;
}

/** The purchase, queued or dead, or null; `find` is the index's findQueuedOrDeadSql. */
export async function findQueuedOrDead(
  db: PostgresDatabase,
  find: string,
  purchaseId: string,
): Promise<AcceptedPurchase | null> {
  const rows = await db.query<{ payload: string | null } & PurchaseRow>(find, [purchaseId]);
  const row = rows.rows[0];
  if (!row) return null;
  return row.payload === null ? toPurchase(row) : parsePayload(row.payload);
}

/**
 * Takes a lock under the transaction's lock_timeout. A timeout (55P03) means its holder keeps it far longer
 * than it may: the index is unavailable (`holderTooLong` says who holds what). Other errors pass as they are.
 */
export async function lockOrUnavailable(take: () => Promise<unknown>, holderTooLong: string): Promise<void> {
  try {
    await take();
  } catch (error) {
    if ((error as { code?: unknown }).code === '55P03') throw new UnavailableError(holderTooLong, error);
    throw error;
  }
}
