-- Buyer identity. An event says what it takes as buyer ids ('any' text, the default for events made before,
-- or 'email'), and a purchase keeps, beside the id as the buyer typed it (shown), its canonical form
-- (src/domain/buyer.ts: NFKC, lower-cased, trimmed), which the admin search by buyer goes by. Totals in
-- buyer_tickets are keyed by the canonical id from now on.
ALTER TABLE events ADD COLUMN buyer_id_kind TEXT NOT NULL DEFAULT 'any' CHECK (buyer_id_kind IN ('any', 'email'));
ALTER TABLE purchases ADD COLUMN buyer_key TEXT;
-- SQLite has no NFKC and lower-cases ASCII only: purchases made before are found by this approximation
-- of their canonical id, or by the id exactly as typed.
UPDATE purchases SET buyer_key = lower(trim(buyer_id));
