-- Less work per row on the tables applyBatch writes (purchases, tickets, buyer_tickets): each allocated
-- purchase costs a handful of rows and index entries there, and that is what bounds allocation on
-- PostgreSQL. Measured with batches of 500 purchases of 2 tickets (medians of 5 alternating runs, on the
-- development machine while it was shared: load average ~10 on 2 cores, so the absolute figures are low):
-- 0001 alone ~2,500 purchases/s; without the foreign keys and the third index on tickets ~4,300/s; with
-- the keys in the C collation ~5,400/s.
--
-- Foreign keys cost a trigger per inserted row (a lookup of the parent row and a lock on it). These could
-- never fail: applyBatch locks the event's ticket types before anything else and writes only purchases of
-- that event and tickets of those ticket types (allocate() refuses any other), each ticket in the same
-- transaction as its purchase. The constraints that keep the invariants stay: CHECK (sold + held <=
-- capacity), the primary key of purchases, UNIQUE ticket codes.
ALTER TABLE purchases DROP CONSTRAINT purchases_event_id_fkey;
ALTER TABLE buyer_tickets DROP CONSTRAINT buyer_tickets_ticket_type_id_fkey;
ALTER TABLE tickets DROP CONSTRAINT tickets_purchase_id_fkey;
ALTER TABLE tickets DROP CONSTRAINT tickets_ticket_type_id_fkey;

-- Tickets are read by purchase, in order, and never by id: (purchase_id, position) is their key, which
-- saves the separate index on id (ids are 96 random bits, unique in practice; codes stay UNIQUE).
ALTER TABLE tickets DROP CONSTRAINT tickets_pkey;
DROP INDEX tickets_purchase;
ALTER TABLE tickets ADD PRIMARY KEY (purchase_id, position);

-- Ids, codes and buyer ids are compared for equality and kept in indexes, never sorted for people: the C
-- collation compares them as bytes, where the database's default (e.g. en_US.UTF-8, or C.UTF-8 on Debian,
-- which PostgreSQL 15 does not treat as C) goes through strcoll on every comparison.
ALTER TABLE events ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE ticket_types ALTER COLUMN id TYPE text COLLATE "C", ALTER COLUMN event_id TYPE text COLLATE "C";
ALTER TABLE purchases
  ALTER COLUMN id TYPE text COLLATE "C",
  ALTER COLUMN event_id TYPE text COLLATE "C",
  ALTER COLUMN buyer_id TYPE text COLLATE "C";
ALTER TABLE tickets
  ALTER COLUMN id TYPE text COLLATE "C",
  ALTER COLUMN purchase_id TYPE text COLLATE "C",
  ALTER COLUMN ticket_type_id TYPE text COLLATE "C",
  ALTER COLUMN code TYPE text COLLATE "C";
ALTER TABLE buyer_tickets
  ALTER COLUMN event_id TYPE text COLLATE "C",
  ALTER COLUMN buyer_id TYPE text COLLATE "C",
  ALTER COLUMN ticket_type_id TYPE text COLLATE "C";
