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
  WaitingRoomSettings,
} from '../../domain/types.js';
import type { BatchResult, Storage } from '../../ports/storage.js';
import { fromDb, migratePostgres, PostgresDatabase, toDb, type Tx } from './database.js';

interface TicketTypeRow {
  id: string;
  name: string;
  price_cents: number;
  capacity: number;
  max_per_buyer: number;
  sold: number;
  held: number;
}

interface TicketRow {
  id: string;
  ticket_type_id: string;
  code: string;
}

interface PurchaseRow {
  id: string;
  event_id: string;
  buyer_id: string;
  status: Exclude<PurchaseStatus, 'queued'>;
  reason: RejectReason | null;
  items: string;
  hold_expires_at: string | null;
  created_at: string;
  updated_at: string;
}

/**
 * The statements of the storage adapter. Each says what it returns and what its parameters are. Lists
 * travel as arrays (`= ANY($1)`, `unnest($1, $2, …)`): one statement per batch, never one per row.
 */
const SQL = {
  /**
   * Adds an event; a retry of a committed attempt does nothing. $1 id, $2 name, $3 sales_open_at,
   * $4 hold_seconds, $5 buyer_id_kind, $6 waiting_room (JSON or null).
   */
  insertEvent: `INSERT INTO events (id, name, sales_open_at, hold_seconds, buyer_id_kind, waiting_room)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (id) DO NOTHING`,
  /**
   * Adds an event's ticket types, positioned in array order. $1 event id, then one array per column:
   * $2 ids, $3 names, $4 price_cents, $5 capacities, $6 max_per_buyer.
   */
  insertTicketTypes: `INSERT INTO ticket_types (id, event_id, position, name, price_cents, capacity, max_per_buyer)
    SELECT t.id, $1, t.n - 1, t.name, t.price_cents, t.capacity, t.max_per_buyer
    FROM unnest($2::text[], $3::text[], $4::bigint[], $5::integer[], $6::integer[])
      WITH ORDINALITY AS t (id, name, price_cents, capacity, max_per_buyer, n)
    ON CONFLICT (id) DO NOTHING`,
  /** Every event: id, name, sales_open_at, soonest sale first. No parameters. */
  listEvents: 'SELECT id, name, sales_open_at FROM events ORDER BY sales_open_at, created_at, id',
  /** The event $1 (id, name, sales_open_at, hold_seconds, buyer_id_kind), or no row. */
  getEvent:
    'SELECT id, name, sales_open_at, hold_seconds, buyer_id_kind, waiting_room FROM events WHERE id = $1',
  /** The ticket types of event $1 with their stock, in the order they were given. */
  ticketTypes: `SELECT id, name, price_cents, capacity, max_per_buyer, sold, held FROM ticket_types
    WHERE event_id = $1 ORDER BY position`,
  /** Tickets left per ticket type of event $1: id, available. */
  availability: 'SELECT id, capacity - sold - held AS available FROM ticket_types WHERE event_id = $1',
  /** Purchases of event $1 per status: status, n. */
  purchaseCounts: 'SELECT status, count(*) AS n FROM purchases WHERE event_id = $1 GROUP BY status',
  /** The purchase $1, or no row. */
  getPurchase: `SELECT id, event_id, buyer_id, status, reason, items, hold_expires_at, created_at, updated_at
    FROM purchases WHERE id = $1`,
  /** The tickets of purchase $1 (id, ticket_type_id, code), in the order they were issued. */
  ticketsOf: 'SELECT id, ticket_type_id, code FROM tickets WHERE purchase_id = $1 ORDER BY position',
  /**
   * The latest purchases of event $1, newest accepted first, at most $3; when $2 is not null, only those
   * whose id or buyer_id is $2 or whose canonical buyer id (buyer_key) is $4. For the admin page: past the
   * event_id index it filters and sorts.
   */
  listPurchases: `SELECT id, event_id, buyer_id, status, reason, items, hold_expires_at, created_at, updated_at
    FROM purchases WHERE event_id = $1 AND ($2::text IS NULL OR buyer_key = $4 OR buyer_id = $2 OR id = $2)
    ORDER BY created_at DESC, id DESC LIMIT $3`,
  /** The tickets (purchase_id, id, ticket_type_id, code) of the purchases $1, each purchase's in issue order. */
  ticketsOfMany: `SELECT purchase_id, id, ticket_type_id, code FROM tickets WHERE purchase_id = ANY($1::text[])
    ORDER BY purchase_id, position`,
  /** Status and last change (id, status, updated_at) of the purchases among ids $1 that are stored. */
  statuses: 'SELECT id, status, updated_at FROM purchases WHERE id = ANY($1::text[])',
  /**
   * Locks the stock of event $1 for the rest of the transaction and returns it. Taken first in applyBatch:
   * it serializes every allocation of one event (a second worker, if a lease ran out, waits here), and
   * locking in id order means two transactions can never wait on each other in a cycle.
   */
  lockStock: `SELECT id, capacity, sold, held, max_per_buyer FROM ticket_types
    WHERE event_id = $1 ORDER BY id FOR UPDATE`,
  /** Which of the purchase ids $1 are already applied (a redelivered batch). Returns id. */
  alreadyApplied: 'SELECT id FROM purchases WHERE id = ANY($1::text[])',
  /** Tickets the buyers $2 already hold or bought per ticket type of event $1: buyer_id, ticket_type_id, quantity. */
  boughtByBuyers: `SELECT buyer_id, ticket_type_id, quantity FROM buyer_tickets
    WHERE event_id = $1 AND buyer_id = ANY($2::text[])`,
  /**
   * Records decided purchases of event $1, updated at $2. One array per column: $3 ids, $4 buyer ids (as
   * typed), $5 statuses, $6 reasons (null when confirmed), $7 items (JSON), $8 created_at (acceptance
   * time), $9 canonical buyer ids.
   */
  insertPurchases: `INSERT INTO purchases (id, event_id, buyer_id, buyer_key, status, reason, items, created_at, updated_at)
    SELECT p.id, $1, p.buyer_id, p.buyer_key, p.status, p.reason, p.items, p.created_at, $2
    FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
      AS p (id, buyer_id, status, reason, items, created_at, buyer_key)`,
  /** Issues tickets. One array per column: $1 ids, $2 purchase ids, $3 positions, $4 ticket type ids, $5 codes. */
  insertTickets: `INSERT INTO tickets (id, purchase_id, position, ticket_type_id, code)
    SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::text[], $5::text[])`,
  /**
   * Starts buyers' totals of event $1 for (buyer, ticket type) pairs that have none yet. One array per
   * column: $2 buyer ids, $3 ticket type ids, $4 quantities.
   *
   * Not an upsert: boughtByBuyers has just read which pairs exist, under the event's lock (every writer of
   * an event's totals holds it), so new and existing pairs go to a plain INSERT and an UPDATE. Measured:
   * INSERT … ON CONFLICT DO UPDATE (speculative insertion) took 10–15 ms per 500 rows where a plain
   * INSERT took ~2 ms.
   */
  insertBought: `INSERT INTO buyer_tickets (event_id, buyer_id, ticket_type_id, quantity)
    SELECT $1, * FROM unnest($2::text[], $3::text[], $4::integer[])`,
  /**
   * Adds to existing totals of event $1: $4[i] more tickets of type $3[i] for buyer $2[i]. Returns nothing.
   */
  addBought: `UPDATE buyer_tickets b SET quantity = b.quantity + u.quantity
    FROM unnest($2::text[], $3::text[], $4::integer[]) AS u (buyer_id, ticket_type_id, quantity)
    WHERE b.event_id = $1 AND b.buyer_id = u.buyer_id AND b.ticket_type_id = u.ticket_type_id`,
  /**
   * Sells $2[i] more tickets of type $1[i], for every i at once, each only if it fits: a type that would
   * oversell is not updated, so the affected row count tells (the caller rolls back when it is short).
   */
  sell: `UPDATE ticket_types t SET sold = t.sold + s.quantity
    FROM unnest($1::text[], $2::integer[]) AS s (id, quantity)
    WHERE t.id = s.id AND t.sold + t.held + s.quantity <= t.capacity`,
} as const;

/**
 * Storage on PostgreSQL, through a node-postgres pool (`postgres://…?max=N` sets its size).
 *
 * applyBatch is the hot path: one transaction per batch of up to --batch-size purchases, a fixed number of
 * statements whatever the batch holds, so the commit (its WAL flush) and the round trips are paid once per
 * batch. Measured on the development machine (2 cores, PostgreSQL 15 on the same host, fsync on, shared
 * with other work at a load average of 4–9, purchases of 2 tickets; `npm run bench -- --only postgres`): the
 * worker loop allocated 4,000–6,600 purchases/s in batches of 500 and ~9,000/s in batches of 2,000,
 * against 117–210/s for a naive allocator taking one purchase per transaction. What is left is per row:
 * about 85 µs per purchase, two thirds of it in PostgreSQL (4 rows and 7 index entries per purchase).
 */
export class PostgresStorage implements Storage {
  readonly #db: PostgresDatabase;
  readonly #newEventId: () => string;

  /**
   * `newEventId` makes the ids of created events (a sharded storage tags them with their shard);
   * `retry: false` is for a read replica (PostgresDatabase).
   */
  constructor(url: string, options: { newEventId?: () => string; retry?: boolean } = {}) {
    this.#db = new PostgresDatabase(url, {}, { retry: options.retry ?? true });
    this.#newEventId = options.newEventId ?? newId;
  }

  async migrate(): Promise<void> {
    await migratePostgres(this.#db, 'storage');
  }

  async createEvent(input: NewEvent): Promise<SaleEvent> {
    const event: SaleEvent = {
      id: this.#newEventId(),
      name: input.name,
      salesOpenAt: input.salesOpenAt,
      holdSeconds: input.holdSeconds,
      buyerIdKind: input.buyerIdKind ?? 'any',
      ticketTypes: input.ticketTypes.map((t) => ({ id: newId(), ...t })),
      waitingRoom: input.waitingRoom ?? null,
    };
    const types = event.ticketTypes;
    await this.#db.transaction(async (tx) => {
      await tx.query(SQL.insertEvent, [
        event.id,
        toDb(event.name),
        event.salesOpenAt,
        event.holdSeconds,
        event.buyerIdKind,
        event.waitingRoom && JSON.stringify(event.waitingRoom),
      ]);
      await tx.query(SQL.insertTicketTypes, [
        event.id,
        types.map((t) => t.id),
        types.map((t) => toDb(t.name)),
        types.map((t) => t.priceCents),
        types.map((t) => t.capacity),
        types.map((t) => t.maxPerBuyer),
      ]);
    });
    return event;
  }

  async listEvents(): Promise<Array<Pick<SaleEvent, 'id' | 'name' | 'salesOpenAt'>>> {
    const { rows } = await this.#db.query<{ id: string; name: string; sales_open_at: string }>(
      SQL.listEvents,
    );
    return rows.map((r) => ({ id: fromDb(r.id), name: fromDb(r.name), salesOpenAt: r.sales_open_at }));
  }

  async getEvent(eventId: string): Promise<SaleEvent | null> {
    const id = toDb(eventId);
    const [event, types] = await Promise.all([
      this.#db.query<{
        id: string;
        name: string;
        sales_open_at: string;
        hold_seconds: number;
        buyer_id_kind: BuyerIdKind;
        waiting_room: WaitingRoomSettings | null;
      }>(SQL.getEvent, [id]),
      this.#db.query<TicketTypeRow>(SQL.ticketTypes, [id]),
    ]);
    const row = event.rows[0];
    if (!row) return null;
    return {
      id: fromDb(row.id),
      name: fromDb(row.name),
      salesOpenAt: row.sales_open_at,
      holdSeconds: row.hold_seconds,
      buyerIdKind: row.buyer_id_kind,
      ticketTypes: types.rows.map((t) => ({
        id: fromDb(t.id),
        name: fromDb(t.name),
        priceCents: t.price_cents,
        capacity: t.capacity,
        maxPerBuyer: t.max_per_buyer,
      })),
      waitingRoom: row.waiting_room,
    };
  }

  async getAvailability(eventId: string): Promise<Map<string, number>> {
    const { rows } = await this.#db.query<{ id: string; available: number }>(SQL.availability, [
      toDb(eventId),
    ]);
    return new Map(rows.map((r) => [fromDb(r.id), r.available]));
  }

  async getStats(eventId: string): Promise<EventStats | null> {
    const id = toDb(eventId);
    // One snapshot (REPEATABLE READ) for the three reads, so stock and counts agree with each other.
    return this.#db.transaction(async (tx): Promise<EventStats | null> => {
      if ((await tx.query(SQL.getEvent, [id])).rowCount === 0) return null;
      const types = await tx.query<TicketTypeRow>(SQL.ticketTypes, [id]);
      const counts = await tx.query<{ status: PurchaseStatus; n: number }>(SQL.purchaseCounts, [id]);
      const purchases: Record<PurchaseStatus, number> = {
        queued: 0,
        held: 0,
        confirmed: 0,
        rejected: 0,
        expired: 0,
        cancelled: 0,
      };
      for (const c of counts.rows) purchases[c.status] = c.n;
      return {
        eventId,
        ticketTypes: types.rows.map((t) => ({
          id: fromDb(t.id),
          capacity: t.capacity,
          sold: t.sold,
          held: t.held,
          available: t.capacity - t.sold - t.held,
        })),
        purchases,
      };
    }, 'snapshot');
  }

  async getPurchase(purchaseId: string): Promise<Purchase | null> {
    const id = toDb(purchaseId);
    // Two reads without a shared snapshot are enough: a purchase and its tickets commit together and
    // tickets never change, so tickets read after their purchase are all there.
    const row = (await this.#db.query<PurchaseRow>(SQL.getPurchase, [id])).rows[0];
    if (!row) return null;
    const tickets = await this.#db.query<TicketRow>(SQL.ticketsOf, [id]);
    return fromRow(row, tickets.rows);
  }

  async listPurchases(eventId: string, options: { match?: string; limit: number }): Promise<Purchase[]> {
    const match = options.match === undefined ? null : toDb(options.match);
    const { rows } = await this.#db.query<PurchaseRow>(SQL.listPurchases, [
      toDb(eventId),
      match,
      options.limit,
      options.match === undefined ? null : toDb(canonicalBuyerId(options.match)),
    ]);
    if (rows.length === 0) return [];
    // Tickets never change once issued, so reading them after their purchases needs no shared snapshot.
    const tickets = await this.#db.query<TicketRow & { purchase_id: string }>(SQL.ticketsOfMany, [
      rows.map((r) => r.id),
    ]);
    const byPurchase = new Map<string, TicketRow[]>();
    for (const t of tickets.rows) {
      const list = byPurchase.get(t.purchase_id) ?? [];
      list.push(t);
      byPurchase.set(t.purchase_id, list);
    }
    return rows.map((row) => fromRow(row, byPurchase.get(row.id) ?? []));
  }

  async getStatuses(
    purchaseIds: readonly string[],
  ): Promise<Map<string, { status: PurchaseStatus; updatedAt: string }>> {
    if (purchaseIds.length === 0) return new Map();
    const { rows } = await this.#db.query<{ id: string; status: PurchaseStatus; updated_at: string }>(
      SQL.statuses,
      [purchaseIds.map(toDb)],
    );
    return new Map(rows.map((r) => [fromDb(r.id), { status: r.status, updatedAt: r.updated_at }]));
  }

  async applyBatch(eventId: string, purchases: readonly AcceptedPurchase[]): Promise<BatchResult> {
    if (purchases.length === 0) return { applied: 0, outcomes: [] };
    const event = toDb(eventId);
    const outcomes = await this.#db.transaction((tx) => this.#apply(tx, event, purchases));
    return { applied: outcomes.length, outcomes };
  }

  /**
   * The body of applyBatch's transaction: lock the event's stock, read what is already applied and the
   * buyers' totals, let the domain plan the batch (planBatch(), in the order given), then write the plan
   * with one statement per table. Safe to run again after a lost COMMIT answer: the second run finds the
   * batch applied.
   */
  async #apply(
    tx: Tx,
    event: string,
    purchases: readonly AcceptedPurchase[],
  ): Promise<BatchResult['outcomes']> {
    const stock = new Map<string, StockLevel>();
    const locked = await tx.query<Omit<TicketTypeRow, 'name' | 'price_cents'>>(SQL.lockStock, [event]);
    for (const t of locked.rows) {
      stock.set(fromDb(t.id), {
        capacity: t.capacity,
        sold: t.sold,
        held: t.held,
        maxPerBuyer: t.max_per_buyer,
      });
    }
    // Read under the lock: a purchase applied by another transaction of this event is visible by now.
    const done = await tx.query<{ id: string }>(SQL.alreadyApplied, [
      purchases.map((p) => toDb(p.purchaseId)),
    ]);
    const applied = new Set(done.rows.map((r) => fromDb(r.id)));
    const buyers = pendingBuyers(purchases, applied);
    if (buyers.length === 0) return [];

    const bought = new Map<string, number>();
    const boughtRows = await tx.query<{ buyer_id: string; ticket_type_id: string; quantity: number }>(
      SQL.boughtByBuyers,
      [event, buyers.map(toDb)],
    );
    for (const r of boughtRows.rows)
      bought.set(buyerKey(fromDb(r.buyer_id), fromDb(r.ticket_type_id)), r.quantity);
    const hadTotals = new Set(bought.keys()); // before planBatch() adds to `bought`
    const plan = planBatch(purchases, applied, stock, bought, newTickets);

    const rows = {
      id: [] as string[],
      buyer: [] as string[],
      buyerKey: [] as string[],
      status: [] as string[],
      reason: [] as (string | null)[],
    };
    const items: string[] = [];
    const created: string[] = [];
    const tickets = {
      id: [] as string[],
      purchase: [] as string[],
      position: [] as number[],
      type: [] as string[],
      code: [] as string[],
    };
    for (const decision of plan.decisions) {
      const p = decision.purchase;
      const id = toDb(p.purchaseId);
      rows.id.push(id);
      rows.buyer.push(toDb(p.buyerId));
      rows.buyerKey.push(toDb(p.canonicalBuyerId));
      rows.status.push(decision.outcome);
      rows.reason.push(decision.outcome === 'rejected' ? decision.reason : null);
      items.push(JSON.stringify(p.items));
      created.push(p.acceptedAt);
      if (decision.outcome === 'rejected') continue;
      decision.tickets.forEach((t, i) => {
        tickets.id.push(t.id);
        tickets.purchase.push(id);
        tickets.position.push(i);
        tickets.type.push(toDb(t.ticketTypeId));
        tickets.code.push(t.code);
      });
    }

    await tx.query(SQL.insertPurchases, [
      event,
      new Date().toISOString(),
      rows.id,
      rows.buyer,
      rows.status,
      rows.reason,
      items,
      created,
      rows.buyerKey,
    ]);
    if (tickets.id.length > 0) {
      await tx.query(SQL.insertTickets, [
        tickets.id,
        tickets.purchase,
        tickets.position,
        tickets.type,
        tickets.code,
      ]);
    }
    const added = [...plan.bought];
    for (const [statement, sums] of [
      [SQL.insertBought, added.filter(([key]) => !hadTotals.has(key))],
      [SQL.addBought, added.filter(([key]) => hadTotals.has(key))],
    ] as const) {
      if (sums.length === 0) continue;
      const written = await tx.query(statement, [
        event,
        sums.map(([, s]) => toDb(s.buyerId)),
        sums.map(([, s]) => toDb(s.ticketTypeId)),
        sums.map(([, s]) => s.quantity),
      ]);
      if (written.rowCount !== sums.length)
        throw new Error(`buyer totals of event ${fromDb(event)} changed unlocked`);
    }
    if (plan.sold.size > 0) {
      const types = [...plan.sold.keys()];
      const sold = await tx.query(SQL.sell, [types.map(toDb), types.map((t) => plan.sold.get(t)!)]);
      if (sold.rowCount !== types.length) {
        throw new Error(`allocation would oversell event ${fromDb(event)}; batch rolled back`);
      }
    }
    return plan.outcomes;
  }

  async ping(): Promise<void> {
    await this.#db.ping();
  }

  async close(): Promise<void> {
    await this.#db.close();
  }
}

function fromRow(row: PurchaseRow, tickets: readonly TicketRow[]): Purchase {
  return {
    purchaseId: fromDb(row.id),
    eventId: fromDb(row.event_id),
    buyerId: fromDb(row.buyer_id),
    status: row.status,
    reason: row.reason,
    items: JSON.parse(row.items) as PurchaseItem[],
    tickets: tickets.map((t) => ({ id: t.id, ticketTypeId: fromDb(t.ticket_type_id), code: t.code })),
    holdExpiresAt: row.hold_expires_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
