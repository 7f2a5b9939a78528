/**
 * What the SQLite queue records beside its purchases: idempotency keys and dead letters (tables of queue
 * migrations 0001 and 0002). Named statements, prepared with the queue's own (prepareAll).
 */

/** Idempotency keys: the owner of a key, and recording a new one. */
export const KEY_SQL = {
  /** request_hash, purchase_id of the key (event_id ?, buyer_id ?, key ?), or no row. */
  findKey:
    'SELECT request_hash, purchase_id FROM idempotency_keys WHERE event_id = ? AND buyer_id = ? AND key = ?',
  /** Records a key: event_id, buyer_id, key, request_hash, purchase_id, created_at. */
  insertKey:
    'INSERT INTO idempotency_keys (event_id, buyer_id, key, request_hash, purchase_id, created_at) VALUES (?, ?, ?, ?, ?, ?)',
} as const;

/** Dead letters: purchases taken off the queue after too many failed attempts, until replayed. */
export const DEAD_LETTER_SQL = {
  /**
   * Copies the queued purchases of event @event up to seq @last to the dead letters, with @reason and
   * @now; the caller then removes them from the queue. Safe to repeat.
   */
  bury: `INSERT INTO queue_dead_letters (purchase_id, event_id, buyer_id, items, accepted_at, reason, dead_at)
    SELECT purchase_id, event_id, buyer_id, items, accepted_at, @reason, @now FROM queue_purchases
    WHERE event_id = @event AND seq <= @last ON CONFLICT (purchase_id) DO NOTHING`,
  /** The ? oldest dead letters (all columns). */
  deadLetters: 'SELECT * FROM queue_dead_letters ORDER BY dead_at, accepted_at LIMIT ?',
  /** The dead letters whose purchase id is in the JSON array ?, oldest first. */
  deadLettersNamed:
    'SELECT * FROM queue_dead_letters WHERE purchase_id IN (SELECT value FROM json_each(?)) ORDER BY dead_at, accepted_at',
  /** Every dead letter, oldest first. */
  deadLettersAll: 'SELECT * FROM queue_dead_letters ORDER BY dead_at, accepted_at',
  /** Deletes dead letter ? (put back on the queue). */
  unbury: 'DELETE FROM queue_dead_letters WHERE purchase_id = ?',
  /** Dead letter ? (all columns), or no row. */
  findDead: 'SELECT * FROM queue_dead_letters WHERE purchase_id = ?',
  /** How many dead letters event ? has. */
  deadOf: 'SELECT count(*) FROM queue_dead_letters WHERE event_id = ?',
} as const;
