-- The index of the SQS queue in PostgreSQL (src/adapters/sqs/index-store.ts): the purchases on the queue,
-- in acceptance order. Idempotency keys and dead letters live in the records tables it shares with the
-- other queues (component records, applied before this). The payload is the AcceptedPurchase as JSON text.
CREATE TABLE sqs_purchases (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  purchase_id text NOT NULL UNIQUE,
  event_id text NOT NULL,
  payload text NOT NULL,
  accepted_at text NOT NULL,
  claims integer NOT NULL DEFAULT 0 -- claims as head of a batch: the worker's delivery count
);
CREATE INDEX sqs_purchases_event ON sqs_purchases (event_id, seq);
