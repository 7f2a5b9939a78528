import { afterAll, describe, expect, it } from 'vitest';
import { createEvent } from '../helpers/api.js';
import { CHECKOUT_ENV } from '../helpers/checkout.js';
import { expectCheckoutEnded, sendCheckoutFlood } from '../helpers/checkout-flood.js';
import { startPrivatePostgres, type PrivatePostgres } from '../helpers/private-postgres.js';
import { LOOPBACK_EXEMPT, startOnsale, type Onsale } from '../helpers/processes.js';
import { exclusion, included } from '../helpers/services.js';

/** How long the database stays down mid-flood. */
const OUTAGE_MS = 2_500;
const HOLD_SECONDS = 30;

/**
 * PostgreSQL restarted in the middle of a checkout flood: `onsale start` (two web servers, two workers, the
 * queue a table of the same database) on a PostgreSQL of the test's own, stopped (`pg_ctl stop -m fast`,
 * which cuts every connection) and started again while buyers buy, pay, decline, go through 3-D Secure,
 * cancel and abandon. Their requests answered 503 meanwhile are sent again, as a client would. Once it is
 * back: every purchase final, holds taken before the outage expired after it, nothing lost or doubled, every
 * invariant of api.md, and every succeeded charge a confirmed purchase or refunded.
 */
describe.skipIf(!included('postgres'))(
  `PostgreSQL restarted during a checkout flood${exclusion('postgres')}`,
  () => {
    let server: PrivatePostgres | undefined;
    let onsale: Onsale | undefined;

    afterAll(async () => {
      await onsale?.stop();
      server?.remove();
    });

    it('loses nothing, doubles nothing, still expires holds, and charges only what it confirms', async () => {
      server = await startPrivatePostgres();
      const databaseUrl = await server.createDatabase('onsale');
      onsale = await startOnsale({
        mode: 'start',
        env: {
          ...LOOPBACK_EXEMPT,
          ...CHECKOUT_ENV,
          ONSALE_DATABASE_URL: databaseUrl,
          ONSALE_WEB: '2',
          ONSALE_WORKERS_MIN: '2',
          ONSALE_WORKERS_MAX: '2',
          ONSALE_BUYER_RATE: 'off',
        },
      });
      const { baseUrl } = onsale;
      const event = await createEvent(baseUrl, {
        name: 'Checkout through a database restart',
        holdSeconds: HOLD_SECONDS,
        ticketTypes: [{ name: 'GA', priceCents: 1500, capacity: 30, maxPerBuyer: 3 }],
      });

      const db = server;
      let outage: Promise<void> | undefined;
      let stoppedAt = 0;
      let restartedAt = 0;
      const flood = await sendCheckoutFlood({
        baseUrl,
        eventId: event.id,
        ticketTypeId: event.ticketTypes[0]!.id,
        holdSeconds: HOLD_SECONDS,
        buyers: 90,
        spacingMs: 20,
        // Holds handed on by the waitlist later are paid or cancelled: the sale ends one hold after the flood.
        abandonBefore: Date.now() + 10_000,
        onAnswer: (answered) => {
          if (answered !== 30) return;
          outage = (async () => {
            // Let the first buyers reach their holds and start paying, then cut the database under them.
            await new Promise((r) => setTimeout(r, 500));
            stoppedAt = Date.now();
            db.stop('fast');
            await new Promise((r) => setTimeout(r, OUTAGE_MS));
            db.start();
            restartedAt = Date.now();
          })();
        },
      });
      await outage;
      expect(restartedAt).toBeGreaterThan(stoppedAt);

      // Requests were refused while it was down; sent again, every purchase was taken in the end.
      expect(flood.refused).toBeGreaterThan(0);
      expect(flood.sent.every((r) => r.status === 202 || r.status === 200)).toBe(true);

      const { finals } = await expectCheckoutEnded({
        baseUrl,
        eventId: event.id,
        databaseUrl,
        maxPerBuyer: 3,
        flood,
        timeoutMs: 120_000,
      });

      // Expiry is state in the database, not a timer: holds taken before the outage and abandoned expired
      // after the restart.
      const abandonedBeforeOutage = [...flood.roles]
        .filter(([id, role]) => role === 'abandon' && (flood.heldSince.get(id) ?? Infinity) < stoppedAt)
        .map(([id]) => finals.get(id)!);
      expect(abandonedBeforeOutage.length).toBeGreaterThan(0);
      for (const p of abandonedBeforeOutage) expect(p.status, p.purchaseId).toBe('expired');

      // No process died of the outage, and nothing was answered with a 500.
      const output = onsale.processes[0]!.output();
      expect(output).not.toContain('child died');
      expect(output).not.toContain('request failed');
    }, 180_000);
  },
);
