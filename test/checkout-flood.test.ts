import { afterAll, beforeAll, expect, it } from 'vitest';
import { createEvent, type CreatedEvent } from './helpers/api.js';
import { CHECKOUT_ENV } from './helpers/checkout.js';
import { expectCheckoutEnded, sendCheckoutFlood } from './helpers/checkout-flood.js';
import { childrenOf, LOOPBACK_EXEMPT, startOnsale, until, type Onsale } from './helpers/processes.js';
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

interface Engines {
  name: string;
  excluded: string;
  setup: () => Promise<{ env: Record<string, string>; databaseUrl?: string; cleanup: () => Promise<void> }>;
}

function engines(name: string, backends: Backend[], setup: Engines['setup']): Engines {
  return { name, excluded: exclusion(...backends), setup };
}

const ENGINES: Engines[] = [
  engines('sqlite', [], async () => ({ env: {}, cleanup: async () => undefined })),
  // ONSALE_QUEUE_URL unset: the queue is a table of the same PostgreSQL database.
  engines('postgres (table queue)', ['postgres'], async () => {
    const db = await freshPostgresDatabase();
    return { env: { ONSALE_DATABASE_URL: db.url }, databaseUrl: db.url, cleanup: () => db.drop() };
  }),
  engines('postgres + redis streams', ['postgres', 'redis'], async () => {
    const db = await freshPostgresDatabase();
    const prefix = uniqueName('onsale_checkout');
    return {
      env: { ONSALE_DATABASE_URL: db.url, ONSALE_QUEUE_URL: `${REDIS_URL}?prefix=${prefix}` },
      databaseUrl: db.url,
      cleanup: async () => {
        await deleteRedisKeys(`${prefix}:*`);
        await db.drop();
      },
    };
  }),
  engines('postgres + rabbitmq', ['postgres', 'rabbitmq'], async () => {
    const db = await freshPostgresDatabase();
    const prefix = uniqueName('onsale_checkout');
    return {
      env: { ONSALE_DATABASE_URL: db.url, ONSALE_QUEUE_URL: rabbitUrl(prefix) },
      databaseUrl: db.url,
      cleanup: async () => {
        await deleteRabbitTopology(prefix);
        await db.drop();
      },
    };
  }),
];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The checkout invariants under a flood with a buyer mix (pay, decline then pay, 3-D Secure, cancel,
 * abandon) and 30-second holds, on `onsale start` with two web servers and two workers, one of each killed
 * with SIGKILL mid-flood, then every worker at once: every purchase final in the end, no oversell, nothing
 * doubled, first come first served through the waitlist, and the money matching the purchases.
 */
describeEach(ENGINES, 'checkout flood: $name', (engine) => {
  let onsale: Onsale | undefined;
  let cleanup: () => Promise<void> = async () => undefined;
  let databaseUrl: string;

  beforeAll(async () => {
    const setup = await engine.setup();
    cleanup = setup.cleanup;
    onsale = await startOnsale({
      mode: 'start',
      env: {
        ONSALE_WEB: '2',
        ONSALE_WORKERS_MIN: '2',
        ONSALE_WORKERS_MAX: '2',
        ONSALE_BUYER_RATE: 'off',
        ...CHECKOUT_ENV,
        ...LOOPBACK_EXEMPT,
        ...setup.env,
      },
    });
    databaseUrl = setup.databaseUrl ?? `sqlite:${onsale.dataDir}/onsale.db`;
  }, 60_000);
  afterAll(async () => {
    await onsale?.stop();
    await cleanup();
  });

  it('ends every purchase, oversells nothing, serves the waitlist in order, and charges only what it confirms', async () => {
    const { baseUrl } = onsale!;
    const supervisorPid = onsale!.processes[0]!.child.pid!;
    const event: CreatedEvent = await createEvent(baseUrl, {
      name: 'Flood with holds',
      holdSeconds: 30,
      ticketTypes: [{ name: 'GA', priceCents: 1500, capacity: 40, maxPerBuyer: 3 }],
    });
    let answered = 0;
    let killed = false;

    // Crashes: a worker and a web server mid-flood (the supervisor restarts them), then every worker at once.
    const crashes = (async () => {
      await until(() => answered >= 60, 60_000);
      const children = childrenOf(supervisorPid);
      const worker = children.find((c) => c.title.includes('worker'));
      const web = children.find((c) => c.title.includes('web'));
      for (const c of [worker, web]) if (c) process.kill(c.pid, 'SIGKILL');
      killed = worker !== undefined && web !== undefined;
      await sleep(8_000);
      for (const c of childrenOf(supervisorPid).filter((c) => c.title.includes('worker')))
        process.kill(c.pid, 'SIGKILL');
    })();

    const [flood] = await Promise.all([
      sendCheckoutFlood({
        baseUrl,
        eventId: event.id,
        ticketTypeId: event.ticketTypes[0]!.id,
        holdSeconds: 30,
        buyers: 120,
        spacingMs: 15,
        // Holds handed on by the waitlist later are paid or cancelled: the sale ends one hold after the flood.
        abandonBefore: Date.now() + 10_000,
        onAnswer: (n) => (answered = n),
      }),
      crashes,
    ]);
    expect(killed).toBe(true);

    // Every purchase final, whatever was abandoned or waitlisted (holds of 30 s, the waitlist served after).
    const { stats } = await expectCheckoutEnded({
      baseUrl,
      eventId: event.id,
      databaseUrl,
      maxPerBuyer: 3,
      flood,
      timeoutMs: 300_000,
    });
    // Demand was well above capacity, and every payer paid: the tickets abandoned and cancelled went to others.
    expect(stats.ticketTypes[0].sold).toBeGreaterThan(30);
  }, 420_000);
});
