-- Idempotency keys are scoped by the canonical buyer id (src/domain/buyer.ts: NFKC, lower-cased, trimmed)
-- from now on: the keys recorded before are re-keyed as nearly as SQLite can (it has no NFKC and lower-cases
-- ASCII only), so a retry still finds its purchase under any ASCII spelling. Where two spellings of one
-- buyer used one key, the oldest purchase keeps it.
CREATE TABLE idempotency_keys_canonical (
  event_id TEXT NOT NULL,
  buyer_id TEXT NOT NULL,
  key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  purchase_id TEXT NOT NULL,
  created_at TEXT NOT NULL,
  PRIMARY KEY (event_id, buyer_id, key)
) WITHOUT ROWID;
INSERT OR IGNORE INTO idempotency_keys_canonical (event_id, buyer_id, key, request_hash, purchase_id, created_at)
  SELECT event_id, lower(trim(buyer_id)), key, request_hash, purchase_id, created_at FROM idempotency_keys
  ORDER BY created_at;
DROP TABLE idempotency_keys;
ALTER TABLE idempotency_keys_canonical RENAME TO idempotency_keys;
