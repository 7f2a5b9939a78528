-- The index of the RabbitMQ queue (src/adapters/rabbitmq/queue.ts): what a broker cannot answer. A row exists
-- exactly while its purchase is on the queue (or dead-lettered): it is written in the same transaction that
-- waits for RabbitMQ's publisher confirm, and deleted when a worker acks. seq orders events for claim()
-- ("oldest event first"); the order within an event is the order of its partition queue in RabbitMQ.
CREATE TABLE rabbitmq_purchases (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  purchase_id TEXT NOT NULL UNIQUE,
  event_id TEXT NOT NULL,
  payload TEXT NOT NULL, -- the AcceptedPurchase as JSON, exactly the message body
  accepted_at TEXT NOT NULL,
  -- Claims of this purchase as the head of a batch: the delivery count the worker's poison detection
  -- reads. RabbitMQ's own x-delivery-count cannot serve: it also counts messages that were only prefetched
  -- by a worker that died, which were never tried.
  claims INTEGER NOT NULL DEFAULT 0,
  dead_reason TEXT, -- NULL while queued
  dead_at TEXT
);
CREATE INDEX rabbitmq_purchases_dead ON rabbitmq_purchases (dead_at, seq) WHERE dead_at IS NOT NULL;

-- Queued and dead purchases per event, kept by the adapter in the same transactions: depth() without
-- counting rows (the web servers read it every 250 ms).
CREATE TABLE rabbitmq_counts (
  event_id TEXT PRIMARY KEY,
  queued INTEGER NOT NULL DEFAULT 0 CHECK (queued >= 0),
  dead INTEGER NOT NULL DEFAULT 0 CHECK (dead >= 0)
) WITHOUT ROWID;

CREATE TABLE rabbitmq_idempotency_keys (
  event_id TEXT NOT NULL,
  buyer_id TEXT NOT NULL,
  key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  purchase_id TEXT NOT NULL,
  created_at TEXT NOT NULL,
  PRIMARY KEY (event_id, buyer_id, key)
) WITHOUT ROWID;

-- The partition count each queue prefix was created with: an event's partition is its hash modulo that
-- count, so changing it while purchases wait would split an event over two queues and break its order.
CREATE TABLE rabbitmq_topology (
  prefix TEXT PRIMARY KEY,
  partitions INTEGER NOT NULL
) WITHOUT ROWID;
