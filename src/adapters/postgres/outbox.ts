import { emailAddressOf } from '../../domain/buyer.js';
import type { Outbox, OutboxEmail } from '../../ports/outbox.js';
import { fromDb, migratePostgres, PostgresDatabase, prepareStatements, toDb, type Tx } from './database.js';

/** A purchase that has just been confirmed, as enqueueTicketEmails needs it. */
export interface ConfirmedPurchase {
  purchaseId: string;
  canonicalBuyerId: string;
}

/** Records emails ($1 purchase ids, $2 recipients) written at $3; a purchase already there keeps its row. */
const ENQUEUE = `INSERT INTO outbox_emails (purchase_id, recipient, created_at, due_at)
  SELECT e.purchase_id, e.recipient, $3, $3 FROM unnest($1::text[], $2::text[]) AS e (purchase_id, recipient)
  ON CONFLICT (purchase_id) DO NOTHING`;
// Written by every allocation batch with a buyer who has an email address.
prepareStatements('outbox', { enqueue: ENQUEUE });

/**
 * Records the ticket email of each purchase in `confirmed` whose buyer id is an email address, with one
 * statement. Call it INSIDE the transaction that confirms them (allocation in PostgresStorage.applyBatch;
 * a payment confirming a held purchase likewise), so that the email exists exactly when the confirmation
 * does. A purchase enqueued twice keeps its first row. Returns how many rows it wrote.
 */
export async function enqueueTicketEmails(
  tx: Tx,
  confirmed: readonly ConfirmedPurchase[],
  now: string,
): Promise<number> {
  const ids: string[] = [];
  const recipients: string[] = [];
  for (const p of confirmed) {
    const recipient = emailAddressOf(p.canonicalBuyerId);
    if (!recipient) continue;
    ids.push(toDb(p.purchaseId));
    recipients.push(toDb(recipient));
  }
  if (ids.length === 0) return 0;
  return (await tx.query(ENQUEUE, [ids, recipients, now])).rowCount ?? 0;
}

const SQL = {
  /**
   * Leases up to $2 waiting emails that are due, oldest due first, to worker $1 until now + $3 ms. SKIP
   * LOCKED: workers claiming at once take different rows instead of waiting for each other.
   */
  claim: `UPDATE outbox_emails o SET claimed_by = $1, due_at = now() + make_interval(secs => $3::double precision / 1000),
      attempts = o.attempts + 1
    FROM (SELECT purchase_id FROM outbox_emails WHERE outcome IS NULL AND due_at <= now()
          ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED) AS due
    WHERE o.purchase_id = due.purchase_id
    RETURNING o.purchase_id, o.recipient, o.created_at, o.attempts`,
  /** Marks email $1 finished with outcome $2 ('sent' or 'skipped'). */
  finish: `UPDATE outbox_emails SET outcome = $2, finished_at = now(), claimed_by = NULL
    WHERE purchase_id = $1 AND outcome IS NULL`,
  /** Email $1 failed with error $2: due again in $3 ms. */
  retry: `UPDATE outbox_emails SET due_at = now() + make_interval(secs => $3::double precision / 1000),
      last_error = $2, claimed_by = NULL
    WHERE purchase_id = $1 AND outcome IS NULL`,
  /** Email $1 was refused for good with error $2. */
  reject: `UPDATE outbox_emails SET outcome = 'rejected', finished_at = now(), last_error = $2, claimed_by = NULL
    WHERE purchase_id = $1 AND outcome IS NULL`,
  /** Waiting emails: depth, and the oldest's created_at (null when none). */
  stats: 'SELECT count(*) AS depth, min(created_at) AS oldest FROM outbox_emails WHERE outcome IS NULL',
} as const;

/** The outbox in the PostgreSQL storage database, on a small pool of its own. */
export class PostgresOutbox implements Outbox {
  readonly #db: PostgresDatabase;

  constructor(url: string) {
    this.#db = new PostgresDatabase(url);
  }

  async migrate(): Promise<void> {
    await migratePostgres(this.#db, 'outbox');
  }

  async claim(workerId: string, limit: number, leaseMs: number): Promise<OutboxEmail[]> {
    const { rows } = await this.#db.query<{
      purchase_id: string;
      recipient: string;
      created_at: Date;
      attempts: number;
    }>(SQL.claim, [workerId, limit, leaseMs]);
    return rows.map((r) => ({
      purchaseId: fromDb(r.purchase_id),
      recipient: fromDb(r.recipient),
      createdAt: r.created_at.toISOString(),
      attempts: r.attempts,
    }));
  }

  async markSent(purchaseId: string, outcome: 'sent' | 'skipped'): Promise<void> {
    await this.#db.query(SQL.finish, [toDb(purchaseId), outcome]);
  }

  async markFailed(purchaseId: string, error: string, retryInMs: number | null): Promise<void> {
    if (retryInMs === null) await this.#db.query(SQL.reject, [toDb(purchaseId), error]);
    else await this.#db.query(SQL.retry, [toDb(purchaseId), error, retryInMs]);
  }

  async stats(): Promise<{ depth: number; oldestCreatedAt: string | null }> {
    const { rows } = await this.#db.query<{ depth: number; oldest: Date | null }>(SQL.stats);
    return { depth: Number(rows[0]?.depth ?? 0), oldestCreatedAt: rows[0]?.oldest?.toISOString() ?? null };
  }

  async close(): Promise<void> {
    await this.#db.close();
  }
}
