-- Fewer B-tree writes per purchase, which is what the worker's throughput on SQLite is made of: a purchase
-- was a row, an index entry by status, and per ticket a row with three indexes (id, code, purchase).
-- Now a purchase keeps its tickets in one JSON column (read in full with it anyway), code uniqueness is one
-- WITHOUT ROWID index of its own, and counts per status are kept per event, updated once per batch.
ALTER TABLE purchases ADD COLUMN tickets TEXT NOT NULL DEFAULT '[]';
UPDATE purchases
SET tickets = (
  SELECT json_group_array(json_object('id', t.id, 'ticketTypeId', t.ticket_type_id, 'code', t.code) ORDER BY t.rowid)
  FROM tickets t WHERE t.purchase_id = purchases.id
)
WHERE EXISTS (SELECT 1 FROM tickets t WHERE t.purchase_id = purchases.id);

CREATE TABLE ticket_codes (code TEXT PRIMARY KEY) WITHOUT ROWID;
INSERT INTO ticket_codes (code) SELECT code FROM tickets;
DROP TABLE tickets;

CREATE TABLE purchase_counts (
  event_id TEXT NOT NULL REFERENCES events (id),
  status TEXT NOT NULL,
  n INTEGER NOT NULL CHECK (n >= 0),
  PRIMARY KEY (event_id, status)
) WITHOUT ROWID;
INSERT INTO purchase_counts (event_id, status, n) SELECT event_id, status, count(*) FROM purchases GROUP BY event_id, status;
DROP INDEX purchases_event_status;
