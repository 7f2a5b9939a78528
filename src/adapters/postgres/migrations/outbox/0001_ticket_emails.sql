-- The outbox of ticket emails: one row per confirmed purchase whose buyer id is an email address, written
-- in the transaction that confirms it (enqueueTicketEmails in outbox.ts) and sent later by a worker.
-- due_at is when a worker may take it next: moved forward by a claim (the lease) and by a failure (the
-- back-off). purchase_id and recipient are stored as toDb() writes them.
CREATE TABLE outbox_emails (
  purchase_id text PRIMARY KEY,
  recipient text NOT NULL,
  created_at timestamptz NOT NULL,
  due_at timestamptz NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  claimed_by text,
  last_error text,
  -- 'sent', 'skipped' (mail off) or 'rejected' (the SMTP server refused it for good); NULL while waiting.
  outcome text CHECK (outcome IN ('sent', 'skipped', 'rejected')),
  finished_at timestamptz
);
CREATE INDEX outbox_emails_waiting ON outbox_emails (due_at) WHERE outcome IS NULL;
