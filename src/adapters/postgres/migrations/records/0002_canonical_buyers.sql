-- Idempotency keys are scoped by the canonical buyer id (src/domain/buyer.ts: NFKC, lower-cased, trimmed)
-- from now on: the keys recorded before are re-keyed by the same steps in SQL, so a retry still finds its
-- purchase under any spelling. lower() follows the database's own collation here (under a "C" one it
-- lower-cases ASCII only). Where two spellings of one buyer used one key, the oldest purchase keeps it.
CREATE TEMPORARY TABLE canonical_idempotency_keys AS
SELECT DISTINCT ON (event_id, canonical, key)
  event_id, canonical AS buyer_id, key, request_hash, purchase_id, created_at
FROM (
  SELECT k.*, btrim(lower(normalize(k.buyer_id, NFKC) COLLATE "default")) AS canonical FROM idempotency_keys k
) keyed
ORDER BY event_id, canonical, key, created_at;
DELETE FROM idempotency_keys;
INSERT INTO idempotency_keys (event_id, buyer_id, key, request_hash, purchase_id, created_at)
SELECT event_id, buyer_id, key, request_hash, purchase_id, created_at FROM canonical_idempotency_keys;
DROP TABLE canonical_idempotency_keys;
