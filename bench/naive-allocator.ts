import type { Statement, Transaction } from 'better-sqlite3';
import { migrateSqlite, openSqlite, type SqliteDatabase } from '../src/adapters/sqlite/database.js';
import { newTickets } from '../src/shared/ids.js';
import type { PurchaseItem, RejectReason } from '../src/domain/types.js';

/** Thrown inside the nested transaction when a conditional stock update changes no row. */
class NotEnough extends Error {}

interface QueueEntry {
  seq: number;
  purchase_id: string;
  event_id: string;
  buyer_id: string;
  items: string;
  accepted_at: string;
}

interface StockRow {
  capacity: number;
  sold: number;
  held: number;
  max_per_buyer: number;
}

const SQL = {
  head: 'SELECT seq, purchase_id, event_id, buyer_id, items, accepted_at FROM queue_purchases ORDER BY seq LIMIT 1',
  remove: 'DELETE FROM queue_purchases WHERE seq = ?',
  subPending: 'UPDATE queue_events SET pending = pending - 1 WHERE event_id = ?',
  stock: 'SELECT capacity, sold, held, max_per_buyer FROM ticket_types WHERE id = ? AND event_id = ?',
  bought: 'SELECT quantity FROM buyer_tickets WHERE event_id = ? AND buyer_id = ? AND ticket_type_id = ?',
  sell: 'UPDATE ticket_types SET sold = sold + ? WHERE id = ? AND sold + held + ? <= capacity',
  insertPurchase:
    'INSERT INTO purchases (id, event_id, buyer_id, status, reason, items, tickets, hold_expires_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)',
  insertCode: 'INSERT INTO ticket_codes (code) VALUES (?)',
  addCount:
    'INSERT INTO purchase_counts (event_id, status, n) VALUES (?, ?, 1) ON CONFLICT (event_id, status) DO UPDATE SET n = n + 1',
  addBought:
    'INSERT INTO buyer_tickets (event_id, buyer_id, ticket_type_id, quantity) VALUES (?, ?, ?, ?) ON CONFLICT (event_id, buyer_id, ticket_type_id) DO UPDATE SET quantity = quantity + excluded.quantity',
} as const;

/**
 * The baseline of the allocation benchmark: the allocator one would write first. Each purchase is one
 * transaction that takes the oldest entry off the queue table, allocates it and removes it, on the same
 * schema and connection settings (openSqlite: WAL, synchronous=FULL) as the real worker. It is correct, not
 * slowed on purpose: a purchase is all or nothing, the stock update is conditional so it can never oversell,
 * the per-buyer limit is checked, and taking the entry off the queue in the same transaction makes each
 * purchase take effect exactly once. What it lacks is batching: one commit, so one fsync, per purchase.
 */
export class NaiveAllocator {
  readonly #db: SqliteDatabase;
  readonly #stmt: Record<keyof typeof SQL, Statement>;
  readonly #allocate: Transaction<() => boolean>;

  constructor(url: string) {
    this.#db = openSqlite(url);
    migrateSqlite(this.#db, 'storage');
    migrateSqlite(this.#db, 'queue');
    const db = this.#db;
    this.#stmt = Object.fromEntries(
      Object.entries(SQL).map(([name, sql]) => [name, db.prepare(sql)]),
    ) as Record<keyof typeof SQL, Statement>;
    this.#stmt.bought.pluck();
    const s = this.#stmt;

    // Nested in the transaction below, so a failure rolls back to a savepoint: all items or none.
    const sellAll = db.transaction((items: readonly PurchaseItem[]) => {
      for (const item of items) {
        if (s.sell.run(item.quantity, item.ticketTypeId, item.quantity).changes !== 1) throw new NotEnough();
      }
    });

    this.#allocate = db.transaction((): boolean => {
      const entry = s.head.get() as QueueEntry | undefined;
      if (!entry) return false;
      const items = JSON.parse(entry.items) as PurchaseItem[];
      let reason = this.#overLimit(entry, items);
      if (!reason) {
        try {
          sellAll(items);
        } catch (error) {
          if (!(error instanceof NotEnough)) throw error;
          reason = this.#shortage(entry.event_id, items);
        }
      }
      // The same rows as the worker's storage writes (schema 0002): tickets in the purchase row, each code
      // in ticket_codes, the count per status and the buyer's totals.
      const now = new Date().toISOString();
      const status = reason ? 'rejected' : 'confirmed';
      const fresh = reason ? [] : newTickets(items.reduce((sum, i) => sum + i.quantity, 0));
      const tickets = items.flatMap((item) =>
        fresh.splice(0, item.quantity).map((t) => ({ ...t, ticketTypeId: item.ticketTypeId })),
      );
      s.insertPurchase.run(
        entry.purchase_id,
        entry.event_id,
        entry.buyer_id,
        status,
        reason,
        entry.items,
        JSON.stringify(tickets),
        entry.accepted_at,
        now,
      );
      for (const t of tickets) s.insertCode.run(t.code);
      s.addCount.run(entry.event_id, status);
      if (!reason) {
        for (const item of items)
          s.addBought.run(entry.event_id, entry.buyer_id, item.ticketTypeId, item.quantity);
      }
      s.remove.run(entry.seq);
      s.subPending.run(entry.event_id);
      return true;
    });
  }

  /** Allocates the oldest queued purchase in its own transaction; false when the queue is empty. */
  allocateNext(): boolean {
    return this.#allocate.immediate();
  }

  close(): void {
    this.#db.close();
  }

  #overLimit(entry: QueueEntry, items: readonly PurchaseItem[]): RejectReason | null {
    for (const item of items) {
      const type = this.#stmt.stock.get(item.ticketTypeId, entry.event_id) as StockRow | undefined;
      if (!type) throw new Error(`ticket type ${item.ticketTypeId} is not part of event ${entry.event_id}`);
      const already = (this.#stmt.bought.get(entry.event_id, entry.buyer_id, item.ticketTypeId) ??
        0) as number;
      if (already + item.quantity > type.max_per_buyer) return 'limit_exceeded';
    }
    return null;
  }

  /** Why the conditional update refused, with the same precedence as the real allocator. */
  #shortage(eventId: string, items: readonly PurchaseItem[]): RejectReason {
    for (const item of items) {
      const t = this.#stmt.stock.get(item.ticketTypeId, eventId) as StockRow;
      if (t.capacity - t.sold - t.held <= 0) return 'sold_out';
    }
    return 'insufficient_inventory';
  }
}
