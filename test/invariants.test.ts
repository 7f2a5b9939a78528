import { statSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { observe, sendCrowd } from '../src/simulate/crowd.js';
import { checkInvariants } from '../src/simulate/invariants.js';
import { createEvent, purchase, waitDrained, type CreatedEvent } from './helpers/api.js';
import { makeCrowd } from './helpers/crowd.js';
import { ADMIN_TOKEN, LOOPBACK_EXEMPT, startOnsale, tempDir, type Onsale } from './helpers/processes.js';
import { deleteRabbitTopology, rabbitUrl } from './helpers/rabbitmq.js';
import { deleteRedisKeys } from './helpers/redis.js';
import {
  describeEach,
  exclusion,
  freshPostgresDatabase,
  REDIS_URL,
  uniqueName,
  type Backend,
} from './helpers/services.js';

/** A database and a queue engine, each a real server, set up fresh for one run of the flood. */
interface Engines {
  name: string;
  backends: Backend[];
  setup: () => Promise<{ env: Record<string, string>; cleanup: () => Promise<void> }>;
}

const nothing = async (): Promise<void> => undefined;

const ENGINES: Engines[] = [
  { name: 'sqlite + sqlite queue', backends: [], setup: async () => ({ env: {}, cleanup: nothing }) },
  {
    // The queue in a file of its own: the worker acks after the batch's commit, not inside it.
    name: 'sqlite + sqlite queue in its own file',
    backends: [],
    setup: async () => {
      const dir = tempDir('onsale-queue-');
      return {
        env: { ONSALE_QUEUE_URL: `sqlite:${dir.path}/queue.db` },
        cleanup: async () => {
          // The flood went through that file, not a queue table in the database.
          expect(statSync(`${dir.path}/queue.db`).size).toBeGreaterThan(0);
          dir.remove();
        },
      };
    },
  },
  {
    name: 'postgres + postgres queue',
    backends: ['postgres'],
    setup: async () => {
      const db = await freshPostgresDatabase();
      return { env: { ONSALE_DATABASE_URL: db.url }, cleanup: db.drop };
    },
  },
  {
    name: 'postgres + redis streams',
    backends: ['postgres', 'redis'],
    setup: async () => {
      const db = await freshPostgresDatabase();
      const prefix = uniqueName('onsale_flood');
      return {
        env: { ONSALE_DATABASE_URL: db.url, ONSALE_QUEUE_URL: `${REDIS_URL}?prefix=${prefix}` },
        cleanup: async () => {
          await deleteRedisKeys(`${prefix}:*`);
          await db.drop();
        },
      };
    },
  },
  {
    name: 'postgres + rabbitmq',
    backends: ['postgres', 'rabbitmq'],
    setup: async () => {
      const db = await freshPostgresDatabase();
      const prefix = uniqueName('onsale_flood');
      return {
        env: { ONSALE_DATABASE_URL: db.url, ONSALE_QUEUE_URL: rabbitUrl(prefix) },
        cleanup: async () => {
          await deleteRabbitTopology(prefix);
          await db.drop();
        },
      };
    },
  },
];

/**
 * api.md's invariants under a concurrent flood through HTTP, on `onsale start`: two web servers sharing the
 * port (node:cluster) and two workers competing for the same event, on every combination of engines.
 */
describeEach(
  ENGINES.map((e) => ({ ...e, excluded: exclusion(...e.backends) })),
  'a flood of purchases on $name',
  (engines) => {
    let onsale: Onsale;
    let event: CreatedEvent;
    let cleanup = nothing;

    beforeAll(async () => {
      const setup = await engines.setup();
      cleanup = setup.cleanup;
      onsale = await startOnsale({
        mode: 'start',
        env: { ONSALE_WEB: '2', ONSALE_WORKERS_MIN: '2', ...LOOPBACK_EXEMPT, ...setup.env },
      });
      event = await createEvent(onsale.baseUrl, {
        name: 'Flood night',
        ticketTypes: [
          { name: 'GA', priceCents: 5000, capacity: 900, maxPerBuyer: 4 },
          { name: 'VIP', priceCents: 15000, capacity: 150, maxPerBuyer: 2 },
          { name: 'Backstage', priceCents: 50000, capacity: 40, maxPerBuyer: 6 },
        ],
      });
    });

    afterAll(async () => {
      await onsale?.stop();
      await cleanup();
    });

    // A flood on a busy two-core machine may take more than the default minute.
    it(
      'keeps every invariant, sells out exactly, and refuses no honest buyer',
      { timeout: 180_000 },
      async () => {
        const intents = makeCrowd({ count: 5000, buyers: 1800, types: event.ticketTypes, seed: 42 });
        // A tenth of the crowd sends an Idempotency-Key; a few of those resend the same request.
        intents.forEach((intent, i) => {
          if (i % 10 === 0) intent.idempotencyKey = `key-${i}`;
        });
        const replays = intents.filter((_, i) => i % 100 === 0);
        const sent = await sendCrowd({
          baseUrl: onsale.baseUrl,
          eventId: event.id,
          intents: [...intents, ...replays],
          concurrency: 64,
        });

        expect(sent.filter((r) => r.status !== 202 && r.status !== 200)).toEqual([]);
        const stats = await waitDrained(onsale.baseUrl, event.id);
        const seen = await observe({
          baseUrl: onsale.baseUrl,
          eventId: event.id,
          adminToken: ADMIN_TOKEN,
          sent,
        });
        expect(checkInvariants({ sent, purchases: seen.purchases, stock: seen.stock })).toEqual([]);

        // Replays made no second purchase: 5000 purchases in all, whatever was resent.
        const total = Object.values(stats.purchases as Record<string, number>).reduce((a, b) => a + b, 0);
        expect(total).toBe(5000);
        for (const replay of replays) {
          const answers = sent.filter((r) => r.buyerId === replay.buyerId && r.items === replay.items);
          expect(new Set(answers.map((a) => a.purchaseId)).size).toBe(1);
        }

        // The crowd asked for far more than there was: every type sold out, none beyond capacity.
        for (const t of stats.ticketTypes)
          expect(t).toMatchObject({ sold: t.capacity, available: 0, held: 0 });
        // Buyers were served and buyers were turned away; which other reasons show up depends on the
        // interleaving (a late buyer may find a type empty rather than short), so they are allowed, not required.
        const reasons = new Set([...seen.purchases.values()].map((p) => p?.reason));
        expect(reasons).toContain(null);
        expect(reasons).toContain('sold_out');
        for (const r of reasons)
          expect([null, 'sold_out', 'insufficient_inventory', 'limit_exceeded']).toContain(r);
      },
    );

    it('answers a purchase in the same state through every web server', async () => {
      const small = await createEvent(onsale.baseUrl, {
        ticketTypes: [{ name: 'GA', priceCents: 100, capacity: 1, maxPerBuyer: 1 }],
      });
      const answer = await purchase(onsale.baseUrl, small.id, {
        buyerId: 'one',
        items: [{ ticketTypeId: small.ticketTypes[0]!.id, quantity: 1 }],
      });
      expect(answer.status).toBe(202);
      await waitDrained(onsale.baseUrl, small.id);
      // Fresh connections land on either web server of the cluster; all must see the final state.
      for (let i = 0; i < 6; i++) {
        const res = await fetch(`${onsale.baseUrl}/api/purchases/${answer.body.purchaseId}`, {
          headers: { connection: 'close' },
        });
        expect(((await res.json()) as { status: string }).status).toBe('confirmed');
      }
    });
  },
);
