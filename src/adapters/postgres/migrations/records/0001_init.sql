-- The records a queue keeps beside its entries: idempotency keys and dead letters. The table queue and the
-- RabbitMQ queue's index share them (src/adapters/postgres/queue-records.ts). These are the queue
-- migration's tables, exactly: on a database that has the table queue this changes nothing; on one with
-- only a RabbitMQ index it creates them. Client text (buyer ids, keys, reasons) is stored as toDb() writes it.
CREATE TABLE IF NOT EXISTS idempotency_keys (
  event_id text NOT NULL,
  buyer_id text NOT NULL,
  key text NOT NULL,
  request_hash text NOT NULL,
  purchase_id text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (event_id, buyer_id, key)
);

-- Purchases taken out of the queue after too many failed attempts, kept until an operator replays them.
-- seq is the one they had on the queue: dead letters are listed, and replayed, in acceptance order.
CREATE TABLE IF NOT EXISTS queue_dead_letters (
  purchase_id text PRIMARY KEY,
  event_id text NOT NULL,
  buyer_id text NOT NULL,
  items text NOT NULL,
  accepted_at text NOT NULL,
  seq bigint NOT NULL,
  reason text NOT NULL,
  dead_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS queue_dead_letters_event ON queue_dead_letters (event_id);
CREATE INDEX IF NOT EXISTS queue_dead_letters_order ON queue_dead_letters (dead_at, seq);
