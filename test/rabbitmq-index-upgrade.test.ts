import { readFileSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toDb } from '../src/adapters/postgres/database.js';
import { PostgresQueue } from '../src/adapters/postgres/queue.js';
import { partitionOf } from '../src/adapters/rabbitmq/broker.js';
import type { IndexedPurchase } from '../src/adapters/rabbitmq/index-store.js';
import { PostgresIndex } from '../src/adapters/rabbitmq/postgres-index.js';
import { canonicalBuyerId } from '../src/domain/buyer.js';
import type { AcceptedPurchase } from '../src/domain/types.js';
import { exclusion, freshPostgresDatabase, included } from './helpers/services.js';

const PARTITIONS = 8;
const ALL_PARTITIONS = Array.from({ length: PARTITIONS }, (_, p) => p);
const MIGRATIONS = new URL('../src/adapters/postgres/migrations/', import.meta.url);

/** The migration ledger and the index's first migration, as a process of the previous version left them. */
const LEDGER = `CREATE TABLE schema_migrations (
  component text NOT NULL,
  version integer NOT NULL,
  name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (component, version)
)`;

function purchase(id: string, buyerId: string, acceptedAt: string): AcceptedPurchase {
  return {
    purchaseId: id,
    eventId: 'ev-1',
    buyerId,
    canonicalBuyerId: canonicalBuyerId(buyerId),
    items: [{ ticketTypeId: 'tt-1', quantity: 2 }],
    acceptedAt,
  };
}

// Client text at its most awkward: a backslash, NUL, a quote, and what looks like escapes of both.
const queued = purchase('p-queued', 'ann', '2026-01-01T10:00:00.000Z');
const firstDead = purchase('p-dead-1', 'Zoë "🎟" \\ \u0000 \\0 \\u0000', '2026-01-01T10:00:01.000Z');
const secondDead = purchase('p-dead-2', 'bob', '2026-01-01T10:00:02.000Z');
const firstReason = 'allocation failed: C:\\tickets';

describe.skipIf(!included('postgres'))(
  `upgrading a RabbitMQ index to the shared records${exclusion('postgres')}`,
  () => {
    let db: { url: string; drop: () => Promise<void> };
    let index: PostgresIndex;
    const prefix = 'onsale_upgrade';

    beforeAll(async () => {
      db = await freshPostgresDatabase();
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        await client.query(LEDGER);
        await client.query(readFileSync(new URL('rabbitmq/0001_index.sql', MIGRATIONS), 'utf8'));
        await client.query(
          "INSERT INTO schema_migrations (component, version, name) VALUES ('rabbitmq', 1, '0001_index.sql')",
        );
        await client.query('INSERT INTO rabbitmq_topology (prefix, partitions) VALUES ($1, $2)', [
          prefix,
          PARTITIONS,
        ]);
        // What the previous index wrote: three purchases (two of them buried, oldest first), their counts,
        // and idempotency keys for two of them.
        for (const p of [queued, firstDead, secondDead]) {
          await client.query(
            'INSERT INTO rabbitmq_purchases (purchase_id, event_id, payload, accepted_at) VALUES ($1, $2, $3, $4)',
            [p.purchaseId, p.eventId, JSON.stringify(p), p.acceptedAt],
          );
        }
        await client.query(
          `UPDATE rabbitmq_purchases SET dead_reason = $2, dead_at = '2026-01-01T10:01:00Z' WHERE purchase_id = $1`,
          [firstDead.purchaseId, firstReason],
        );
        await client.query(
          `UPDATE rabbitmq_purchases SET dead_reason = 'poison', dead_at = '2026-01-01T10:02:00Z' WHERE purchase_id = $1`,
          [secondDead.purchaseId],
        );
        await client.query("INSERT INTO rabbitmq_counts (event_id, queued, dead) VALUES ('ev-1', 1, 2)");
        await client.query(
          `INSERT INTO rabbitmq_idempotency_keys (event_id, buyer_id, key, request_hash, purchase_id)
         VALUES ($1, $2, $3, 'hash-q', $4), ($1, $5, $6, 'hash-d', $7)`,
          [
            'ev-1',
            toDb(queued.buyerId),
            toDb('key \\ \u0000'),
            queued.purchaseId,
            toDb(firstDead.buyerId),
            'key-d',
            firstDead.purchaseId,
          ],
        );
      } finally {
        await client.end();
      }
      index = new PostgresIndex(db.url, prefix);
      await index.migrate(PARTITIONS);
    });

    afterAll(async () => {
      await index?.close();
      await db?.drop();
    });

    /** A request for `p` with an idempotency key, in the partition its event hashes to. */
    const request = (p: AcceptedPurchase, key: string, requestHash: string) => ({
      request: { purchase: p, idempotency: { key, requestHash } },
      partition: partitionOf(p.eventId, PARTITIONS),
    });

    it('keeps resolving the old idempotency keys to the same purchases', async () => {
      const publish = async () => {
        throw new Error('nothing should be published');
      };
      const again = purchase('p-new', queued.buyerId, '2026-01-01T11:00:00.000Z');
      expect(await index.record([request(again, 'key \\ \u0000', 'hash-q')], publish)).toEqual([
        { status: 'duplicate', purchaseId: queued.purchaseId },
      ]);
      expect(await index.record([request(again, 'key \\ \u0000', 'another body')], publish)).toEqual([
        { status: 'conflict' },
      ]);
      const dead = purchase('p-new-2', firstDead.buyerId, '2026-01-01T11:00:00.000Z');
      expect(await index.record([request(dead, 'key-d', 'hash-d')], publish)).toEqual([
        { status: 'duplicate', purchaseId: firstDead.purchaseId },
      ]);
    });

    it('lists the old dead letters in order, counts and finds them, and still says they are dead', async () => {
      expect(await index.deadLetters(10)).toEqual([
        { purchase: firstDead, reason: firstReason, deadAt: '2026-01-01T10:01:00.000Z' },
        { purchase: secondDead, reason: 'poison', deadAt: '2026-01-01T10:02:00.000Z' },
      ]);
      expect(await index.depthOf('ev-1')).toEqual({ queued: 1, deadLetters: 2 });
      expect(await index.depthOf('ev-never')).toEqual({ queued: 0, deadLetters: 0 });
      expect(await index.depth()).toEqual({ depth: 1, oldestAcceptedAt: queued.acceptedAt });
      expect(await index.find(firstDead.purchaseId)).toEqual(firstDead);
      expect(await index.find(queued.purchaseId)).toEqual(queued);
      const seen = await index.inspect(partitionOf('ev-1', PARTITIONS), [
        queued.purchaseId,
        firstDead.purchaseId,
        'p-unknown',
      ]);
      expect(seen).toEqual({
        queued: [queued.purchaseId],
        dead: [firstDead.purchaseId],
        gone: ['p-unknown'],
        headClaims: 1,
      });
    });

    it('replays the old dead letters at the tail, oldest first', async () => {
      const published: IndexedPurchase[] = [];
      const replayed = await index.revive(undefined, ALL_PARTITIONS, async (revived) => {
        published.push(...revived);
      });
      expect(replayed).toBe(2);
      expect(published.map((r) => r.purchase)).toEqual([firstDead, secondDead]);
      expect(published[0]!.seq).toBeLessThan(published[1]!.seq);
      expect(await index.deadLetters(10)).toEqual([]);
      expect(await index.depthOf('ev-1')).toEqual({ queued: 3, deadLetters: 0 });
      expect(await index.depth()).toEqual({ depth: 3, oldestAcceptedAt: queued.acceptedAt });
    });

    it('leaves no second copy of the records behind, and migrates again as a no-op', async () => {
      await index.migrate(PARTITIONS);
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        const { rows } = await client.query<{ keys: string | null; dead: number }>(
          `SELECT to_regclass('rabbitmq_idempotency_keys')::text AS keys,
           (SELECT count(*) FROM information_schema.columns
            WHERE table_name IN ('rabbitmq_purchases', 'rabbitmq_counts')
              AND column_name IN ('dead', 'dead_reason', 'dead_at'))::int AS dead`,
        );
        expect(rows[0]).toEqual({ keys: null, dead: 0 });
      } finally {
        await client.end();
      }
    });

    it('shares the records with a table queue of the same database', async () => {
      await index.bury([queued.purchaseId], 'poison');
      const queue = new PostgresQueue(db.url);
      try {
        // The records came first here: the queue's own first migration, which creates the same tables, must
        // leave them as they were.
        await queue.migrate();
        expect((await queue.deadLetters(10)).map((d) => d.purchase)).toEqual([queued]);
        // The key the index recorded answers the table queue too: one set of keys per database.
        const again = purchase('p-table', queued.buyerId, '2026-01-01T12:00:00.000Z');
        expect(
          await queue.enqueue([
            { purchase: again, idempotency: { key: 'key \\ \u0000', requestHash: 'hash-q' } },
          ]),
        ).toEqual([{ status: 'duplicate', purchaseId: queued.purchaseId }]);
      } finally {
        await queue.close();
      }
    });
  },
);
