-- The waiting room (src/ports/waiting-room.ts): one line per event, and the places in it.
-- A line's counters say every waiting place's position (line_number - head), so reading a place needs no
-- count over other places.
CREATE TABLE room_lines (
  event_id TEXT PRIMARY KEY,
  sales_open_at TEXT NOT NULL,
  session_seconds INTEGER NOT NULL,
  max_active_buyers INTEGER NOT NULL,
  max_admitted_per_minute INTEGER,
  opened INTEGER NOT NULL DEFAULT 0,
  prequeued INTEGER NOT NULL DEFAULT 0,
  tail INTEGER NOT NULL DEFAULT 0,
  head INTEGER NOT NULL DEFAULT 0,
  active INTEGER NOT NULL DEFAULT 0,
  admitted INTEGER NOT NULL DEFAULT 0,
  expired INTEGER NOT NULL DEFAULT 0,
  sold_out INTEGER NOT NULL DEFAULT 0,
  progress TEXT NOT NULL
);

CREATE TABLE room_places (
  id TEXT PRIMARY KEY,
  event_id TEXT NOT NULL,
  buyer_id TEXT NOT NULL,
  buyer_key TEXT NOT NULL,
  joined_at TEXT NOT NULL,
  -- Arrival rank among the pre-queue (the lottery's input order); NULL for places taken after opening.
  join_seq INTEGER,
  line_number INTEGER,
  outcome TEXT CHECK (outcome IN ('admitted', 'expired')),
  admitted_at TEXT,
  admission_expires_at TEXT,
  released INTEGER NOT NULL DEFAULT 0,
  -- The estimated wait (s) this place was told when it joined: measured against the wait it saw.
  eta_at_join INTEGER,
  last_read_at INTEGER NOT NULL,
  UNIQUE (event_id, buyer_key)
);
CREATE UNIQUE INDEX room_places_line ON room_places (event_id, line_number);
CREATE INDEX room_places_prequeue ON room_places (event_id, join_seq) WHERE line_number IS NULL;
CREATE INDEX room_places_active ON room_places (event_id) WHERE outcome = 'admitted' AND released = 0;

CREATE TABLE room_purchases (
  place_id TEXT NOT NULL,
  purchase_id TEXT NOT NULL,
  PRIMARY KEY (place_id, purchase_id)
) WITHOUT ROWID;
