-- The embedded queue. seq (AUTOINCREMENT: never reused) is the acceptance order.
CREATE TABLE queue_purchases (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  purchase_id TEXT NOT NULL UNIQUE,
  event_id TEXT NOT NULL,
  buyer_id TEXT NOT NULL,
  items TEXT NOT NULL,
  accepted_at TEXT NOT NULL
);
CREATE INDEX queue_purchases_event ON queue_purchases (event_id, seq);

-- One row per event that has ever had a purchase queued: how many wait, and which worker holds the event.
-- A lease per event (not per entry) is what keeps one event's purchases in order with several workers.
CREATE TABLE queue_events (
  event_id TEXT PRIMARY KEY,
  pending INTEGER NOT NULL DEFAULT 0 CHECK (pending >= 0),
  lease_owner TEXT,
  lease_expires_at INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE idempotency_keys (
  event_id TEXT NOT NULL,
  buyer_id TEXT NOT NULL,
  key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  purchase_id TEXT NOT NULL,
  created_at TEXT NOT NULL,
  PRIMARY KEY (event_id, buyer_id, key)
) WITHOUT ROWID;
