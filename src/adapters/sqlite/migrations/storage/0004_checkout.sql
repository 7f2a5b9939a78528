-- Checkout: holds, payment, the waitlist. A purchase may now be `waitlisted` (its place kept until held
-- tickets come back), which the status CHECK did not allow: SQLite cannot change a CHECK in place, so the
-- table is made again with the same rows. New columns:
--   payment_status, next_action_url, payment_id: the payment as last recorded (src/domain/types.ts);
--   refund: 'due' once a charge came for a purchase that had ended unpaid, 'done' once refunded;
--   reconcile_after: when a worker should next ask the provider about a payment left unsettled (a crash
--     between the charge and its record, a lost webhook) or make a refund that is due;
--   waitlist_seq: the place in the event's waitlist (acceptance order), kept once given.
CREATE TABLE purchases_checkout (
  id TEXT PRIMARY KEY,
  event_id TEXT NOT NULL REFERENCES events (id),
  buyer_id TEXT NOT NULL,
  buyer_key TEXT,
  status TEXT NOT NULL CHECK (status IN ('waitlisted', 'held', 'confirmed', 'rejected', 'expired', 'cancelled')),
  reason TEXT CHECK (reason IN ('sold_out', 'insufficient_inventory', 'limit_exceeded')),
  items TEXT NOT NULL,
  tickets TEXT NOT NULL DEFAULT '[]',
  hold_expires_at TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  payment_status TEXT CHECK (payment_status IN ('processing', 'requires_action', 'succeeded', 'declined', 'failed')),
  next_action_url TEXT,
  payment_id TEXT,
  refund TEXT CHECK (refund IN ('due', 'done')),
  reconcile_after TEXT,
  waitlist_seq INTEGER
);
INSERT INTO purchases_checkout (id, event_id, buyer_id, buyer_key, status, reason, items, tickets, hold_expires_at, created_at, updated_at)
  SELECT id, event_id, buyer_id, buyer_key, status, reason, items, tickets, hold_expires_at, created_at, updated_at FROM purchases;
DROP TABLE purchases;
ALTER TABLE purchases_checkout RENAME TO purchases;

-- The expiry sweep, the waitlist in order, and the payments a worker must look after: partial indexes,
-- so that a sale without holds writes no entry in any of them.
CREATE INDEX purchases_holds ON purchases (hold_expires_at) WHERE status = 'held';
CREATE INDEX purchases_waitlist ON purchases (event_id, waitlist_seq) WHERE waitlist_seq IS NOT NULL;
CREATE INDEX purchases_reconcile ON purchases (reconcile_after) WHERE reconcile_after IS NOT NULL;

-- A purchase's payment history, for the admin page and for audits: each attempt (recorded before the
-- provider is called), each answer and webhook, each refund.
CREATE TABLE payment_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  purchase_id TEXT NOT NULL,
  at TEXT NOT NULL,
  kind TEXT NOT NULL,
  detail TEXT
);
CREATE INDEX payment_events_purchase ON payment_events (purchase_id, seq);

-- Webhook deliveries that took effect, by the provider's event id: the same event delivered again does nothing.
CREATE TABLE webhook_events (
  provider TEXT NOT NULL,
  event_id TEXT NOT NULL,
  received_at TEXT NOT NULL,
  PRIMARY KEY (provider, event_id)
) WITHOUT ROWID;

-- Durable state of payment providers that keep some in onsale's database (the test provider).
CREATE TABLE provider_state (
  provider TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  version INTEGER NOT NULL,
  PRIMARY KEY (provider, key)
) WITHOUT ROWID;
