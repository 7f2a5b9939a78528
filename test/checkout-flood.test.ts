import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { fetchSender, playRole, politely, type Role } from '../src/simulate/checkout.js';
import { checkInvariants, type FinalPurchase, type SentPurchase } from '../src/simulate/invariants.js';
import { openStorage } from '../src/adapters/index.js';
import { createEvent, getJson, type CreatedEvent } from './helpers/api.js';
import { CHECKOUT_ENV, postJson } from './helpers/checkout.js';
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

const ROLES: Role[] = [
  'pay',
  'pay',
  'pay',
  'pay',
  'decline_then_pay',
  'three_d_secure',
  'cancel',
  'abandon',
  'abandon',
];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A request that a killed web server may drop: tried again (with the same Idempotency-Key) until answered. */
async function persist<T extends { status: number }>(send: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await send();
      if (res.status !== 503 && res.status !== 429) return res;
    } catch (error) {
      if (attempt > 200) throw error;
    }
    await sleep(100);
  }
}

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
    const supervisor = onsale!.processes[0]!.child.pid!;
    const event: CreatedEvent = await createEvent(baseUrl, {
      name: 'Flood with holds',
      holdSeconds: 30,
      ticketTypes: [{ name: 'GA', priceCents: 1500, capacity: 40, maxPerBuyer: 3 }],
    });
    const typeId = event.ticketTypes[0]!.id;
    const sent: SentPurchase[] = [];
    const roles = new Map<string, Role>();
    const declinedShown = new Set<string>();
    let answered = 0;
    let killed = false;

    async function buyer(i: number): Promise<void> {
      const role = ROLES[i % ROLES.length]!;
      const buyerId = `buyer-${i % 70}`;
      const quantity = 1 + (i % 2);
      const key = randomUUID();
      const sentAt = performance.now();
      const res = await persist(() =>
        postJson(
          `${baseUrl}/api/events/${event.id}/purchases`,
          { buyerId, items: [{ ticketTypeId: typeId, quantity }] },
          { 'idempotency-key': key },
        ),
      );
      sent.push({
        buyerId,
        items: [{ ticketTypeId: typeId, quantity }],
        sentAt,
        answeredAt: performance.now(),
        status: res.status,
        purchaseId: res.body?.purchaseId,
        idempotencyKey: key,
      });
      answered += 1;
      if (res.status !== 202 && res.status !== 200) return;
      const id = res.body.purchaseId as string;
      roles.set(id, role);
      // Follow the purchase: queued, perhaps waitlisted, until held (then act) or final.
      for (;;) {
        const now = await persist(() => getJson(`${baseUrl}/api/purchases/${id}`));
        const status = now.body.status as string;
        if (status === 'held') break;
        if (['confirmed', 'rejected', 'expired', 'cancelled'].includes(status)) return;
        await sleep(200);
      }
      // A web server killed mid-request: the buyer sends the same request again (same Idempotency-Key).
      const outcome = await playRole({ send: politely(fetchSender(baseUrl)), origin: baseUrl }, id, role);
      if (outcome.declinedShown) declinedShown.add(id);
    }

    // Crashes: a worker and a web server mid-flood (the supervisor restarts them), then every worker at once.
    const crashes = (async () => {
      await until(() => answered >= 60, 60_000);
      const children = childrenOf(supervisor);
      const worker = children.find((c) => c.title.includes('worker'));
      const web = children.find((c) => c.title.includes('web'));
      for (const c of [worker, web]) if (c) process.kill(c.pid, 'SIGKILL');
      killed = worker !== undefined && web !== undefined;
      await sleep(8_000);
      for (const c of childrenOf(supervisor).filter((c) => c.title.includes('worker')))
        process.kill(c.pid, 'SIGKILL');
    })();

    await Promise.all([
      ...Array.from({ length: 120 }, (_, i) => sleep(i * 15).then(() => buyer(i))),
      crashes,
    ]);
    expect(killed).toBe(true);

    // Every purchase final, whatever was abandoned or waitlisted (holds of 30 s, waitlist served after each).
    const ids = sent.filter((s) => s.purchaseId).map((s) => s.purchaseId!);
    const finals = new Map<string, FinalPurchase & { payment: any; refunded: boolean }>();
    const allFinal = async () => {
      for (const id of ids) {
        if (finals.has(id)) continue;
        const res = await getJson(`${baseUrl}/api/purchases/${id}`);
        const settled = res.body.payment?.status !== 'processing';
        if (['confirmed', 'rejected', 'expired', 'cancelled'].includes(res.body.status) && settled)
          finals.set(id, res.body);
        // A hold reached by the waitlist after its buyer stopped following: abandoned, it expires.
      }
      return finals.size === ids.length;
    };

    await until(allFinal, 300_000).catch(async (error: unknown) => {
      const stuck = await Promise.all(
        ids
          .filter((id) => !finals.has(id))
          .map(async (id) => (await getJson(`${baseUrl}/api/purchases/${id}`)).body),
      );
      throw new Error(`${stuck.length} purchases never final: ${JSON.stringify(stuck.slice(0, 5))}`, {
        cause: error,
      });
    });

    const stats = (await getJson(`${baseUrl}/api/events/${event.id}/stats`, true)).body;
    const stock = stats.ticketTypes.map((t: any) => ({ ...t, maxPerBuyer: 3 }));
    const violations = checkInvariants({ sent, purchases: finals, stock });
    expect(violations).toEqual([]);
    expect(stats.ticketTypes[0].held).toBe(0);
    expect(stats.purchases.held + stats.purchases.waitlisted + stats.purchases.queued).toBe(0);
    const all = [...finals.values()];
    const confirmedTickets = all
      .filter((p) => p.status === 'confirmed')
      .reduce((n, p) => n + p.tickets.length, 0);
    expect(stats.ticketTypes[0].sold).toBe(confirmedTickets);
    // Demand was well above capacity, and every payer paid: the tickets abandoned and cancelled went to others.
    expect(stats.ticketTypes[0].sold).toBeGreaterThan(30);
    expect(all.some((p) => p.status === 'expired')).toBe(true);
    expect(all.some((p) => p.status === 'cancelled')).toBe(true);

    // Money, by the provider's own books (its state in the database): every charge is a confirmed purchase
    // or was refunded, no purchase was charged twice, a buyer shown "declined" was charged only by a later card.
    const storage = await openStorage(databaseUrl);
    try {
      for (const p of all) {
        const state = await storage.providerState('test', `payment:${p.purchaseId}`);
        const books = state
          ? (JSON.parse(state.value) as { charges: number; refundId: string | null })
          : null;
        const charged = books?.charges ?? 0;
        expect(charged, p.purchaseId).toBeLessThanOrEqual(1);
        if (p.status === 'confirmed') {
          expect(charged, `${p.purchaseId} confirmed unpaid`).toBe(1);
          expect(books!.refundId).toBeNull();
          expect(p.refunded).toBe(false);
        } else if (charged === 1) {
          expect(books!.refundId, `${p.purchaseId} ${p.status} charged, not refunded`).not.toBeNull();
          expect(p.refunded).toBe(true);
        }
        if (roles.get(p.purchaseId) === 'abandon' || roles.get(p.purchaseId) === 'cancel') {
          expect(p.status === 'confirmed', `${p.purchaseId} ${roles.get(p.purchaseId)}`).toBe(false);
        }
      }
      expect(stats.purchases.refunded).toBe(all.filter((p) => p.refunded).length);
    } finally {
      await storage.close();
    }
  }, 420_000);
});
