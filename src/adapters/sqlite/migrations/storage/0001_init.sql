-- The system of record. The CHECK on ticket_types is the last line of defence against oversell: whatever a
-- worker computes, a commit that would sell more than capacity fails.
CREATE TABLE events (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  sales_open_at TEXT NOT NULL,
  hold_seconds INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL
);

CREATE TABLE ticket_types (
  id TEXT PRIMARY KEY,
  event_id TEXT NOT NULL REFERENCES events (id),
  position INTEGER NOT NULL,
  name TEXT NOT NULL,
  price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
  capacity INTEGER NOT NULL CHECK (capacity > 0),
  max_per_buyer INTEGER NOT NULL CHECK (max_per_buyer > 0),
  sold INTEGER NOT NULL DEFAULT 0,
  held INTEGER NOT NULL DEFAULT 0,
  CHECK (sold >= 0 AND held >= 0 AND sold + held <= capacity)
);
CREATE INDEX ticket_types_event ON ticket_types (event_id, position);

-- A purchase appears here once allocated; before that it lives on the queue. The primary key is what makes
-- a redelivered batch harmless.
CREATE TABLE purchases (
  id TEXT PRIMARY KEY,
  event_id TEXT NOT NULL REFERENCES events (id),
  buyer_id TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('held', 'confirmed', 'rejected', 'expired', 'cancelled')),
  reason TEXT CHECK (reason IN ('sold_out', 'insufficient_inventory', 'limit_exceeded')),
  items TEXT NOT NULL,
  hold_expires_at TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX purchases_event_status ON purchases (event_id, status);

-- Tickets each buyer holds or bought per ticket type, across all their purchases (the per-buyer limit).
CREATE TABLE buyer_tickets (
  event_id TEXT NOT NULL,
  buyer_id TEXT NOT NULL,
  ticket_type_id TEXT NOT NULL REFERENCES ticket_types (id),
  quantity INTEGER NOT NULL CHECK (quantity >= 0),
  PRIMARY KEY (event_id, buyer_id, ticket_type_id)
) WITHOUT ROWID;

CREATE TABLE tickets (
  id TEXT PRIMARY KEY,
  purchase_id TEXT NOT NULL REFERENCES purchases (id),
  ticket_type_id TEXT NOT NULL REFERENCES ticket_types (id),
  code TEXT NOT NULL UNIQUE
);
CREATE INDEX tickets_purchase ON tickets (purchase_id);
