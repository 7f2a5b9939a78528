-- The outbox of ticket emails: one row per confirmed purchase whose buyer id is an email address, written
-- in the transaction that confirms it (enqueueTicketEmails in outbox.ts) and sent later by a worker.
-- due_at is when a worker may take it next: moved forward by a claim (the lease) and by a failure (the
-- back-off). Times are ISO-8601 text, which compares in time order.
CREATE TABLE outbox_emails (
  purchase_id TEXT PRIMARY KEY,
  recipient TEXT NOT NULL,
  created_at TEXT NOT NULL,
  due_at TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  claimed_by TEXT,
  last_error TEXT,
  -- 'sent', 'skipped' (mail off) or 'rejected' (the SMTP server refused it for good); NULL while waiting.
  outcome TEXT CHECK (outcome IN ('sent', 'skipped', 'rejected')),
  finished_at TEXT
) WITHOUT ROWID;
CREATE INDEX outbox_emails_waiting ON outbox_emails (due_at) WHERE outcome IS NULL;
