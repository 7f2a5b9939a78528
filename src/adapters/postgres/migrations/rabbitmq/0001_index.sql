-- The index of the RabbitMQ queue in PostgreSQL: the same design as the SQLite one (see
-- src/adapters/rabbitmq/index-store.ts). Client text (buyer ids, keys) is stored as toDb() writes it; the
-- payload is JSON text, in which JSON.stringify already escapes every control character.
CREATE TABLE rabbitmq_purchases (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  purchase_id text NOT NULL UNIQUE,
  event_id text NOT NULL,
  payload text NOT NULL, -- the AcceptedPurchase as JSON, exactly the message body
  accepted_at text NOT NULL,
  claims integer NOT NULL DEFAULT 0, -- claims as head of a batch: the worker's delivery count
  dead_reason text,
  dead_at timestamptz
);
CREATE INDEX rabbitmq_purchases_dead ON rabbitmq_purchases (dead_at, seq) WHERE dead_at IS NOT NULL;

-- Queued and dead purchases per event: depth() without counting rows. Publishers of one event already
-- take turns on their partition's lock, so this row adds no waiting of its own.
CREATE TABLE rabbitmq_counts (
  event_id text PRIMARY KEY,
  queued bigint NOT NULL DEFAULT 0 CHECK (queued >= 0),
  dead bigint NOT NULL DEFAULT 0 CHECK (dead >= 0)
);

CREATE TABLE rabbitmq_idempotency_keys (
  event_id text NOT NULL,
  buyer_id text NOT NULL,
  key text NOT NULL,
  request_hash text NOT NULL,
  purchase_id text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (event_id, buyer_id, key)
);

-- The partition count each queue prefix was created with (see the SQLite migration).
CREATE TABLE rabbitmq_topology (
  prefix text PRIMARY KEY,
  partitions integer NOT NULL
);
