-- Buyer identity. An event says what it takes as buyer ids ('any' text, the default for events made before,
-- or 'email'), and a purchase keeps, beside the id as the buyer typed it (shown), its canonical form
-- (src/domain/buyer.ts: NFKC, lower-cased, trimmed), which the admin search by buyer goes by. Totals in
-- buyer_tickets are keyed by the canonical id from now on.
ALTER TABLE events ADD COLUMN buyer_id_kind TEXT NOT NULL DEFAULT 'any' CHECK (buyer_id_kind IN ('any', 'email'));
ALTER TABLE purchases ADD COLUMN buyer_key TEXT;

-- What was recorded before, keyed the new way as nearly as SQL can: SQLite has no NFKC and lower-cases
-- ASCII only, so this is the canonical id of every ASCII buyer id and an approximation of the others (a
-- purchase is also found by its id exactly as typed). Totals of spellings that are now one buyer are added
-- together, so the limit counts what each bought before.
UPDATE purchases SET buyer_key = lower(trim(buyer_id));
CREATE TABLE buyer_tickets_canonical (
  event_id TEXT NOT NULL,
  buyer_id TEXT NOT NULL,
  ticket_type_id TEXT NOT NULL REFERENCES ticket_types (id),
  quantity INTEGER NOT NULL CHECK (quantity >= 0),
  PRIMARY KEY (event_id, buyer_id, ticket_type_id)
) WITHOUT ROWID;
INSERT INTO buyer_tickets_canonical (event_id, buyer_id, ticket_type_id, quantity)
  SELECT event_id, lower(trim(buyer_id)), ticket_type_id, sum(quantity) FROM buyer_tickets GROUP BY 1, 2, 3;
DROP TABLE buyer_tickets;
ALTER TABLE buyer_tickets_canonical RENAME TO buyer_tickets;
