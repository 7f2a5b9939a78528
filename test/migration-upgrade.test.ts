import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { expect, it } from 'vitest';
import { getJson, purchase, waitDrained, waitFinal } from './helpers/api.js';
import { startOnsale, tempDir } from './helpers/processes.js';
import { describeEach, exclusion, freshPostgresDatabase } from './helpers/services.js';

/**
 * Upgrading a populated database through every migration: a database at migration 0001 of each component
 * (only the first files applied), holding what that version wrote — an event mid-sale, a confirmed purchase
 * with its tickets, the buyer's totals, and a purchase still queued — is opened by the current onsale, which
 * runs every later migration. The old purchase must read back as it was, the queued one must be allocated,
 * and the sale must go on (the per-buyer limit still counting the old tickets, no oversell).
 */

/** The first migration of each component, as its version wrote it. */
function firstMigrations(engine: 'sqlite' | 'postgres', components: string[]) {
  return components.map((component) => {
    const dir = new URL(`../src/adapters/${engine}/migrations/${component}/`, import.meta.url);
    const name = readdirSync(dir).find((f) => f.startsWith('0001_'))!;
    return { component, name, sql: readFileSync(new URL(name, dir), 'utf8') };
  });
}

const ITEMS = (n: number) => JSON.stringify([{ ticketTypeId: 'v1-ga', quantity: n }]);

/** Rows as version 0001 wrote them: the sale is open, 2 of 5 tickets sold to one buyer, one more queued. */
const V1_STORAGE = (tickets: string) => `
INSERT INTO events (id, name, sales_open_at, hold_seconds, created_at)
  VALUES ('v1-event', 'First version night', '2026-01-01T00:00:00.000Z', 0, '2026-01-01T00:00:00.000Z');
INSERT INTO ticket_types (id, event_id, position, name, price_cents, capacity, max_per_buyer, sold, held)
  VALUES ('v1-ga', 'v1-event', 0, 'GA', 2500, 5, 3, 2, 0);
INSERT INTO purchases (id, event_id, buyer_id, status, reason, items, hold_expires_at, created_at, updated_at)
  VALUES ('v1-p1', 'v1-event', 'Early@Example.com', 'confirmed', NULL, '${ITEMS(2)}', NULL,
    '2026-01-01T00:00:01.000Z', '2026-01-01T00:00:02.000Z');
INSERT INTO buyer_tickets (event_id, buyer_id, ticket_type_id, quantity)
  VALUES ('v1-event', 'Early@Example.com', 'v1-ga', 2);
${tickets}
`;
const V1_TICKETS_SQLITE = `INSERT INTO tickets (id, purchase_id, ticket_type_id, code) VALUES
  ('v1-t1', 'v1-p1', 'v1-ga', 'CODE-V1-0001'), ('v1-t2', 'v1-p1', 'v1-ga', 'CODE-V1-0002');`;
const V1_TICKETS_POSTGRES = `INSERT INTO tickets (id, purchase_id, position, ticket_type_id, code) VALUES
  ('v1-t1', 'v1-p1', 0, 'v1-ga', 'CODE-V1-0001'), ('v1-t2', 'v1-p1', 1, 'v1-ga', 'CODE-V1-0002');`;

/** A purchase accepted (202) by the first version and not yet allocated when it was stopped. */
const V1_QUEUED = `
INSERT INTO queue_purchases (purchase_id, event_id, buyer_id, items, accepted_at)
  VALUES ('v1-queued', 'v1-event', 'queued@example.com', '${ITEMS(1)}', '2026-01-01T00:00:03.000Z');`;
const V1_QUEUE_SQLITE = `${V1_QUEUED}
INSERT INTO queue_events (event_id, pending, lease_owner, lease_expires_at) VALUES ('v1-event', 1, NULL, 0);`;
const V1_QUEUE_POSTGRES = `${V1_QUEUED}
INSERT INTO queue_events (event_id) VALUES ('v1-event');
INSERT INTO queue_depth (event_id, queued) VALUES ('v1-event', 1);`;

const databases = [
  {
    name: 'SQLite',
    excluded: '',
    make: async () => {
      const dir = tempDir('onsale-upgrade-');
      const file = join(dir.path, 'v1.db');
      const db = new Database(file);
      db.exec(
        'CREATE TABLE schema_migrations (component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (component, version))',
      );
      for (const m of firstMigrations('sqlite', ['storage', 'queue'])) {
        db.exec(m.sql);
        db.prepare('INSERT INTO schema_migrations VALUES (?, 1, ?, ?)').run(m.component, m.name, 'v1');
      }
      db.exec(V1_STORAGE(V1_TICKETS_SQLITE));
      db.exec(V1_QUEUE_SQLITE);
      db.close();
      return { env: { ONSALE_DATABASE_URL: `sqlite:${file}` }, drop: async () => dir.remove() };
    },
  },
  {
    name: 'PostgreSQL',
    excluded: exclusion('postgres'),
    make: async () => {
      const db = await freshPostgresDatabase();
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        await client.query(
          'CREATE TABLE schema_migrations (component text NOT NULL, version integer NOT NULL, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))',
        );
        for (const m of firstMigrations('postgres', ['storage', 'queue', 'records'])) {
          await client.query(m.sql);
          await client.query('INSERT INTO schema_migrations (component, version, name) VALUES ($1, 1, $2)', [
            m.component,
            m.name,
          ]);
        }
        await client.query(V1_STORAGE(V1_TICKETS_POSTGRES));
        await client.query(V1_QUEUE_POSTGRES);
      } finally {
        await client.end();
      }
      return { env: { ONSALE_DATABASE_URL: db.url }, drop: db.drop };
    },
  },
];

describeEach(databases, 'a $name database written at migration 0001', ({ make }) => {
  it('upgrades through every migration: old purchases read back, the queued one is allocated, the sale goes on', async () => {
    const db = await make();
    // `onsale start` migrates the database before its children serve.
    const onsale = await startOnsale({ mode: 'start', env: db.env });
    try {
      const base = onsale.baseUrl;
      const old = await getJson(`${base}/api/purchases/v1-p1`);
      expect(old.status).toBe(200);
      expect(old.body).toMatchObject({
        purchaseId: 'v1-p1',
        eventId: 'v1-event',
        buyerId: 'Early@Example.com',
        status: 'confirmed',
        items: [{ ticketTypeId: 'v1-ga', quantity: 2 }],
      });
      expect(old.body.tickets.map((t: { code: string }) => t.code).sort()).toEqual([
        'CODE-V1-0001',
        'CODE-V1-0002',
      ]);

      // The purchase the first version accepted and never allocated: allocated now.
      expect(await waitFinal(base, 'v1-queued')).toMatchObject({ status: 'confirmed' });

      // The sale goes on: the old buyer (another spelling) has 2 of 3 already, 2 tickets are left.
      const over = await purchase(base, 'v1-event', {
        buyerId: 'early@example.com',
        items: [{ ticketTypeId: 'v1-ga', quantity: 2 }],
      });
      expect(over.status).toBe(202);
      expect(await waitFinal(base, over.body.purchaseId)).toMatchObject({
        status: 'rejected',
        reason: 'limit_exceeded',
      });
      const last = await purchase(base, 'v1-event', {
        buyerId: 'late@example.com',
        items: [{ ticketTypeId: 'v1-ga', quantity: 2 }],
      });
      expect((await waitFinal(base, last.body.purchaseId)).status).toBe('confirmed');
      const soldOut = await purchase(base, 'v1-event', {
        buyerId: 'later@example.com',
        items: [{ ticketTypeId: 'v1-ga', quantity: 1 }],
      });
      // Sold out: refused at once (409) or rejected by the worker.
      if (soldOut.status === 202)
        expect((await waitFinal(base, soldOut.body.purchaseId)).status).toBe('rejected');
      else expect(soldOut.status).toBe(409);
      const stats = await waitDrained(base, 'v1-event');
      expect(stats.ticketTypes[0]).toMatchObject({ capacity: 5, sold: 5, held: 0, available: 0 });
      expect(stats.deadLetters ?? 0).toBe(0);
    } finally {
      await onsale.stop();
      await db.drop();
    }
  });
});
