import { afterAll, describe, expect, it } from 'vitest';
import { observe, sendCrowd } from '../../src/simulate/crowd.js';
import { checkInvariants, type SentPurchase } from '../../src/simulate/invariants.js';
import { createEvent, purchase, waitDrained } from '../helpers/api.js';
import { makeCrowd } from '../helpers/crowd.js';
import { startPrivatePostgres, type PrivatePostgres } from '../helpers/private-postgres.js';
import { ADMIN_TOKEN, LOOPBACK_EXEMPT, startOnsale, type Onsale } from '../helpers/processes.js';
import { exclusion, included } from '../helpers/services.js';

/** How long the database stays down mid-flood. */
const OUTAGE_MS = 2_500;

/**
 * The database goes away in the middle of a flood: `onsale start` (two web servers, two workers) on a
 * PostgreSQL of the test's own, stopped (`pg_ctl stop -m fast`, which cuts every connection) and started
 * again while buyers keep coming. While it is down, purchases are answered 503 with Retry-After — never a
 * 500, never a 202 that is then lost — and once it is back every 202 reaches a final status with every
 * invariant of api.md kept.
 */
describe.skipIf(!included('postgres'))(
  `PostgreSQL stopped and started during a flood${exclusion('postgres')}`,
  () => {
    let server: PrivatePostgres | undefined;
    let onsale: Onsale | undefined;

    afterAll(async () => {
      await onsale?.stop();
      server?.remove();
    });

    it('answers 503 with Retry-After while it is down, then loses nothing and breaks no invariant', async () => {
      server = await startPrivatePostgres();
      const databaseUrl = await server.createDatabase('onsale');
      onsale = await startOnsale({
        mode: 'start',
        env: {
          ...LOOPBACK_EXEMPT,
          ONSALE_DATABASE_URL: databaseUrl,
          ONSALE_WEB: '2',
          ONSALE_WORKERS_MIN: '2',
          ONSALE_WORKERS_MAX: '2',
        },
      });
      const { baseUrl } = onsale;
      const event = await createEvent(baseUrl, {
        ticketTypes: [
          { name: 'GA', priceCents: 5000, capacity: 2500, maxPerBuyer: 4 },
          { name: 'VIP', priceCents: 9000, capacity: 1000, maxPerBuyer: 2 },
        ],
      });
      // The crowd asks for nearly three times the stock; after 800 answers, when the database goes down,
      // tickets are still on sale.
      const crowd = makeCrowd({ count: 3000, buyers: 1200, types: event.ticketTypes, seed: 11 });
      crowd.forEach((intent, i) => {
        if (i % 10 === 0) intent.idempotencyKey = `key-${i}`;
      });

      const probes: Array<{ status: number; retryAfter: string | null; code: unknown }> = [];
      const readiness: number[] = [];
      let outage: Promise<void> | undefined;
      const sent: SentPurchase[] = [];
      let sentAtStop = 0;
      let sentAtStart = 0;
      const db = server;
      await sendCrowd({
        baseUrl,
        eventId: event.id,
        intents: crowd,
        concurrency: 32,
        onAnswer: (record) => {
          sent.push(record);
          if (sent.length !== 800) return;
          outage = (async () => {
            db.stop('fast');
            sentAtStop = sent.length;
            const until = Date.now() + OUTAGE_MS;
            // While it is down: purchases from buyers the web servers have not seen, and readiness.
            for (let i = 0; Date.now() < until; i++) {
              const answer = await purchase(baseUrl, event.id, {
                buyerId: `probe-${i}`,
                items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
              }).catch((error: unknown) => ({
                status: 0,
                headers: new Headers(),
                body: { error: String(error) },
              }));
              probes.push({
                status: answer.status,
                retryAfter: answer.headers.get('retry-after'),
                code: answer.body?.error?.code ?? answer.body?.error,
              });
              readiness.push((await fetch(`${baseUrl}/readyz`)).status);
            }
            db.start();
            sentAtStart = sent.length;
          })();
        },
      });
      await outage;

      // Every answer of the flood is one the contract allows: accepted (or the same purchase again), or
      // unavailable while the database was down.
      const statuses = new Set(sent.map((r) => r.status));
      expect([...statuses].filter((s) => s !== 202 && s !== 200 && s !== 503)).toEqual([]);
      const duringOutage = sent.slice(sentAtStop, sentAtStart);
      expect(duringOutage.filter((r) => r.status === 503).length).toBeGreaterThan(0);
      expect(sent.slice(sentAtStart).some((r) => r.status === 202)).toBe(true);

      expect(probes.length).toBeGreaterThan(0);
      for (const probe of probes) {
        expect(probe).toMatchObject({ status: 503, code: 'unavailable' });
        expect(Number(probe.retryAfter)).toBeGreaterThan(0);
      }
      expect(readiness.length).toBeGreaterThan(0);
      expect(readiness.every((s) => s === 503)).toBe(true);

      // Back up: everything answered 202 reaches a final status, and no invariant is broken.
      await waitDrained(baseUrl, event.id);
      const seen = await observe({ baseUrl, eventId: event.id, adminToken: ADMIN_TOKEN, sent });
      expect(sent.filter((r) => r.status === 202).length).toBeGreaterThan(1500);
      expect(checkInvariants({ sent, purchases: seen.purchases, stock: seen.stock })).toEqual([]);

      // No process died of the outage, and nothing was answered with a 500.
      const output = onsale.processes[0]!.output();
      expect(output).not.toContain('child died');
      expect(output).not.toContain('request failed');
    }, 240_000);
  },
);
