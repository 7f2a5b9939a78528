-- Deliveries of the event's head purchase: a head delivered again and again is a poison purchase (or kills
-- its worker), and the worker isolates it, then dead-letters it.
ALTER TABLE queue_events ADD COLUMN head_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE queue_events ADD COLUMN head_deliveries INTEGER NOT NULL DEFAULT 0;

-- Purchases taken out of the queue after too many failed attempts, kept until an operator replays them.
CREATE TABLE queue_dead_letters (
  purchase_id TEXT PRIMARY KEY,
  event_id TEXT NOT NULL,
  buyer_id TEXT NOT NULL,
  items TEXT NOT NULL,
  accepted_at TEXT NOT NULL,
  reason TEXT NOT NULL,
  dead_at TEXT NOT NULL
);
CREATE INDEX queue_dead_letters_event ON queue_dead_letters (event_id);
