import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KEY_SQL } from '../src/adapters/postgres/queue-records.js';
import { PostgresQueue } from '../src/adapters/postgres/queue.js';
import { PostgresStorage, SQL } from '../src/adapters/postgres/storage.js';
import { KEYED_SESSION, poolConfig } from '../src/adapters/postgres/database.js';
import { PostgresWaitingRoom, SQL as ROOM_SQL } from '../src/adapters/postgres/waiting-room.js';
import { PostgresIndex, SQL as RABBIT_INDEX_SQL } from '../src/adapters/rabbitmq/postgres-index.js';
import { SqsIndex, SQL as SQS_INDEX_SQL } from '../src/adapters/sqs/index-store.js';
import { exclusion, freshPostgresDatabase } from './helpers/services.js';

/**
 * The statements that look up or update a batch of rows by key among all of an event's (the worker's reads
 * under the event's lock, the status reads, the idempotency keys of an enqueue, the waiting room's updates
 * of places, the RabbitMQ and SQS indexes' reads and deletes of queued purchases) must do work in proportion
 * to the keys they are given, whatever the planner's statistics say: a rush grows these tables faster than
 * they are analyzed, and a scan per batch grows with the table. Checked by the rows each statement reads
 * (PostgreSQL's counts for the transaction) on tables filled without ANALYZE, then after it (where the costs
 * of a disk made the planner scan the buyers' totals). Each finds or changes exactly the half of its keys
 * that exist.
 */
const ROWS = 30_000;
const EVENT = 'plans-event';
const TYPE = 'plans-type';

/** Rows this transaction has read so far from the tables, by scans of the table or through its indexes. */
async function rowsReadInTransaction(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ read: string }>(
    'SELECT coalesce(sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)), 0) AS read FROM pg_stat_xact_user_tables',
  );
  return Number(rows[0]!.read);
}

describe.skipIf(exclusion('postgres') !== '')(`PostgreSQL lookups by key${exclusion('postgres')}`, () => {
  let db: { url: string; drop: () => Promise<void> };
  let client: pg.Client;
  /** Connected as the waiting room's and the queue indexes' own pools are, with their server settings. */
  let keyedClient: pg.Client;
  // Half the keys looked up exist, half do not, as in a batch of new buyers among returning ones.
  const half = 250;
  const existing = (prefix: string) => Array.from({ length: half }, (_, i) => `${prefix}${i * 97 + 1}`);
  const missing = (prefix: string) => Array.from({ length: half }, (_, i) => `${prefix}new-${i}`);
  /** The parameters of a statement whose only one is a list of purchase ids. */
  const purchaseIds = () => [[...existing('p'), ...missing('p')]];

  beforeAll(async () => {
    db = await freshPostgresDatabase();
    const storage = new PostgresStorage(db.url);
    const queue = new PostgresQueue(db.url);
    const room = new PostgresWaitingRoom(db.url);
    const rabbitIndex = new PostgresIndex(db.url, 'plans');
    const sqsIndex = new SqsIndex(db.url, 'plans');
    try {
      // One after another: the queue's migrations create the records' tables that the indexes share.
      for (const migrate of [
        () => storage.migrate(),
        () => queue.migrate(),
        () => room.migrate(),
        () => rabbitIndex.migrate(1),
        () => sqsIndex.migrate(),
      ])
        await migrate();
    } finally {
      await Promise.all([
        storage.close(),
        queue.close(),
        room.close(),
        rabbitIndex.close(),
        sqsIndex.close(),
      ]);
    }
    client = new pg.Client({ connectionString: db.url });
    keyedClient = new pg.Client(poolConfig(db.url, KEYED_SESSION));
    await Promise.all([client.connect(), keyedClient.connect()]);
    await client.query(
      `INSERT INTO purchases (id, event_id, buyer_id, buyer_key, status, items, created_at, updated_at)
        SELECT 'p' || g, $1, 'b' || g, 'b' || g, 'confirmed', '[]', 'at', 'at' FROM generate_series(1, $2) g`,
      [EVENT, ROWS],
    );
    await client.query(
      `INSERT INTO buyer_tickets (event_id, buyer_id, ticket_type_id, quantity)
        SELECT $1, 'b' || g, $3, 2 FROM generate_series(1, $2) g`,
      [EVENT, ROWS, TYPE],
    );
    await client.query(
      `INSERT INTO idempotency_keys (event_id, buyer_id, key, request_hash, purchase_id)
        SELECT $1, 'b' || g, 'k' || g, 'h', 'p' || g FROM generate_series(1, $2) g`,
      [EVENT, ROWS],
    );
    for (const table of ['rabbitmq_purchases', 'sqs_purchases']) {
      await client.query(
        `INSERT INTO ${table} (purchase_id, event_id, payload, accepted_at)
          SELECT 'p' || g, $1, '{}', 'at' FROM generate_series(1, $2) g`,
        [EVENT, ROWS],
      );
    }
    await client.query(
      `INSERT INTO room_places (id, event_id, buyer_id, buyer_key, joined_at, join_seq, line_number, last_read_at)
        SELECT 'place' || g, $1, 'b' || g, 'b' || g, 'at', g, g, 0 FROM generate_series(1, $2) g`,
      [EVENT, ROWS],
    );
  });

  afterAll(async () => {
    await keyedClient?.end();
    await client?.end();
    await db?.drop();
  });

  const lookups: Array<{
    name: string;
    sql: string;
    params: () => unknown[];
    /** Run on a connection with the server settings of the room's and the queue indexes' pools. */
    keyed?: true;
  }> = [
    {
      name: 'purchases already applied',
      sql: SQL.alreadyApplied,
      params: purchaseIds,
    },
    {
      name: "buyers' totals",
      sql: SQL.boughtByBuyers,
      params: () => [EVENT, [...existing('b'), ...missing('b')]],
    },
    {
      name: 'purchase statuses',
      sql: SQL.statuses,
      params: purchaseIds,
    },
    {
      name: 'idempotency keys',
      sql: KEY_SQL.read,
      params: () => {
        const buyers = [...existing('b'), ...missing('b')];
        return [buyers.map(() => EVENT), buyers, buyers.map((b) => b.replace('b', 'k'))];
      },
    },
    {
      name: 'room: reads noted',
      sql: ROOM_SQL.noteReads,
      params: () => {
        const places = [...existing('place'), ...missing('place')];
        return [places, places.map(() => 1)];
      },
      keyed: true,
    },
    {
      name: 'room: admissions',
      sql: ROOM_SQL.admit,
      params: () => [[...existing('place'), ...missing('place')], 'at', 'until'],
      keyed: true,
    },
    {
      name: 'room: expiries',
      sql: ROOM_SQL.expire,
      params: () => [[...existing('place'), ...missing('place')]],
      keyed: true,
    },
    {
      name: 'RabbitMQ index: queued purchases',
      sql: RABBIT_INDEX_SQL.seqs,
      params: purchaseIds,
      keyed: true,
    },
    {
      name: 'RabbitMQ index: purchases taken off for burial',
      sql: RABBIT_INDEX_SQL.takeForBurial,
      params: purchaseIds,
      keyed: true,
    },
    {
      name: 'SQS index: purchases still queued',
      sql: SQS_INDEX_SQL.queued,
      params: purchaseIds,
      keyed: true,
    },
    {
      name: 'SQS index: acked purchases removed',
      sql: SQS_INDEX_SQL.remove,
      params: purchaseIds,
      keyed: true,
    },
  ];

  let analyzed = false;
  for (const statistics of ['stale', 'analyzed'] as const) {
    for (const lookup of lookups) {
      it(`${lookup.name}: reads rows in proportion to its keys (${statistics} statistics)`, async () => {
        if (statistics === 'analyzed' && !analyzed) {
          await client.query('ANALYZE');
          analyzed = true;
        }
        const on = lookup.keyed ? keyedClient : client;
        // In a transaction rolled back (some are updates), so that every case sees the same rows.
        await on.query('BEGIN');
        try {
          const before = await rowsReadInTransaction(on);
          const result = await on.query(lookup.sql, lookup.params());
          expect(result.rowCount).toBe(half);
          // 500 keys among 30,000 rows: a scan of the table, or of the event's range of an index, reads
          // them all.
          expect(await rowsReadInTransaction(on)).toBeLessThanOrEqual(before + 2 * half);
        } finally {
          await on.query('ROLLBACK');
        }
      });
    }
  }
});
