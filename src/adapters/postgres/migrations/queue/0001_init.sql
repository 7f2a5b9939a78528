-- The queue as tables in PostgreSQL (the default queue when the database is PostgreSQL), the same design as
-- the SQLite queue. Client text (buyer ids, keys) is stored as the adapter's toDb() writes it.

-- seq is the acceptance order. Enqueuing transactions take one advisory lock (see PostgresQueue.enqueue), so
-- seq order is also commit order. CACHE 1 (the default) matters: with a larger cache each session would
-- draw from its own block of numbers, and a later commit could carry a smaller seq.
CREATE TABLE queue_purchases (
  seq bigint GENERATED ALWAYS AS IDENTITY (CACHE 1) PRIMARY KEY,
  purchase_id text NOT NULL UNIQUE,
  event_id text NOT NULL,
  buyer_id text NOT NULL,
  items text NOT NULL, -- JSON: [{"ticketTypeId", "quantity"}]
  accepted_at text NOT NULL -- ISO-8601, as the web server wrote it
);
CREATE INDEX queue_purchases_event ON queue_purchases (event_id, seq);

-- One row per event that has ever had a purchase queued: which worker holds the event, until when, and how
-- many times its head purchase has been delivered. A lease per event (not per entry) is what keeps one
-- event's purchases in order with several workers. Only claim and release write these rows, so that a
-- worker's FOR UPDATE SKIP LOCKED never skips an event just because a web server is enqueuing to it.
CREATE TABLE queue_events (
  event_id text PRIMARY KEY,
  lease_owner text,
  lease_expires_at timestamptz,
  head_seq bigint NOT NULL DEFAULT 0,
  head_deliveries integer NOT NULL DEFAULT 0
);

-- How many purchases of each event wait (dead letters not counted): depth() without counting rows.
CREATE TABLE queue_depth (
  event_id text PRIMARY KEY,
  queued bigint NOT NULL DEFAULT 0 CHECK (queued >= 0)
);

CREATE TABLE idempotency_keys (
  event_id text NOT NULL,
  buyer_id text NOT NULL,
  key text NOT NULL,
  request_hash text NOT NULL,
  purchase_id text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (event_id, buyer_id, key)
);

-- Purchases taken out of the queue after too many failed attempts, kept until an operator replays them.
-- seq is the one they had on the queue: dead letters are listed, and replayed, in acceptance order.
CREATE TABLE queue_dead_letters (
  purchase_id text PRIMARY KEY,
  event_id text NOT NULL,
  buyer_id text NOT NULL,
  items text NOT NULL,
  accepted_at text NOT NULL,
  seq bigint NOT NULL,
  reason text NOT NULL,
  dead_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX queue_dead_letters_event ON queue_dead_letters (event_id);
CREATE INDEX queue_dead_letters_order ON queue_dead_letters (dead_at, seq);
