-- Buyer identity. An event says what it takes as buyer ids ('any' text, the default for events made before,
-- or 'email'), and a purchase keeps, beside the id as the buyer typed it (shown), its canonical form
-- (src/domain/buyer.ts: NFKC, lower-cased, trimmed), which the admin search by buyer goes by. Totals in
-- buyer_tickets are keyed by the canonical id from now on.
ALTER TABLE events
  ADD COLUMN buyer_id_kind text NOT NULL DEFAULT 'any' CHECK (buyer_id_kind IN ('any', 'email'));
ALTER TABLE purchases ADD COLUMN buyer_key text COLLATE "C";

-- What was recorded before, keyed the new way by the same steps in SQL. lower() follows the database's
-- own collation here (under a "C" one it lower-cases ASCII only: then a purchase is also found by its id
-- exactly as typed). Totals of spellings that are now one buyer are added together, so the limit counts
-- what each bought before.
UPDATE purchases SET buyer_key = btrim(lower(normalize(buyer_id, NFKC) COLLATE "default"));
CREATE TEMPORARY TABLE buyer_tickets_canonical ON COMMIT DROP AS
  SELECT event_id, btrim(lower(normalize(buyer_id, NFKC) COLLATE "default")) AS buyer_id, ticket_type_id,
    sum(quantity)::integer AS quantity
  FROM buyer_tickets GROUP BY 1, 2, 3;
DELETE FROM buyer_tickets;
INSERT INTO buyer_tickets (event_id, buyer_id, ticket_type_id, quantity)
  SELECT event_id, buyer_id, ticket_type_id, quantity FROM buyer_tickets_canonical;
