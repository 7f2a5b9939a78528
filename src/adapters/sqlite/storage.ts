import { buyerKey, type StockLevel } from '../../domain/allocation.js';
import { canonicalBuyerId, type BuyerIdKind } from '../../domain/buyer.js';
import { pendingBuyers, planBatch } from '../../domain/batch.js';
import { newId, newTickets } from '../../shared/ids.js';
import type {
  AcceptedPurchase,
  EventStats,
  NewEvent,
  Purchase,
  PurchaseItem,
  PurchaseStatus,
  RejectReason,
  SaleEvent,
  Ticket,
  TicketType,
  WaitingRoomSettings,
} from '../../domain/types.js';
import type { BatchResult, Storage } from '../../ports/storage.js';
import type { Statement } from 'better-sqlite3';
import { guarded, migrateSqlite, openSqlite, prepareAll, type SqliteDatabase } from './database.js';

interface TicketTypeRow {
  id: string;
  name: string;
  price_cents: number;
  capacity: number;
  max_per_buyer: number;
  sold: number;
  held: number;
}

interface PurchaseRow {
  id: string;
  event_id: string;
  buyer_id: string;
  status: Exclude<PurchaseStatus, 'queued'>;
  reason: RejectReason | null;
  items: string;
  tickets: string;
  hold_expires_at: string | null;
  created_at: string;
  updated_at: string;
}

const SQL = {
  insertEvent:
    'INSERT INTO events (id, name, sales_open_at, hold_seconds, buyer_id_kind, waiting_room, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
  insertTicketType:
    'INSERT INTO ticket_types (id, event_id, position, name, price_cents, capacity, max_per_buyer) VALUES (?, ?, ?, ?, ?, ?, ?)',
  listEvents: 'SELECT id, name, sales_open_at FROM events ORDER BY sales_open_at, created_at, id',
  getEvent:
    'SELECT id, name, sales_open_at, hold_seconds, buyer_id_kind, waiting_room FROM events WHERE id = ?',
  ticketTypes:
    'SELECT id, name, price_cents, capacity, max_per_buyer, sold, held FROM ticket_types WHERE event_id = ? ORDER BY position',
  purchaseCounts: 'SELECT status, n FROM purchase_counts WHERE event_id = ?',
  getPurchase: 'SELECT * FROM purchases WHERE id = ?',
  statuses: 'SELECT id, status, updated_at FROM purchases WHERE id IN (SELECT value FROM json_each(?))',
  // No index serves these two (one per purchase would slow every allocation): they scan the table.
  listPurchases: 'SELECT * FROM purchases WHERE event_id = ? ORDER BY created_at DESC, id DESC LIMIT ?',
  // By the canonical buyer id, or the id as typed (purchases from before buyer_key was computed exactly).
  matchPurchases:
    'SELECT * FROM purchases WHERE event_id = ? AND (buyer_key = ? OR buyer_id = ? OR id = ?) ORDER BY created_at DESC, id DESC LIMIT ?',
  alreadyApplied: 'SELECT id FROM purchases WHERE id IN (SELECT value FROM json_each(?))',
  boughtByBuyers:
    'SELECT buyer_id, ticket_type_id, quantity FROM buyer_tickets WHERE event_id = ? AND buyer_id IN (SELECT value FROM json_each(?))',
  insertPurchase:
    'INSERT INTO purchases (id, event_id, buyer_id, buyer_key, status, reason, items, tickets, hold_expires_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)',
  // A duplicate code (128 random bits: it will not happen) fails the batch rather than pass silently.
  insertCode: 'INSERT INTO ticket_codes (code) VALUES (?)',
  addCount:
    'INSERT INTO purchase_counts (event_id, status, n) VALUES (?, ?, ?) ON CONFLICT (event_id, status) DO UPDATE SET n = n + excluded.n',
  addBought:
    'INSERT INTO buyer_tickets (event_id, buyer_id, ticket_type_id, quantity) VALUES (?, ?, ?, ?) ON CONFLICT (event_id, buyer_id, ticket_type_id) DO UPDATE SET quantity = quantity + excluded.quantity',
  // Conditional: a commit that would oversell changes no row, and the batch is rolled back.
  sell: 'UPDATE ticket_types SET sold = sold + ? WHERE id = ? AND sold + held + ? <= capacity',
} as const;

/** Storage on one SQLite file (the embedded default). */
export class SqliteStorage implements Storage {
  readonly #db: SqliteDatabase;
  readonly #stmt: Record<keyof typeof SQL, Statement>;

  constructor(url: string) {
    this.#db = guarded(() => openSqlite(url));
    migrateSqlite(this.#db, 'storage');
    this.#stmt = prepareAll(this.#db, SQL);
    this.#stmt.alreadyApplied.pluck();
  }

  async migrate(): Promise<void> {
    guarded(() => migrateSqlite(this.#db, 'storage'));
  }

  async createEvent(input: NewEvent): Promise<SaleEvent> {
    const event: SaleEvent = {
      id: newId(),
      name: input.name,
      salesOpenAt: input.salesOpenAt,
      holdSeconds: input.holdSeconds,
      buyerIdKind: input.buyerIdKind ?? 'any',
      ticketTypes: input.ticketTypes.map((t) => ({ id: newId(), ...t })),
      waitingRoom: input.waitingRoom ?? null,
    };
    const s = this.#stmt;
    guarded(() =>
      this.#db
        .transaction(() => {
          s.insertEvent.run(
            event.id,
            event.name,
            event.salesOpenAt,
            event.holdSeconds,
            event.buyerIdKind,
            event.waitingRoom && JSON.stringify(event.waitingRoom),
            new Date().toISOString(),
          );
          event.ticketTypes.forEach((t, i) =>
            s.insertTicketType.run(t.id, event.id, i, t.name, t.priceCents, t.capacity, t.maxPerBuyer),
          );
        })
        .immediate(),
    );
    return event;
  }

  async listEvents(): Promise<Array<Pick<SaleEvent, 'id' | 'name' | 'salesOpenAt'>>> {
    const rows = guarded(() => this.#stmt.listEvents.all()) as Array<{
      id: string;
      name: string;
      sales_open_at: string;
    }>;
    return rows.map((r) => ({ id: r.id, name: r.name, salesOpenAt: r.sales_open_at }));
  }

  async getEvent(eventId: string): Promise<SaleEvent | null> {
    const row = guarded(() => this.#stmt.getEvent.get(eventId)) as
      | {
          id: string;
          name: string;
          sales_open_at: string;
          hold_seconds: number;
          buyer_id_kind: BuyerIdKind;
          waiting_room: string | null;
        }
      | undefined;
    if (!row) return null;
    const types = guarded(() => this.#stmt.ticketTypes.all(eventId)) as TicketTypeRow[];
    return {
      id: row.id,
      name: row.name,
      salesOpenAt: row.sales_open_at,
      holdSeconds: row.hold_seconds,
      buyerIdKind: row.buyer_id_kind,
      ticketTypes: types.map((t): TicketType => ({
        id: t.id,
        name: t.name,
        priceCents: t.price_cents,
        capacity: t.capacity,
        maxPerBuyer: t.max_per_buyer,
      })),
      waitingRoom: row.waiting_room === null ? null : (JSON.parse(row.waiting_room) as WaitingRoomSettings),
    };
  }

  async getAvailability(eventId: string): Promise<Map<string, number>> {
    const types = guarded(() => this.#stmt.ticketTypes.all(eventId)) as TicketTypeRow[];
    return new Map(types.map((t) => [t.id, t.capacity - t.sold - t.held]));
  }

  async getStats(eventId: string): Promise<EventStats | null> {
    // One read transaction, so stock and counts are one consistent snapshot.
    return guarded(() =>
      this.#db.transaction((): EventStats | null => {
        if (!this.#stmt.getEvent.get(eventId)) return null;
        const types = this.#stmt.ticketTypes.all(eventId) as TicketTypeRow[];
        const counts = this.#stmt.purchaseCounts.all(eventId) as Array<{ status: PurchaseStatus; n: number }>;
        const purchases: Record<PurchaseStatus, number> = {
          queued: 0,
          held: 0,
          confirmed: 0,
          rejected: 0,
          expired: 0,
          cancelled: 0,
        };
        for (const c of counts) purchases[c.status] = c.n;
        return {
          eventId,
          ticketTypes: types.map((t) => ({
            id: t.id,
            capacity: t.capacity,
            sold: t.sold,
            held: t.held,
            available: t.capacity - t.sold - t.held,
          })),
          purchases,
        };
      })(),
    );
  }

  async getPurchase(purchaseId: string): Promise<Purchase | null> {
    const row = guarded(() => this.#stmt.getPurchase.get(purchaseId)) as PurchaseRow | undefined;
    return row ? fromRow(row) : null;
  }

  async listPurchases(eventId: string, options: { match?: string; limit: number }): Promise<Purchase[]> {
    const { match, limit } = options;
    const rows = guarded(() =>
      match === undefined
        ? this.#stmt.listPurchases.all(eventId, limit)
        : this.#stmt.matchPurchases.all(eventId, canonicalBuyerId(match), match, match, limit),
    ) as PurchaseRow[];
    return rows.map(fromRow);
  }

  async getStatuses(
    purchaseIds: readonly string[],
  ): Promise<Map<string, { status: PurchaseStatus; updatedAt: string }>> {
    const rows = guarded(() => this.#stmt.statuses.all(JSON.stringify(purchaseIds))) as Array<{
      id: string;
      status: PurchaseStatus;
      updated_at: string;
    }>;
    return new Map(rows.map((r) => [r.id, { status: r.status, updatedAt: r.updated_at }]));
  }

  async applyBatch(eventId: string, purchases: readonly AcceptedPurchase[]): Promise<BatchResult> {
    const s = this.#stmt;
    const apply = this.#db.transaction((): BatchResult['outcomes'] => {
      const ids = JSON.stringify(purchases.map((p) => p.purchaseId));
      const applied = new Set(s.alreadyApplied.all(ids) as string[]);
      const buyers = pendingBuyers(purchases, applied);
      if (buyers.length === 0) return [];

      const stock = new Map<string, StockLevel>();
      for (const t of s.ticketTypes.all(eventId) as TicketTypeRow[]) {
        stock.set(t.id, { capacity: t.capacity, sold: t.sold, held: t.held, maxPerBuyer: t.max_per_buyer });
      }
      const bought = new Map<string, number>();
      const boughtRows = s.boughtByBuyers.all(eventId, JSON.stringify(buyers)) as Array<{
        buyer_id: string;
        ticket_type_id: string;
        quantity: number;
      }>;
      for (const r of boughtRows) bought.set(buyerKey(r.buyer_id, r.ticket_type_id), r.quantity);

      const plan = planBatch(purchases, applied, stock, bought, newTickets);
      const now = new Date().toISOString();
      for (const decision of plan.decisions) {
        const p = decision.purchase;
        const confirmed = decision.outcome === 'confirmed';
        s.insertPurchase.run(
          p.purchaseId,
          eventId,
          p.buyerId,
          p.canonicalBuyerId,
          decision.outcome,
          confirmed ? null : decision.reason,
          JSON.stringify(p.items),
          confirmed ? JSON.stringify(decision.tickets) : '[]',
          p.acceptedAt,
          now,
        );
        if (confirmed) for (const t of decision.tickets) s.insertCode.run(t.code);
      }
      for (const b of plan.bought.values()) s.addBought.run(eventId, b.buyerId, b.ticketTypeId, b.quantity);
      if (plan.confirmed > 0) s.addCount.run(eventId, 'confirmed', plan.confirmed);
      if (plan.rejected > 0) s.addCount.run(eventId, 'rejected', plan.rejected);
      for (const [typeId, quantity] of plan.sold) {
        if (s.sell.run(quantity, typeId, quantity).changes !== 1) {
          throw new Error(`allocation would oversell ticket type ${typeId}; batch rolled back`);
        }
      }
      return plan.outcomes;
    });
    const outcomes = guarded(() => apply.immediate());
    return { applied: outcomes.length, outcomes };
  }

  async ping(): Promise<void> {
    guarded(() => this.#db.prepare('SELECT 1').get());
  }

  async close(): Promise<void> {
    this.#db.close();
  }
}

function fromRow(row: PurchaseRow): Purchase {
  return {
    purchaseId: row.id,
    eventId: row.event_id,
    buyerId: row.buyer_id,
    status: row.status,
    reason: row.reason,
    items: JSON.parse(row.items) as PurchaseItem[],
    tickets: JSON.parse(row.tickets) as Ticket[],
    holdExpiresAt: row.hold_expires_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
