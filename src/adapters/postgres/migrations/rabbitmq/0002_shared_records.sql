-- The index keeps its idempotency keys and dead letters in the tables it shares with the table queue
-- (component records, applied before this). Its own keys move there unchanged (the same columns, the same
-- stored forms); its dead purchases leave rabbitmq_purchases for queue_dead_letters with their seq, reason
-- and time, so they are listed and replayed in the same order as before.
INSERT INTO idempotency_keys (event_id, buyer_id, key, request_hash, purchase_id, created_at)
SELECT event_id, buyer_id, key, request_hash, purchase_id, created_at FROM rabbitmq_idempotency_keys
ON CONFLICT (event_id, buyer_id, key) DO NOTHING;

-- The payload is the purchase as JSON.stringify wrote it. Its strings become toDb() forms, as the shared
-- table stores client text: a token-wise rewrite of the JSON escapes \\ (one backslash) into \\\\ (two) and
-- \u0000 (NUL, which PostgreSQL's JSON functions refuse) into \\0. Items hold only the event's own ticket
-- type ids, which have neither, so they come out as written. The index stored reasons verbatim (a reason
-- cannot hold NUL there): only their backslashes double.
INSERT INTO queue_dead_letters (purchase_id, event_id, buyer_id, items, accepted_at, seq, reason, dead_at)
SELECT p.purchase_id, p.event_id, d.purchase ->> 'buyerId', (d.purchase -> 'items')::text, p.accepted_at,
  p.seq, replace(p.dead_reason, '\', '\\'), p.dead_at
FROM rabbitmq_purchases p
  CROSS JOIN LATERAL (
    SELECT regexp_replace(p.payload, '\\(\\)|\\u(0)000', '\\\\\1\1\2', 'g')::json AS purchase
  ) d
WHERE p.dead_at IS NOT NULL
ON CONFLICT (purchase_id) DO NOTHING;

DELETE FROM rabbitmq_purchases WHERE dead_at IS NOT NULL;
-- Dropping the columns drops the partial index rabbitmq_purchases_dead with them.
ALTER TABLE rabbitmq_purchases DROP COLUMN dead_reason, DROP COLUMN dead_at;
-- Dead letters per event are counted in queue_dead_letters now.
ALTER TABLE rabbitmq_counts DROP COLUMN dead;
DROP TABLE rabbitmq_idempotency_keys;
