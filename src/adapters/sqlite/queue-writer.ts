import type { Statement } from 'better-sqlite3';
import type { EnqueueRequest, EnqueueResult } from '../../ports/queue.js';
import { prepareAll, withoutBlockingOnLock, type SqliteDatabase } from './database.js';
import { KEY_SQL } from './queue-records.js';

/** The statements that add to the queue (enqueue here; replaying dead letters in queue.ts). */
export const ENQUEUE_SQL = {
  insert:
    'INSERT INTO queue_purchases (purchase_id, event_id, buyer_id, items, accepted_at) VALUES (?, ?, ?, ?, ?)',
  addPending:
    'INSERT INTO queue_events (event_id, pending) VALUES (?, ?) ON CONFLICT (event_id) DO UPDATE SET pending = pending + excluded.pending',
} as const;

const SQL = { ...KEY_SQL, ...ENQUEUE_SQL } as const;

/** The enqueue transaction (Queue.enqueue) on one connection: one commit, one fsync, for the whole group. */
export class QueueWriter {
  readonly #db: SqliteDatabase;
  readonly #write: (requests: readonly EnqueueRequest[]) => EnqueueResult[];

  constructor(db: SqliteDatabase) {
    this.#db = db;
    const s: Record<keyof typeof SQL, Statement> = prepareAll(db, SQL);
    this.#write = db.transaction((requests: readonly EnqueueRequest[]): EnqueueResult[] => {
      const now = new Date().toISOString();
      const perEvent = new Map<string, number>();
      const results = requests.map(({ purchase: p, idempotency }): EnqueueResult => {
        if (idempotency) {
          const seen = s.findKey.get(p.eventId, p.canonicalBuyerId, idempotency.key) as
            { request_hash: string; purchase_id: string } | undefined;
          if (seen) {
            return seen.request_hash === idempotency.requestHash
              ? { status: 'duplicate', purchaseId: seen.purchase_id }
              : { status: 'conflict' };
          }
          s.insertKey.run(
            p.eventId,
            p.canonicalBuyerId,
            idempotency.key,
            idempotency.requestHash,
            p.purchaseId,
            now,
          );
        }
        s.insert.run(p.purchaseId, p.eventId, p.buyerId, JSON.stringify(p.items), p.acceptedAt);
        perEvent.set(p.eventId, (perEvent.get(p.eventId) ?? 0) + 1);
        return { status: 'accepted', purchaseId: p.purchaseId };
      });
      for (const [eventId, count] of perEvent) s.addPending.run(eventId, count);
      return results;
    }).immediate;
  }

  write(requests: readonly EnqueueRequest[]): Promise<EnqueueResult[]> {
    // Waits for another connection's commit without blocking this thread's event loop.
    return withoutBlockingOnLock(this.#db, () => this.#write(requests));
  }
}
