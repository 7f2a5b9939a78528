import { emailAddressOf } from '../../domain/buyer.js';
import type { Outbox, OutboxEmail } from '../../ports/outbox.js';
import type { Statement } from 'better-sqlite3';
import { guarded, migrateSqlite, openSqlite, prepareAll, type SqliteDatabase } from './database.js';

/** A purchase that has just been confirmed, as enqueueTicketEmails needs it. */
export interface ConfirmedPurchase {
  purchaseId: string;
  canonicalBuyerId: string;
}

const ENQUEUE =
  'INSERT INTO outbox_emails (purchase_id, recipient, created_at, due_at) VALUES (?, ?, ?, ?) ON CONFLICT (purchase_id) DO NOTHING';
const enqueueStatements = new WeakMap<SqliteDatabase, Statement>();

/**
 * Records the ticket email of each purchase in `confirmed` whose buyer id is an email address. Call it
 * INSIDE the transaction that confirms them (allocation in SqliteStorage.applyBatch; a payment confirming
 * a held purchase likewise), so that the email exists exactly when the confirmation does. A purchase
 * enqueued twice keeps its first row. Returns how many rows it wrote.
 */
export function enqueueTicketEmails(
  db: SqliteDatabase,
  confirmed: readonly ConfirmedPurchase[],
  now: string,
): number {
  let statement = enqueueStatements.get(db);
  if (!statement) {
    statement = db.prepare(ENQUEUE);
    enqueueStatements.set(db, statement);
  }
  let written = 0;
  for (const p of confirmed) {
    const recipient = emailAddressOf(p.canonicalBuyerId);
    if (recipient) written += statement.run(p.purchaseId, recipient, now, now).changes;
  }
  return written;
}

const SQL = {
  /** The ids of up to ? waiting emails due by ?, oldest due first. */
  due: 'SELECT purchase_id FROM outbox_emails WHERE outcome IS NULL AND due_at <= ? ORDER BY due_at LIMIT ?',
  /** Leases one due email to a worker (claimed_by, due_at = lease end), unless another took it first. */
  lease: `UPDATE outbox_emails SET claimed_by = ?, due_at = ?, attempts = attempts + 1
    WHERE purchase_id = ? AND outcome IS NULL AND due_at <= ?
    RETURNING purchase_id, recipient, created_at, attempts`,
  finish: `UPDATE outbox_emails SET outcome = ?, finished_at = ?, claimed_by = NULL
    WHERE purchase_id = ? AND outcome IS NULL`,
  retry: `UPDATE outbox_emails SET due_at = ?, last_error = ?, claimed_by = NULL
    WHERE purchase_id = ? AND outcome IS NULL`,
  reject: `UPDATE outbox_emails SET outcome = 'rejected', finished_at = ?, last_error = ?, claimed_by = NULL
    WHERE purchase_id = ? AND outcome IS NULL`,
  stats: 'SELECT count(*) AS depth, min(created_at) AS oldest FROM outbox_emails WHERE outcome IS NULL',
} as const;

/** The outbox in the SQLite storage file, on a connection of its own. */
export class SqliteOutbox implements Outbox {
  readonly #db: SqliteDatabase;
  readonly #stmt: Record<keyof typeof SQL, Statement>;

  constructor(url: string) {
    this.#db = guarded(() => openSqlite(url));
    migrateSqlite(this.#db, 'outbox');
    this.#stmt = prepareAll(this.#db, SQL);
  }

  async migrate(): Promise<void> {
    guarded(() => migrateSqlite(this.#db, 'outbox'));
  }

  async claim(workerId: string, limit: number, leaseMs: number): Promise<OutboxEmail[]> {
    const now = new Date();
    const nowText = now.toISOString();
    // A read first: an idle outbox (the usual case) costs no write lock.
    const due = guarded(() => this.#stmt.due.pluck().all(nowText, limit)) as string[];
    if (due.length === 0) return [];
    const until = new Date(now.getTime() + leaseMs).toISOString();
    const rows = guarded(() =>
      this.#db
        .transaction(() =>
          due
            .map((id) => this.#stmt.lease.get(workerId, until, id, nowText))
            .filter((row): row is OutboxRow => row !== undefined),
        )
        .immediate(),
    );
    return rows.map((r) => ({
      purchaseId: r.purchase_id,
      recipient: r.recipient,
      createdAt: r.created_at,
      attempts: r.attempts,
    }));
  }

  async markSent(purchaseId: string, outcome: 'sent' | 'skipped'): Promise<void> {
    guarded(() => this.#stmt.finish.run(outcome, new Date().toISOString(), purchaseId));
  }

  async markFailed(purchaseId: string, error: string, retryInMs: number | null): Promise<void> {
    const now = Date.now();
    guarded(() =>
      retryInMs === null
        ? this.#stmt.reject.run(new Date(now).toISOString(), error, purchaseId)
        : this.#stmt.retry.run(new Date(now + retryInMs).toISOString(), error, purchaseId),
    );
  }

  async stats(): Promise<{ depth: number; oldestCreatedAt: string | null }> {
    const row = guarded(() => this.#stmt.stats.get()) as { depth: number; oldest: string | null };
    return { depth: row.depth, oldestCreatedAt: row.oldest };
  }

  async close(): Promise<void> {
    this.#db.close();
  }
}

interface OutboxRow {
  purchase_id: string;
  recipient: string;
  created_at: string;
  attempts: number;
}
