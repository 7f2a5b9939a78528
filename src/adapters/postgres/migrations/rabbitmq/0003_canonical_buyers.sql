-- The keys 0002 moved into the shared idempotency_keys came after records' own re-keying (records
-- 0002_canonical_buyers, applied before this component's migrations): re-key them by the canonical buyer
-- id the same way. Keys already canonical stay as they are.
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
