-- The system of record on PostgreSQL. The constraints are the last line of defence, whatever a worker
-- computes: CHECK (sold + held <= capacity) fails a commit that would oversell, the primary key of purchases
-- fails one that would apply a purchase twice, and UNIQUE (code) one that would issue a ticket code twice.
--
-- Text that comes from clients (names, buyer ids) is stored as the adapter's toDb() writes it (NUL as \0,
-- backslash as \\), since PostgreSQL text cannot hold U+0000. Times the API shows (sales_open_at,
-- created_at, updated_at of purchases) are kept as the ISO-8601 text they were given, so they read back
-- exactly.
CREATE TABLE events (
  id text PRIMARY KEY,
  name text NOT NULL,
  sales_open_at text NOT NULL,
  hold_seconds integer NOT NULL DEFAULT 0 CHECK (hold_seconds >= 0),
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ticket_types (
  id text PRIMARY KEY,
  event_id text NOT NULL REFERENCES events (id),
  position integer NOT NULL,
  name text NOT NULL,
  price_cents bigint NOT NULL CHECK (price_cents >= 0),
  capacity integer NOT NULL CHECK (capacity > 0),
  max_per_buyer integer NOT NULL CHECK (max_per_buyer > 0),
  sold integer NOT NULL DEFAULT 0,
  held integer NOT NULL DEFAULT 0,
  CHECK (sold >= 0 AND held >= 0 AND sold + held <= capacity)
);
CREATE INDEX ticket_types_event ON ticket_types (event_id, position);

-- A purchase appears here once allocated; before that it lives on the queue.
CREATE TABLE purchases (
  id text PRIMARY KEY,
  event_id text NOT NULL REFERENCES events (id),
  buyer_id text NOT NULL,
  status text NOT NULL CHECK (status IN ('held', 'confirmed', 'rejected', 'expired', 'cancelled')),
  reason text CHECK (reason IN ('sold_out', 'insufficient_inventory', 'limit_exceeded')),
  items text NOT NULL, -- JSON: [{"ticketTypeId", "quantity"}]
  hold_expires_at text,
  created_at text NOT NULL,
  updated_at text NOT NULL
);
CREATE INDEX purchases_event_status ON purchases (event_id, status);

-- Tickets each buyer holds or bought per ticket type, across all their purchases (the per-buyer limit).
CREATE TABLE buyer_tickets (
  event_id text NOT NULL,
  buyer_id text NOT NULL,
  ticket_type_id text NOT NULL REFERENCES ticket_types (id),
  quantity integer NOT NULL CHECK (quantity >= 0),
  PRIMARY KEY (event_id, buyer_id, ticket_type_id)
);

-- position: the ticket's place within its purchase, the order they were issued in.
CREATE TABLE tickets (
  id text PRIMARY KEY,
  purchase_id text NOT NULL REFERENCES purchases (id),
  position integer NOT NULL,
  ticket_type_id text NOT NULL REFERENCES ticket_types (id),
  code text NOT NULL UNIQUE
);
CREATE INDEX tickets_purchase ON tickets (purchase_id, position);
