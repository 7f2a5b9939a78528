-- The waiting room (src/ports/waiting-room.ts): one line per event, and the places in it.
-- A line's counters say every waiting place's position (line_number - head), so reading a place needs no
-- count over other places. Ids and buyer ids are stored with toDb (NUL-safe), compared in "C" collation.
CREATE TABLE room_lines (
  event_id text COLLATE "C" PRIMARY KEY,
  sales_open_at text NOT NULL,
  session_seconds integer NOT NULL,
  max_active_buyers integer NOT NULL,
  max_admitted_per_minute integer,
  opened boolean NOT NULL DEFAULT false,
  prequeued bigint NOT NULL DEFAULT 0,
  tail bigint NOT NULL DEFAULT 0,
  head bigint NOT NULL DEFAULT 0,
  active bigint NOT NULL DEFAULT 0,
  admitted bigint NOT NULL DEFAULT 0,
  expired bigint NOT NULL DEFAULT 0,
  sold_out boolean NOT NULL DEFAULT false,
  progress jsonb NOT NULL
);

CREATE TABLE room_places (
  id text COLLATE "C" PRIMARY KEY,
  event_id text COLLATE "C" NOT NULL,
  buyer_id text NOT NULL,
  buyer_key text COLLATE "C" NOT NULL,
  joined_at text NOT NULL,
  join_seq bigint,
  line_number bigint,
  outcome text CHECK (outcome IN ('admitted', 'expired')),
  admitted_at text,
  admission_expires_at text,
  released boolean NOT NULL DEFAULT false,
  -- The estimated wait (s) this place was told when it joined: measured against the wait it saw.
  eta_at_join integer,
  last_read_at bigint NOT NULL,
  UNIQUE (event_id, buyer_key)
);
CREATE UNIQUE INDEX room_places_line ON room_places (event_id, line_number);
CREATE INDEX room_places_prequeue ON room_places (event_id, join_seq) WHERE line_number IS NULL;
CREATE INDEX room_places_active ON room_places (event_id) WHERE outcome = 'admitted' AND NOT released;

CREATE TABLE room_purchases (
  place_id text COLLATE "C" NOT NULL,
  purchase_id text COLLATE "C" NOT NULL,
  PRIMARY KEY (place_id, purchase_id)
);
