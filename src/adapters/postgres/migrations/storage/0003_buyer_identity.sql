-- Buyer identity. An event says what it takes as buyer ids ('any' text, the default for events made before,
-- or 'email'), and a purchase keeps, beside the id as the buyer typed it (shown), its canonical form
-- (src/domain/buyer.ts: NFKC, lower-cased, trimmed), which the admin search by buyer goes by. Totals in
-- buyer_tickets are keyed by the canonical id from now on.
ALTER TABLE events
  ADD COLUMN buyer_id_kind text NOT NULL DEFAULT 'any' CHECK (buyer_id_kind IN ('any', 'email'));
ALTER TABLE purchases ADD COLUMN buyer_key text COLLATE "C";
-- The same steps in SQL for the purchases made before (lower() of a "C" value lower-cases ASCII only; such
-- a purchase is also found by the id exactly as typed).
UPDATE purchases SET buyer_key = lower(btrim(normalize(buyer_id, NFKC)));
