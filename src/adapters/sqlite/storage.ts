import { buyerKey, type StockLevel } from '../../domain/allocation.js';
import { canonicalBuyerId } from '../../domain/buyer.js';
import { pendingBuyers, planBatch } from '../../domain/batch.js';
import {
  cancelDecision,
  orderTotal,
  paymentRefusal,
  holdsBeginAt,
  planConfirm,
  planRelease,
  paymentStep,
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
  Ticket,
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
import type { Statement } from 'better-sqlite3';

import {
  sameText,
  storageRows,
  type EventRow,
  type PurchaseRow as PurchaseColumns,
  type TicketTypeRow,
} from '../sql-rows.js';
import { guarded, migrateSqlite, openSqlite, prepareAll, type SqliteDatabase } from './database.js';
import { enqueueTicketEmails } from './outbox.js';
import { removeAcked } from './queue.js';
import { groupBy } from '../../shared/group-by.js';

/** A purchase as `SELECT *` reads it: SQLite keeps its issued tickets on it, as JSON. */
interface PurchaseRow extends PurchaseColumns {
  tickets: string;
}

/** Rows to domain values; SQLite keeps text as written. */
const toDomain = storageRows(sameText);

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
  // By the primary key, filtered by event: the export's pages, one after the other, scan the table once.
  purchasesPage: 'SELECT * FROM purchases WHERE id > ? AND event_id = ? ORDER BY id LIMIT ?',
  alreadyApplied: 'SELECT id FROM purchases WHERE id IN (SELECT value FROM json_each(?))',
  boughtByBuyers:
    'SELECT buyer_id, ticket_type_id, quantity FROM buyer_tickets WHERE event_id = ? AND buyer_id IN (SELECT value FROM json_each(?))',
  insertPurchase:
    'INSERT INTO purchases (id, event_id, buyer_id, buyer_key, status, reason, items, tickets, hold_expires_at, created_at, updated_at, waitlist_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  lastWaitlistSeq:
    'SELECT coalesce(max(waitlist_seq), 0) FROM purchases WHERE event_id = ? AND waitlist_seq IS NOT NULL',
  waitlist:
    "SELECT * FROM purchases WHERE event_id = ? AND waitlist_seq IS NOT NULL AND status = 'waitlisted' ORDER BY waitlist_seq",
  expiredHolds:
    "SELECT id, event_id FROM purchases WHERE status = 'held' AND hold_expires_at <= ? ORDER BY hold_expires_at LIMIT ?",
  changeStatus:
    'UPDATE purchases SET status = ?, reason = ?, hold_expires_at = coalesce(?, hold_expires_at), tickets = coalesce(?, tickets), updated_at = ? WHERE id = ? AND status = ?',
  moveStock: 'UPDATE ticket_types SET sold = sold + ?, held = held + ? WHERE id = ?',
  releaseBought:
    'UPDATE buyer_tickets SET quantity = quantity - ? WHERE event_id = ? AND buyer_id = ? AND ticket_type_id = ?',
  setPayment:
    'UPDATE purchases SET payment_status = ?, next_action_url = ?, payment_id = coalesce(?, payment_id), refund = ?, reconcile_after = ?, updated_at = ? WHERE id = ?',
  addHistory: 'INSERT INTO payment_events (purchase_id, at, kind, detail) VALUES (?, ?, ?, ?)',
  history: 'SELECT at, kind, detail FROM payment_events WHERE purchase_id = ? ORDER BY seq',
  seenWebhook: 'INSERT OR IGNORE INTO webhook_events (provider, event_id, received_at) VALUES (?, ?, ?)',
  paymentWork:
    'SELECT id, refund FROM purchases WHERE reconcile_after IS NOT NULL AND reconcile_after <= ? ORDER BY reconcile_after LIMIT ?',
  postponeWork: 'UPDATE purchases SET reconcile_after = ? WHERE id = ? AND reconcile_after IS NOT NULL',
  getState: 'SELECT value, version FROM provider_state WHERE provider = ? AND key = ?',
  insertState: 'INSERT OR IGNORE INTO provider_state (provider, key, value, version) VALUES (?, ?, ?, 1)',
  updateState:
    'UPDATE provider_state SET value = ?, version = version + 1 WHERE provider = ? AND key = ? AND version = ?',
  // A duplicate code (128 random bits: it will not happen) fails the batch rather than pass silently.
  insertCode: 'INSERT INTO ticket_codes (code) VALUES (?)',
  addCount:
    'INSERT INTO purchase_counts (event_id, status, n) VALUES (?, ?, ?) ON CONFLICT (event_id, status) DO UPDATE SET n = n + excluded.n',
  // The counted status row always exists: a purchase is counted in its status when it takes it.
  subtractCount: 'UPDATE purchase_counts SET n = n - ? WHERE event_id = ? AND status = ?',
  addBought:
    'INSERT INTO buyer_tickets (event_id, buyer_id, ticket_type_id, quantity) VALUES (?, ?, ?, ?) ON CONFLICT (event_id, buyer_id, ticket_type_id) DO UPDATE SET quantity = quantity + excluded.quantity',
  // Conditional: a commit that would oversell changes no row, and the batch is rolled back.
  sell: 'UPDATE ticket_types SET sold = sold + ? WHERE id = ? AND sold + held + ? <= capacity',
  hold: 'UPDATE ticket_types SET held = held + ? WHERE id = ? AND sold + held + ? <= capacity',
} as const;

/** Storage on one SQLite file (the embedded default). */
export class SqliteStorage implements Storage {
  readonly #db: SqliteDatabase;
  readonly #stmt: Record<keyof typeof SQL, Statement>;

  constructor(url: string) {
    this.#db = guarded(() => openSqlite(url));
    migrateSqlite(this.#db, 'storage');
    // applyBatch writes the outbox of ticket emails in its transaction: its table must exist too.
    migrateSqlite(this.#db, 'outbox');
    this.#stmt = prepareAll(this.#db, SQL);
    this.#stmt.alreadyApplied.pluck();
  }

  async migrate(): Promise<void> {
    guarded(() => {
      migrateSqlite(this.#db, 'storage');
      migrateSqlite(this.#db, 'outbox');
    });
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
    // The waiting room settings are JSON text here.
    const row = guarded(() => this.#stmt.getEvent.get(eventId)) as
      (EventRow & { waiting_room: string | null }) | undefined;
    if (!row) return null;
    const types = guarded(() => this.#stmt.ticketTypes.all(eventId)) as TicketTypeRow[];
    const ticketTypes = types.map(toDomain.ticketType);
    const waitingRoom =
      row.waiting_room === null ? null : (JSON.parse(row.waiting_room) as WaitingRoomSettings);
    return toDomain.event(row, ticketTypes, waitingRoom);
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
        const counts = this.#stmt.purchaseCounts.all(eventId) as Array<{
          status: PurchaseStatus | 'refunded';
          n: number;
        }>;
        const purchases = zeroPurchaseCounts();
        for (const c of counts) purchases[c.status] = c.n;
        return {
          eventId,
          ticketTypes: types.map(toDomain.ticketTypeStats),
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

  async purchasesPage(eventId: string, afterId: string | null, limit: number): Promise<Purchase[]> {
    const rows = guarded(() => this.#stmt.purchasesPage.all(afterId ?? '', eventId, limit)) as PurchaseRow[];
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

  async applyBatch(
    eventId: string,
    purchases: readonly AcceptedPurchase[],
    ack?: InlineAck,
  ): Promise<BatchResult> {
    const allocate = this.#allocate(eventId, purchases);
    const apply = this.#db.transaction((): BatchResult['outcomes'] => {
      const outcomes = allocate();
      if (ack) removeAcked(this.#db, ack);
      return outcomes;
    });
    const outcomes = guarded(() => apply.immediate());
    return { applied: outcomes.length, outcomes };
  }

  /** The body of applyBatch's transaction, without the queue's ack. */
  #allocate(eventId: string, purchases: readonly AcceptedPurchase[]): () => BatchResult['outcomes'] {
    const s = this.#stmt;
    return (): BatchResult['outcomes'] => {
      const ids = JSON.stringify(purchases.map((p) => p.purchaseId));
      const applied = new Set(s.alreadyApplied.all(ids) as string[]);
      const buyers = pendingBuyers(purchases, applied);
      if (buyers.length === 0) return [];

      const stock = this.#stock(eventId);
      const holdSeconds =
        (s.getEvent.get(eventId) as { hold_seconds: number } | undefined)?.hold_seconds ?? 0;
      const bought = new Map<string, number>();
      const boughtRows = s.boughtByBuyers.all(eventId, JSON.stringify(buyers)) as Array<{
        buyer_id: string;
        ticket_type_id: string;
        quantity: number;
      }>;
      for (const r of boughtRows) bought.set(buyerKey(r.buyer_id, r.ticket_type_id), r.quantity);

      const started = new Date();
      const plan = planBatch(purchases, applied, stock, bought, newTickets, { holdSeconds, now: started });
      const now = started.toISOString();
      let waitlistSeq = plan.counts.waitlisted > 0 ? (s.lastWaitlistSeq.pluck().get(eventId) as number) : 0;
      for (const decision of plan.decisions) {
        const p = decision.purchase;
        const confirmed = decision.outcome === 'confirmed';
        s.insertPurchase.run(
          p.purchaseId,
          eventId,
          p.buyerId,
          p.canonicalBuyerId,
          decision.outcome,
          decision.outcome === 'rejected' ? decision.reason : null,
          JSON.stringify(p.items),
          confirmed ? JSON.stringify(decision.tickets) : '[]',
          decision.outcome === 'held' ? plan.holdExpiresAt : null,
          p.acceptedAt,
          now,
          decision.outcome === 'waitlisted' ? ++waitlistSeq : null,
        );
        if (confirmed) for (const t of decision.tickets) s.insertCode.run(t.code);
      }
      enqueueTicketEmails(
        this.#db,
        plan.decisions.filter((d) => d.outcome === 'confirmed').map((d) => d.purchase),
        now,
      );
      for (const b of plan.bought.values()) s.addBought.run(eventId, b.buyerId, b.ticketTypeId, b.quantity);
      for (const [outcome, n] of Object.entries(plan.counts)) if (n > 0) s.addCount.run(eventId, outcome, n);
      for (const [statement, added] of [
        [s.sell, plan.sold],
        [s.hold, plan.held],
      ] as const) {
        for (const [typeId, quantity] of added) {
          if (statement.run(quantity, typeId, quantity).changes !== 1) {
            throw new Error(`allocation would oversell ticket type ${typeId}; batch rolled back`);
          }
        }
      }
      return plan.outcomes;
    };
  }

  #stock(eventId: string): Map<string, StockLevel> {
    const stock = new Map<string, StockLevel>();
    for (const t of this.#stmt.ticketTypes.all(eventId) as TicketTypeRow[]) {
      stock.set(t.id, toDomain.stockLevel(t));
    }
    return stock;
  }

  #waitlist(eventId: string): StoredPurchase[] {
    return (this.#stmt.waitlist.all(eventId) as PurchaseRow[]).map(toDomain.storedPurchase);
  }

  /** Writes a checkout plan of one event; a status that moved meanwhile rolls the transaction back. */
  #write(eventId: string, plan: CheckoutPlan, now: string): void {
    const s = this.#stmt;
    for (const c of plan.changes) {
      const tickets = c.tickets ? JSON.stringify(c.tickets) : null;
      const done = s.changeStatus.run(c.to, c.reason, c.holdExpiresAt, tickets, now, c.purchaseId, c.from);
      if (done.changes !== 1) throw new Error(`purchase ${c.purchaseId} changed meanwhile; rolled back`);
      for (const t of c.tickets ?? []) s.insertCode.run(t.code);
      s.subtractCount.run(1, eventId, c.from);
      s.addCount.run(eventId, c.to, 1);
    }
    for (const [typeId, delta] of plan.stock) s.moveStock.run(delta.sold, delta.held, typeId);
    for (const r of plan.released.values())
      s.releaseBought.run(r.quantity, eventId, r.buyerId, r.ticketTypeId);
  }

  async expireHolds(now: Date, limit: number): Promise<StatusChange[]> {
    const s = this.#stmt;
    const at = now.toISOString();
    const expire = this.#db.transaction((): StatusChange[] => {
      const due = s.expiredHolds.all(at, limit) as Array<{ id: string; event_id: string }>;
      const changes: StatusChange[] = [];
      for (const [eventId, holds] of groupBy(due, (d) => d.event_id)) {
        const stock = this.#stock(eventId);
        const ending = holds.map(({ id }) => ({
          purchase: toDomain.storedPurchase(s.getPurchase.get(id) as PurchaseRow),
          to: 'expired' as const,
        }));
        const holdSeconds = (s.getEvent.get(eventId) as { hold_seconds: number }).hold_seconds;
        const waitlist = waitlistNeeded(ending, stock) ? this.#waitlist(eventId) : [];
        const plan = planRelease(ending, stock, waitlist, holdSeconds, holdsBeginAt(now, new Date()));
        this.#write(eventId, plan, at);
        changes.push(...plan.changes);
      }
      return changes;
    });
    return guarded(() => expire.immediate());
  }

  async cancelPurchase(purchaseId: string, now: Date): Promise<CancelResult | null> {
    const s = this.#stmt;
    const at = now.toISOString();
    const cancel = this.#db.transaction((): CancelResult | null => {
      const row = s.getPurchase.get(purchaseId) as PurchaseRow | undefined;
      if (!row) return null;
      const outcome = cancelDecision(row.status);
      if (outcome !== 'cancel') {
        return {
          outcome: outcome === 'already' ? 'already' : 'not_cancellable',
          purchase: fromRow(row),
          changes: [],
        };
      }
      const stock = this.#stock(row.event_id);
      const ending = [{ purchase: toDomain.storedPurchase(row), to: 'cancelled' as const }];
      const holdSeconds = (s.getEvent.get(row.event_id) as { hold_seconds: number }).hold_seconds;
      const waitlist = waitlistNeeded(ending, stock) ? this.#waitlist(row.event_id) : [];
      const plan = planRelease(ending, stock, waitlist, holdSeconds, holdsBeginAt(now, new Date()));
      this.#write(row.event_id, plan, at);
      return {
        outcome: 'cancelled',
        purchase: fromRow(s.getPurchase.get(purchaseId) as PurchaseRow),
        changes: plan.changes,
      };
    });
    return guarded(() => cancel.immediate());
  }

  async beginPayment(purchaseId: string, attemptKey: string, now: Date): Promise<PaymentStart | null> {
    const s = this.#stmt;
    const at = now.toISOString();
    const begin = this.#db.transaction((): PaymentStart | null => {
      const row = s.getPurchase.get(purchaseId) as PurchaseRow | undefined;
      if (!row) return null;
      const event = (s.ticketTypes.all(row.event_id) as TicketTypeRow[]).map(toDomain.ticketType);
      const amountCents = orderTotal(event, JSON.parse(row.items) as PurchaseItem[]);
      const refusal = paymentRefusal({ status: row.status, holdExpiresAt: row.hold_expires_at }, now);
      if (refusal === null) {
        s.addHistory.run(purchaseId, at, 'attempt', JSON.stringify({ attemptKey, amountCents }));
        s.setPayment.run(
          'processing',
          null,
          null,
          row.refund,
          reconcileAfter(now, RECONCILE_FIRST_MS),
          at,
          purchaseId,
        );
      }
      return { refusal, amountCents, purchase: fromRow(s.getPurchase.get(purchaseId) as PurchaseRow) };
    });
    return guarded(() => begin.immediate());
  }

  async recordPayment(purchaseId: string, update: PaymentUpdate, now: Date): Promise<PaymentRecord> {
    const s = this.#stmt;
    const at = now.toISOString();
    const record = this.#db.transaction((): PaymentRecord => {
      const row = s.getPurchase.get(purchaseId) as PurchaseRow | undefined;
      if (!row) return { duplicate: false, effect: 'none', purchase: null, changes: [] };
      if (update.webhook) {
        const seen = s.seenWebhook.run(update.webhook.provider, update.webhook.eventId, at).changes === 0;
        if (seen) return { duplicate: true, effect: 'none', purchase: fromRow(row), changes: [] };
      }
      const { webhook, ...said } = update;
      s.addHistory.run(purchaseId, at, webhook ? `webhook ${said.kind}` : said.kind, JSON.stringify(said));
      const step = paymentStep(toDomain.storedPayment(row), said, now);
      let changes: StatusChange[] = [];
      if (step.confirm) {
        const stock = this.#stock(row.event_id);
        const holdSeconds = (s.getEvent.get(row.event_id) as { hold_seconds: number }).hold_seconds;
        const purchase = toDomain.storedPurchase(row);
        const waitlist = waitlistNeeded([], stock, purchase) ? this.#waitlist(row.event_id) : [];
        const holdsFrom = holdsBeginAt(now, new Date());
        const plan = planConfirm(purchase, stock, waitlist, newTickets, holdSeconds, holdsFrom);
        this.#write(row.event_id, plan, at);
        changes = plan.changes;
        // The ticket email, in the transaction that confirms (the outbox sends it).
        const confirmedNow = changes.some((c) => c.purchaseId === purchaseId && c.to === 'confirmed');
        if (confirmedNow) enqueueTicketEmails(this.#db, [purchase], at);
      }
      if (step.refund === 'due' && row.refund !== 'due') s.addHistory.run(purchaseId, at, 'refund_due', null);
      if (step.refund === 'done' && row.refund !== 'done') s.addCount.run(row.event_id, 'refunded', 1);
      if (step.write) {
        s.setPayment.run(
          step.paymentStatus,
          step.nextActionUrl,
          step.paymentId,
          step.refund,
          step.reconcileAfter,
          at,
          purchaseId,
        );
      }
      return {
        duplicate: false,
        effect: step.effect,
        purchase: fromRow(s.getPurchase.get(purchaseId) as PurchaseRow),
        changes,
      };
    });
    return guarded(() => record.immediate());
  }

  async paymentWork(now: Date, limit: number): Promise<Array<{ purchaseId: string; refundDue: boolean }>> {
    const s = this.#stmt;
    const take = this.#db.transaction(() => {
      const rows = s.paymentWork.all(now.toISOString(), limit) as Array<{
        id: string;
        refund: string | null;
      }>;
      // Postponed at once, so that workers sweeping together do not all ask the provider the same thing.
      for (const r of rows) s.postponeWork.run(reconcileAfter(now, RECONCILE_AGAIN_MS), r.id);
      return rows.map((r) => ({ purchaseId: r.id, refundDue: r.refund === 'due' }));
    });
    return guarded(() => take.immediate());
  }

  async paymentHistory(purchaseId: string): Promise<PaymentHistoryEntry[]> {
    return guarded(() => this.#stmt.history.all(purchaseId)) as PaymentHistoryEntry[];
  }

  async providerState(provider: string, key: string): Promise<{ value: string; version: number } | null> {
    const row = guarded(() => this.#stmt.getState.get(provider, key)) as
      { value: string; version: number } | undefined;
    return row ?? null;
  }

  async setProviderState(
    provider: string,
    key: string,
    value: string,
    expected: number | null,
  ): Promise<boolean> {
    const s = this.#stmt;
    return guarded(() =>
      expected === null
        ? s.insertState.run(provider, key, value).changes === 1
        : s.updateState.run(value, provider, key, expected).changes === 1,
    );
  }

  async ping(): Promise<void> {
    guarded(() => this.#db.prepare('SELECT 1').get());
  }

  async close(): Promise<void> {
    this.#db.close();
  }
}

function fromRow(row: PurchaseRow): Purchase {
  return toDomain.purchase(row, JSON.parse(row.tickets) as Ticket[]);
}
