import { buyerKey, type StockLevel } from '../../domain/allocation.js';
import { canonicalBuyerId } from '../../domain/buyer.js';
import { pendingBuyers, planBatch } from '../../domain/batch.js';
import {
  cancelDecision,
  orderTotal,
  paymentRefusal,
  paymentStep,
  holdsBeginAt,
  planConfirm,
  planRelease,
  reconcileAfter,
  RECONCILE_AGAIN_MS,
  RECONCILE_FIRST_MS,
  waitlistNeeded,
  type CheckoutPlan,
  type StatusChange,
  type StoredPurchase,
} from '../../domain/checkout.js';
import { newId, newTickets } from '../../shared/ids.js';
import type {
  AcceptedPurchase,
  EventStats,
  NewEvent,
  Purchase,
  PurchaseItem,
  PurchaseStatus,
  SaleEvent,
  WaitingRoomSettings,
} from '../../domain/types.js';
import { zeroPurchaseCounts } from '../../domain/types.js';
import type {
  BatchResult,
  CancelResult,
  PaymentHistoryEntry,
  PaymentRecord,
  PaymentStart,
  PaymentUpdate,
  Storage,
} from '../../ports/storage.js';
import type { InlineAck } from '../../ports/queue.js';
import { storageRows, type EventRow, type PurchaseRow, type TicketTypeRow } from '../sql-rows.js';
import {
  arrayLiteral,
  fromDb,
  migratePostgres,
  PostgresDatabase,
  prepareStatements,
  toDb,
  type Tx,
} from './database.js';
import { enqueueTicketEmails } from './outbox.js';
import { removeAcked } from './queue.js';
import { groupBy } from '../../shared/group-by.js';

/** An issued ticket (tickets): PostgreSQL keeps them in a table of their own. */
interface TicketRow {
  id: string;
  ticket_type_id: string;
  code: string;
}

/** Rows to domain values; text comes back through fromDb, as toDb escaped it. */
const toDomain = storageRows(fromDb);

/** The columns of a purchase that PurchaseRow holds. */
const PURCHASE_COLUMNS = `id, event_id, buyer_id, status, reason, items, hold_expires_at, created_at, updated_at,
  buyer_key, payment_status, next_action_url, refund, reconcile_after`;

/**
 * The statements of the storage adapter. Each says what it returns and what its parameters are. Lists
 * travel as arrays (`= ANY($1)`, `unnest($1, $2, …)`): one statement per batch, never one per row.
 */
export const SQL = {
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
  /** Purchases of event $1 per status, and those refunded: status, n. */
  purchaseCounts: `SELECT status, count(*)::integer AS n FROM purchases WHERE event_id = $1 GROUP BY status
    UNION ALL SELECT 'refunded', count(*)::integer FROM purchases WHERE event_id = $1 AND refund = 'done'`,
  /** The purchase $1, or no row. */
  getPurchase: `SELECT ${PURCHASE_COLUMNS} FROM purchases WHERE id = $1`,
  /** The purchase $1, locked for the rest of the transaction, or no row. */
  lockPurchase: `SELECT ${PURCHASE_COLUMNS} FROM purchases WHERE id = $1 FOR UPDATE`,
  /** Purchases among ids $1 still held, locked. */
  lockHeld: `SELECT ${PURCHASE_COLUMNS} FROM purchases WHERE id = ANY($1::text[]) AND status = 'held' FOR UPDATE`,
  /** hold_seconds of event $1. */
  holdSeconds: 'SELECT hold_seconds FROM events WHERE id = $1',
  /** The highest waitlist place given in event $1 (0: none). */
  lastWaitlistSeq: `SELECT coalesce(max(waitlist_seq), 0)::bigint AS seq FROM purchases
    WHERE event_id = $1 AND waitlist_seq IS NOT NULL`,
  /** The waitlist of event $1, in acceptance order. */
  waitlist: `SELECT ${PURCHASE_COLUMNS} FROM purchases
    WHERE event_id = $1 AND waitlist_seq IS NOT NULL AND status = 'waitlisted' ORDER BY waitlist_seq`,
  /** Up to $2 holds ending at or before $1: id, event_id. */
  expiredHolds: `SELECT id, event_id FROM purchases WHERE status = 'held' AND hold_expires_at <= $1
    ORDER BY hold_expires_at LIMIT $2`,
  /**
   * Moves purchase $5 from status $6 to $1 (reason $2, hold end $3 when not null), updated at $4. No row
   * when it is no longer in status $6.
   */
  changeStatus: `UPDATE purchases SET status = $1, reason = $2, hold_expires_at = coalesce($3, hold_expires_at),
    updated_at = $4 WHERE id = $5 AND status = $6`,
  /** Changes sold by $2 and held by $3 of ticket type $1 (the CHECK refuses an oversell). */
  moveStock: 'UPDATE ticket_types SET sold = sold + $2, held = held + $3 WHERE id = $1',
  /** Gives $4 tickets of type $3 back from buyer $2's total in event $1. */
  releaseBought: `UPDATE buyer_tickets SET quantity = quantity - $4
    WHERE event_id = $1 AND buyer_id = $2 AND ticket_type_id = $3`,
  /**
   * Sets the payment of purchase $7: status $1, next action $2, payment id $3 (kept when null), refund
   * $4, reconcile_after $5, updated at $6.
   */
  setPayment: `UPDATE purchases SET payment_status = $1, next_action_url = $2, payment_id = coalesce($3, payment_id),
    refund = $4, reconcile_after = $5, updated_at = $6 WHERE id = $7`,
  /** Adds to purchase $1's payment history: at $2, kind $3, detail $4. */
  addHistory: 'INSERT INTO payment_events (purchase_id, at, kind, detail) VALUES ($1, $2, $3, $4)',
  /** Purchase $1's payment history, oldest first. */
  history: 'SELECT at, kind, detail FROM payment_events WHERE purchase_id = $1 ORDER BY seq',
  /** Notes webhook event $2 of provider $1; no row when it was noted before. */
  seenWebhook: `INSERT INTO webhook_events (provider, event_id) VALUES ($1, $2)
    ON CONFLICT DO NOTHING RETURNING event_id`,
  /**
   * Takes up to $2 payments due for a look at $1 and postpones the next look to $3, so that workers
   * sweeping together share them out. Returns id, refund.
   */
  takePaymentWork: `UPDATE purchases SET reconcile_after = $3 WHERE id IN (
      SELECT id FROM purchases WHERE reconcile_after IS NOT NULL AND reconcile_after <= $1
      ORDER BY reconcile_after LIMIT $2 FOR UPDATE SKIP LOCKED)
    RETURNING id, refund`,
  /** Provider $1's state under key $2: value, version. */
  getState: 'SELECT value, version FROM provider_state WHERE provider = $1 AND key = $2',
  /** Starts provider $1's state under key $2 with value $3; no row when it exists. */
  insertState: `INSERT INTO provider_state (provider, key, value, version) VALUES ($1, $2, $3, 1)
    ON CONFLICT DO NOTHING`,
  /** Replaces provider $1's state under key $2 with $3 if its version is still $4. */
  updateState: `UPDATE provider_state SET value = $3, version = version + 1
    WHERE provider = $1 AND key = $2 AND version = $4`,
  /** The tickets of purchase $1 (id, ticket_type_id, code), in the order they were issued. */
  ticketsOf: 'SELECT id, ticket_type_id, code FROM tickets WHERE purchase_id = $1 ORDER BY position',
  /**
   * The latest purchases of event $1, newest accepted first, at most $3; when $2 is not null, only those
   * whose id or buyer_id is $2 or whose canonical buyer id (buyer_key) is $4. For the admin page: past the
   * event_id index it filters and sorts.
   */
  listPurchases: `SELECT ${PURCHASE_COLUMNS}
    FROM purchases WHERE event_id = $1 AND ($2::text IS NULL OR buyer_key = $4 OR buyer_id = $2 OR id = $2)
    ORDER BY created_at DESC, id DESC LIMIT $3`,
  /** The tickets (purchase_id, id, ticket_type_id, code) of the purchases $1, each purchase's in issue order. */
  ticketsOfMany: `SELECT purchase_id, id, ticket_type_id, code FROM tickets WHERE purchase_id = ANY($1::text[])
    ORDER BY purchase_id, position`,
  /**
   * A page of event $1's purchases in id order: ids after $2 (text; '' for the first page), at most $3.
   */
  purchasesPage: `SELECT id, event_id, buyer_id, status, reason, items, hold_expires_at, created_at, updated_at
    FROM purchases WHERE event_id = $1 AND id > $2 ORDER BY id LIMIT $3`,
  /**
   * Status and last change (id, status, updated_at) of the purchases among ids $1 that are stored. One
   * index probe per id, as alreadyApplied (below) explains.
   */
  statuses: `SELECT p.id, p.status, p.updated_at FROM unnest($1::text[]) AS u (id)
    CROSS JOIN LATERAL (SELECT id, status, updated_at FROM purchases WHERE id = u.id OFFSET 0) AS p`,
  /**
   * Locks the stock of event $1 for the rest of the transaction and returns it. Taken first in applyBatch:
   * it serializes every allocation of one event (a second worker, if a lease ran out, waits here), and
   * locking in id order means two transactions can never wait on each other in a cycle.
   */
  lockStock: `SELECT id, capacity, sold, held, max_per_buyer FROM ticket_types
    WHERE event_id = $1 ORDER BY id FOR UPDATE`,
  /**
   * Which of the purchase ids $1 are already applied (a redelivered batch). Returns id.
   *
   * This, boughtByBuyers and statuses look up a few hundred rows among all of an event's, which a rush grows
   * by thousands a second. Written as `= ANY($1)`, the planner chose by statistics that lag such growth, or
   * by costs that assume a disk: a scan of every purchase (or of the event's whole index range) per batch,
   * 4–6 ms at 50,000 rows and growing with the table. The LATERAL subquery (OFFSET 0 keeps it from being
   * flattened into a join) fixes the plan to one index probe per id, whatever the statistics say: 0.5–0.8
   * ms per 500.
   */
  alreadyApplied: `SELECT p.id FROM unnest($1::text[]) AS u (id)
    CROSS JOIN LATERAL (SELECT id FROM purchases WHERE id = u.id OFFSET 0) AS p`,
  /** Tickets the buyers $2 already hold or bought per ticket type of event $1: buyer_id, ticket_type_id, quantity. */
  boughtByBuyers: `SELECT b.buyer_id, b.ticket_type_id, b.quantity FROM unnest($2::text[]) AS u (buyer_id)
    CROSS JOIN LATERAL (SELECT buyer_id, ticket_type_id, quantity FROM buyer_tickets
      WHERE event_id = $1 AND buyer_id = u.buyer_id OFFSET 0) AS b`,
  /**
   * Records decided purchases of event $1, updated at $2. One array per column: $3 ids, $4 buyer ids (as
   * typed), $5 statuses, $6 reasons (null when confirmed), $7 items (JSON), $8 created_at (acceptance
   * time), $9 canonical buyer ids, $10 hold ends (null unless held), $11 waitlist places (null unless
   * waitlisted).
   */
  insertPurchases: `INSERT INTO purchases (id, event_id, buyer_id, buyer_key, status, reason, items, created_at, updated_at,
      hold_expires_at, waitlist_seq)
    SELECT p.id, $1, p.buyer_id, p.buyer_key, p.status, p.reason, p.items, p.created_at, $2, p.hold_expires_at,
      p.waitlist_seq
    FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
      $11::bigint[])
      AS p (id, buyer_id, status, reason, items, created_at, buyer_key, hold_expires_at, waitlist_seq)`,
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
  /** As `sell`, for tickets newly held. */
  hold: `UPDATE ticket_types t SET held = t.held + s.quantity
    FROM unnest($1::text[], $2::integer[]) AS s (id, quantity)
    WHERE t.id = s.id AND t.sold + t.held + s.quantity <= t.capacity`,
} as const;

/** applyBatch's statements, run for every batch: prepared once per connection. */
prepareStatements('storage', {
  lockStock: SQL.lockStock,
  alreadyApplied: SQL.alreadyApplied,
  boughtByBuyers: SQL.boughtByBuyers,
  holdSeconds: SQL.holdSeconds,
  lastWaitlistSeq: SQL.lastWaitlistSeq,
  insertPurchases: SQL.insertPurchases,
  insertTickets: SQL.insertTickets,
  insertBought: SQL.insertBought,
  addBought: SQL.addBought,
  sell: SQL.sell,
  hold: SQL.hold,
});

/**
 * Storage on PostgreSQL, through a node-postgres pool (`postgres://…?max=N` sets its size).
 *
 * applyBatch is the hot path: one transaction per batch of up to --batch-size purchases, a fixed number of
 * statements whatever the batch holds, so the commit (its WAL flush) and the round trips are paid once per
 * batch. Measured on the development machine (2 cores, PostgreSQL 15 on the same host, fsync on, nearly
 * quiet, purchases of 2 tickets; `npm run bench -- --only postgres`): the worker loop allocated about
 * 16,000 purchases/s in batches of 500, 0.6–0.67 of the same rows written set-based in one transaction,
 * against about 400/s for a naive allocator taking one purchase per transaction. What is left is per row:
 * about 70 µs of CPU per purchase, 43 of it in PostgreSQL (4 rows and 7 index entries per purchase).
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
    // applyBatch writes the outbox of ticket emails in its transaction: its table must exist too.
    await migratePostgres(this.#db, 'outbox');
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
      // node-postgres parses the jsonb column.
      this.#db.query<EventRow & { waiting_room: WaitingRoomSettings | null }>(SQL.getEvent, [id]),
      this.#db.query<TicketTypeRow>(SQL.ticketTypes, [id]),
    ]);
    const row = event.rows[0];
    if (!row) return null;
    const ticketTypes = types.rows.map(toDomain.ticketType);
    return toDomain.event(row, ticketTypes, row.waiting_room);
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
      const counts = await tx.query<{ status: PurchaseStatus | 'refunded'; n: number }>(SQL.purchaseCounts, [
        id,
      ]);
      const purchases = zeroPurchaseCounts();
      for (const c of counts.rows) purchases[c.status] = c.n;
      return {
        eventId,
        ticketTypes: types.rows.map(toDomain.ticketTypeStats),
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

  async purchasesPage(eventId: string, afterId: string | null, limit: number): Promise<Purchase[]> {
    const { rows } = await this.#db.query<PurchaseRow>(SQL.purchasesPage, [
      toDb(eventId),
      afterId === null ? '' : toDb(afterId),
      limit,
    ]);
    return this.#withTickets(rows);
  }

  async #withTickets(rows: PurchaseRow[]): Promise<Purchase[]> {
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

  async applyBatch(
    eventId: string,
    purchases: readonly AcceptedPurchase[],
    ack?: InlineAck,
  ): Promise<BatchResult> {
    if (purchases.length === 0) return { applied: 0, outcomes: [] };
    const event = toDb(eventId);
    const outcomes = await this.#db.transaction(async (tx) => {
      const decided = await this.#apply(tx, event, purchases);
      if (ack) await removeAcked(tx, ack);
      return decided;
    });
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
    const stock = await this.#lockStock(tx, event);
    // Read under the lock: a purchase applied by another transaction of this event is visible by now.
    const done = await tx.query<{ id: string }>(SQL.alreadyApplied, [
      arrayLiteral(purchases.map((p) => toDb(p.purchaseId))),
    ]);
    const applied = new Set(done.rows.map((r) => fromDb(r.id)));
    const buyers = pendingBuyers(purchases, applied);
    if (buyers.length === 0) return [];

    const bought = new Map<string, number>();
    const boughtRows = await tx.query<{ buyer_id: string; ticket_type_id: string; quantity: number }>(
      SQL.boughtByBuyers,
      [event, arrayLiteral(buyers.map(toDb))],
    );
    for (const r of boughtRows.rows)
      bought.set(buyerKey(fromDb(r.buyer_id), fromDb(r.ticket_type_id)), r.quantity);
    const hadTotals = new Set(bought.keys()); // before planBatch() adds to `bought`
    const holdSeconds = (await tx.query<{ hold_seconds: number }>(SQL.holdSeconds, [event])).rows[0]!
      .hold_seconds;
    const started = new Date();
    const plan = planBatch(purchases, applied, stock, bought, newTickets, { holdSeconds, now: started });
    let waitlistSeq =
      plan.counts.waitlisted > 0
        ? Number((await tx.query<{ seq: string }>(SQL.lastWaitlistSeq, [event])).rows[0]!.seq)
        : 0;
    const holdEnds: (string | null)[] = [];
    const places: (number | null)[] = [];

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
      holdEnds.push(decision.outcome === 'held' ? plan.holdExpiresAt : null);
      places.push(decision.outcome === 'waitlisted' ? ++waitlistSeq : null);
      if (decision.outcome !== 'confirmed') continue;
      decision.tickets.forEach((t, i) => {
        tickets.id.push(t.id);
        tickets.purchase.push(id);
        tickets.position.push(i);
        tickets.type.push(toDb(t.ticketTypeId));
        tickets.code.push(t.code);
      });
    }

    const now = new Date().toISOString();
    // The batch's arrays go as array literals (arrayLiteral says why).
    await tx.query(SQL.insertPurchases, [
      event,
      now,
      arrayLiteral(rows.id),
      arrayLiteral(rows.buyer),
      arrayLiteral(rows.status),
      arrayLiteral(rows.reason),
      arrayLiteral(items),
      arrayLiteral(created),
      arrayLiteral(rows.buyerKey),
      arrayLiteral(holdEnds),
      arrayLiteral(places),
    ]);
    if (tickets.id.length > 0) {
      await tx.query(SQL.insertTickets, [
        arrayLiteral(tickets.id),
        arrayLiteral(tickets.purchase),
        arrayLiteral(tickets.position),
        arrayLiteral(tickets.type),
        arrayLiteral(tickets.code),
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
        arrayLiteral(sums.map(([, s]) => toDb(s.buyerId))),
        arrayLiteral(sums.map(([, s]) => toDb(s.ticketTypeId))),
        arrayLiteral(sums.map(([, s]) => s.quantity)),
      ]);
      if (written.rowCount !== sums.length)
        throw new Error(`buyer totals of event ${fromDb(event)} changed unlocked`);
    }
    for (const [statement, added] of [
      [SQL.sell, plan.sold],
      [SQL.hold, plan.held],
    ] as const) {
      if (added.size === 0) continue;
      const types = [...added.keys()];
      const done = await tx.query(statement, [types.map(toDb), types.map((t) => added.get(t)!)]);
      if (done.rowCount !== types.length) {
        throw new Error(`allocation would oversell event ${fromDb(event)}; batch rolled back`);
      }
    }
    await enqueueTicketEmails(
      tx,
      plan.decisions.filter((d) => d.outcome === 'confirmed').map((d) => d.purchase),
      now,
    );
    return plan.outcomes;
  }

  /** Locks event $1's stock (as applyBatch does: every writer of an event's stock takes it first). */
  async #lockStock(tx: Tx, event: string): Promise<Map<string, StockLevel>> {
    const stock = new Map<string, StockLevel>();
    const locked = await tx.query<Omit<TicketTypeRow, 'name' | 'price_cents'>>(SQL.lockStock, [event]);
    for (const t of locked.rows) stock.set(fromDb(t.id), toDomain.stockLevel(t));
    return stock;
  }

  async #waitlist(tx: Tx, event: string): Promise<StoredPurchase[]> {
    return (await tx.query<PurchaseRow>(SQL.waitlist, [event])).rows.map(toDomain.storedPurchase);
  }

  async #holdSeconds(tx: Tx, event: string): Promise<number> {
    return (await tx.query<{ hold_seconds: number }>(SQL.holdSeconds, [event])).rows[0]!.hold_seconds;
  }

  /** Writes a checkout plan of event `event`; a status that moved meanwhile rolls the transaction back. */
  async #write(tx: Tx, event: string, plan: CheckoutPlan, now: string): Promise<void> {
    for (const c of plan.changes) {
      const id = toDb(c.purchaseId);
      const done = await tx.query(SQL.changeStatus, [c.to, c.reason, c.holdExpiresAt, now, id, c.from]);
      if (done.rowCount !== 1) throw new Error(`purchase ${c.purchaseId} changed meanwhile; rolled back`);
      if (c.tickets && c.tickets.length > 0) {
        await tx.query(SQL.insertTickets, [
          c.tickets.map((t) => t.id),
          c.tickets.map(() => id),
          c.tickets.map((_t, i) => i),
          c.tickets.map((t) => toDb(t.ticketTypeId)),
          c.tickets.map((t) => t.code),
        ]);
      }
    }
    for (const [typeId, delta] of plan.stock) {
      await tx.query(SQL.moveStock, [toDb(typeId), delta.sold, delta.held]);
    }
    for (const r of plan.released.values()) {
      await tx.query(SQL.releaseBought, [event, toDb(r.buyerId), toDb(r.ticketTypeId), r.quantity]);
    }
  }

  async expireHolds(now: Date, limit: number): Promise<StatusChange[]> {
    const at = now.toISOString();
    const due = await this.#db.query<{ id: string; event_id: string }>(SQL.expiredHolds, [at, limit]);
    const changes: StatusChange[] = [];
    for (const [event, holds] of groupBy(due.rows, (d) => d.event_id)) {
      const ids = holds.map((d) => d.id);
      const made = await this.#db.transaction(async (tx) => {
        const stock = await this.#lockStock(tx, event);
        // Read under the lock: holds another process ended or got paid meanwhile are no longer 'held'.
        const held = await tx.query<PurchaseRow>(SQL.lockHeld, [ids]);
        const ending = held.rows
          .filter((r) => r.hold_expires_at !== null && r.hold_expires_at <= at)
          .map((r) => ({ purchase: toDomain.storedPurchase(r), to: 'expired' as const }));
        if (ending.length === 0) return [];
        const waitlist = waitlistNeeded(ending, stock) ? await this.#waitlist(tx, event) : [];
        const holdSeconds = await this.#holdSeconds(tx, event);
        const plan = planRelease(ending, stock, waitlist, holdSeconds, holdsBeginAt(now, new Date()));
        await this.#write(tx, event, plan, at);
        return plan.changes;
      });
      changes.push(...made);
    }
    return changes;
  }

  async cancelPurchase(purchaseId: string, now: Date): Promise<CancelResult | null> {
    const id = toDb(purchaseId);
    const first = (await this.#db.query<PurchaseRow>(SQL.getPurchase, [id])).rows[0];
    if (!first) return null;
    return this.#db.transaction(async (tx): Promise<CancelResult> => {
      const stock = await this.#lockStock(tx, first.event_id);
      const row = (await tx.query<PurchaseRow>(SQL.lockPurchase, [id])).rows[0]!;
      const outcome = cancelDecision(row.status);
      if (outcome !== 'cancel') {
        return {
          outcome: outcome === 'already' ? 'already' : 'not_cancellable',
          purchase: await this.#purchase(tx, row),
          changes: [],
        };
      }
      const ending = [{ purchase: toDomain.storedPurchase(row), to: 'cancelled' as const }];
      const waitlist = waitlistNeeded(ending, stock) ? await this.#waitlist(tx, row.event_id) : [];
      const holdSeconds = await this.#holdSeconds(tx, row.event_id);
      const plan = planRelease(ending, stock, waitlist, holdSeconds, holdsBeginAt(now, new Date()));
      await this.#write(tx, row.event_id, plan, now.toISOString());
      const after = (await tx.query<PurchaseRow>(SQL.getPurchase, [id])).rows[0]!;
      return { outcome: 'cancelled', purchase: await this.#purchase(tx, after), changes: plan.changes };
    });
  }

  async #purchase(tx: Tx, row: PurchaseRow): Promise<Purchase> {
    const tickets = await tx.query<TicketRow>(SQL.ticketsOf, [row.id]);
    return fromRow(row, tickets.rows);
  }

  async beginPayment(purchaseId: string, attemptKey: string, now: Date): Promise<PaymentStart | null> {
    const id = toDb(purchaseId);
    const at = now.toISOString();
    return this.#db.transaction(async (tx): Promise<PaymentStart | null> => {
      const row = (await tx.query<PurchaseRow>(SQL.lockPurchase, [id])).rows[0];
      if (!row) return null;
      const types = await tx.query<TicketTypeRow>(SQL.ticketTypes, [row.event_id]);
      const amountCents = orderTotal(
        types.rows.map(toDomain.ticketType),
        JSON.parse(row.items) as PurchaseItem[],
      );
      const refusal = paymentRefusal({ status: row.status, holdExpiresAt: row.hold_expires_at }, now);
      if (refusal === null) {
        await tx.query(SQL.addHistory, [id, at, 'attempt', JSON.stringify({ attemptKey, amountCents })]);
        await tx.query(SQL.setPayment, [
          'processing',
          null,
          null,
          row.refund,
          reconcileAfter(now, RECONCILE_FIRST_MS),
          at,
          id,
        ]);
      }
      const after = (await tx.query<PurchaseRow>(SQL.getPurchase, [id])).rows[0]!;
      return { refusal, amountCents, purchase: await this.#purchase(tx, after) };
    });
  }

  async recordPayment(purchaseId: string, update: PaymentUpdate, now: Date): Promise<PaymentRecord> {
    const id = toDb(purchaseId);
    const at = now.toISOString();
    const first = (await this.#db.query<PurchaseRow>(SQL.getPurchase, [id])).rows[0];
    if (!first) return { duplicate: false, effect: 'none', purchase: null, changes: [] };
    return this.#db.transaction(async (tx): Promise<PaymentRecord> => {
      // The stock first, then the purchase: the order every writer of both takes them in.
      const stock = await this.#lockStock(tx, first.event_id);
      const row = (await tx.query<PurchaseRow>(SQL.lockPurchase, [id])).rows[0]!;
      if (update.webhook) {
        const noted = await tx.query(SQL.seenWebhook, [update.webhook.provider, update.webhook.eventId]);
        if (noted.rowCount === 0) {
          return { duplicate: true, effect: 'none', purchase: await this.#purchase(tx, row), changes: [] };
        }
      }
      const { webhook, ...said } = update;
      await tx.query(SQL.addHistory, [
        id,
        at,
        webhook ? `webhook ${said.kind}` : said.kind,
        JSON.stringify(said),
      ]);
      const step = paymentStep(toDomain.storedPayment(row), said, now);
      let changes: StatusChange[] = [];
      if (step.confirm) {
        const purchase = toDomain.storedPurchase(row);
        const waitlist = waitlistNeeded([], stock, purchase) ? await this.#waitlist(tx, row.event_id) : [];
        const holdSeconds = await this.#holdSeconds(tx, row.event_id);
        const holdsFrom = holdsBeginAt(now, new Date());
        const plan = planConfirm(purchase, stock, waitlist, newTickets, holdSeconds, holdsFrom);
        await this.#write(tx, row.event_id, plan, at);
        changes = plan.changes;
        // The ticket email, in the transaction that confirms (the outbox sends it).
        const confirmedNow = changes.some((c) => c.purchaseId === purchaseId && c.to === 'confirmed');
        if (confirmedNow) await enqueueTicketEmails(tx, [purchase], at);
      }
      if (step.refund === 'due' && row.refund !== 'due')
        await tx.query(SQL.addHistory, [id, at, 'refund_due', null]);
      if (step.write) {
        await tx.query(SQL.setPayment, [
          step.paymentStatus,
          step.nextActionUrl,
          step.paymentId,
          step.refund,
          step.reconcileAfter,
          at,
          id,
        ]);
      }
      const after = (await tx.query<PurchaseRow>(SQL.getPurchase, [id])).rows[0]!;
      return { duplicate: false, effect: step.effect, purchase: await this.#purchase(tx, after), changes };
    });
  }

  async paymentWork(now: Date, limit: number): Promise<Array<{ purchaseId: string; refundDue: boolean }>> {
    const { rows } = await this.#db.query<{ id: string; refund: string | null }>(SQL.takePaymentWork, [
      now.toISOString(),
      limit,
      reconcileAfter(now, RECONCILE_AGAIN_MS),
    ]);
    return rows.map((r) => ({ purchaseId: fromDb(r.id), refundDue: r.refund === 'due' }));
  }

  async paymentHistory(purchaseId: string): Promise<PaymentHistoryEntry[]> {
    const { rows } = await this.#db.query<PaymentHistoryEntry>(SQL.history, [toDb(purchaseId)]);
    return rows;
  }

  async providerState(provider: string, key: string): Promise<{ value: string; version: number } | null> {
    const { rows } = await this.#db.query<{ value: string; version: number }>(SQL.getState, [
      provider,
      toDb(key),
    ]);
    return rows[0] ?? null;
  }

  async setProviderState(
    provider: string,
    key: string,
    value: string,
    expected: number | null,
  ): Promise<boolean> {
    const done =
      expected === null
        ? await this.#db.query(SQL.insertState, [provider, toDb(key), value])
        : await this.#db.query(SQL.updateState, [provider, toDb(key), value, expected]);
    return done.rowCount === 1;
  }

  async ping(): Promise<void> {
    await this.#db.ping();
  }

  async close(): Promise<void> {
    await this.#db.close();
  }
}

function fromRow(row: PurchaseRow, tickets: readonly TicketRow[]): Purchase {
  const issued = tickets.map((t) => ({ id: t.id, ticketTypeId: fromDb(t.ticket_type_id), code: t.code }));
  return toDomain.purchase(row, issued);
}
