import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createEvent, getJson, purchase } from '../helpers/api.js';
import {
  startPrivatePostgres,
  startPrivateReplica,
  type PrivatePostgres,
  type PrivateReplica,
} from '../helpers/private-postgres.js';
import { ADMIN_TOKEN, LOOPBACK_EXEMPT, startOnsale, type Onsale } from '../helpers/processes.js';
import { samples } from '../helpers/prometheus.js';
import { exclusion, included } from '../helpers/services.js';

/** api.md: what a buyer reads is never more than this behind what is committed. */
const BOUND_MS = 1_000;

/**
 * A real streaming replica (pg_basebackup -R of a private server, its own postmaster) behind
 * ONSALE_DATABASE_REPLICA_URL. Buyers' reads go to it while it keeps up; delayed
 * (recovery_min_apply_delay) or stopped, it is dropped without a buyer seeing an error or anything older
 * than a second, and taken back once it catches up.
 *
 * Staleness is measured against the primary itself: the test watches each purchase reach its final status
 * on the primary (T), and any read of it sent more than a second after T must show it final.
 */
describe.skipIf(!included('postgres'))(`Reads from a streaming replica${exclusion('postgres')}`, () => {
  let primary: PrivatePostgres | undefined;
  let replica: PrivateReplica | undefined;
  let onsale: Onsale | undefined;
  let direct: pg.Client | undefined;

  afterAll(async () => {
    await onsale?.stop();
    await direct?.end().catch(() => undefined);
    replica?.remove();
    primary?.remove();
  });

  it('serves reads from a fresh replica, and from the primary while it lags or is down, never staler than 1 s', async () => {
    primary = await startPrivatePostgres();
    const databaseUrl = await primary.createDatabase('onsale');
    replica = await startPrivateReplica(primary);
    onsale = await startOnsale({
      env: {
        ...LOOPBACK_EXEMPT,
        ONSALE_DATABASE_URL: databaseUrl,
        ONSALE_DATABASE_REPLICA_URL: replica.url('onsale'),
      },
    });
    direct = new pg.Client({ connectionString: databaseUrl });
    await direct.connect();
    const { baseUrl } = onsale;
    const event = await createEvent(baseUrl, {
      ticketTypes: [{ name: 'GA', priceCents: 1000, capacity: 100_000, maxPerBuyer: 10 }],
    });
    const type = event.ticketTypes[0]!.id;
    const db = direct;

    const reads = async () => {
      const res = await fetch(`${baseUrl}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      const m = samples(await res.text());
      return {
        primary: m.get('onsale_storage_reads_total{target="primary"}') ?? NaN,
        replica: m.get('onsale_storage_reads_total{target="replica"}') ?? NaN,
      };
    };

    /**
     * Buys `count` purchases one after another; for each, polls the API and the primary side by side until
     * it is final on both. Returns the violations of the bound (reads sent a second after the primary had
     * it final that still did not show it) and how many API reads failed.
     */
    async function buyAndWatch(count: number, buyer: string) {
      const stale: string[] = [];
      let failed = 0;
      for (let i = 0; i < count; i++) {
        const accepted = await purchase(baseUrl, event.id, {
          buyerId: `${buyer}-${i}`,
          items: [{ ticketTypeId: type, quantity: 1 }],
        });
        expect(accepted.status).toBe(202);
        const id = accepted.body.purchaseId as string;
        let finalOnPrimaryAt: number | null = null;
        for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
          if (finalOnPrimaryAt === null) {
            const row = await db.query('SELECT status FROM purchases WHERE id = $1', [id]);
            if (row.rows[0]?.status === 'confirmed') finalOnPrimaryAt = Date.now();
          }
          const sentAt = Date.now();
          const read = await getJson(`${baseUrl}/api/purchases/${id}`);
          if (read.status !== 200) failed++;
          const shownFinal = read.body?.status === 'confirmed';
          if (!shownFinal && finalOnPrimaryAt !== null && sentAt > finalOnPrimaryAt + BOUND_MS)
            stale.push(`${id}: still ${read.body?.status} ${sentAt - finalOnPrimaryAt} ms after the commit`);
          if (shownFinal && finalOnPrimaryAt !== null) break;
          await new Promise((r) => setTimeout(r, 20));
        }
        // The event page too: what it shows as left is at most a second behind the primary.
        const left = await db.query<{ left: number }>(
          'SELECT capacity - sold - held AS left FROM ticket_types WHERE id = $1',
          [type],
        );
        const readAt = Date.now();
        await new Promise((r) => setTimeout(r, BOUND_MS + 50));
        const page = await getJson(`${baseUrl}/api/events/${event.id}`);
        if (page.status !== 200) failed++;
        else if (page.body.ticketTypes[0].available > left.rows[0]!.left)
          stale.push(
            `event page shows ${page.body.ticketTypes[0].available} left, ${left.rows[0]!.left} ${Date.now() - readAt} ms earlier`,
          );
      }
      return { stale, failed };
    }

    // 1. The replica keeps up: reads go there.
    const before = await reads();
    expect(before).toEqual({ primary: expect.any(Number), replica: expect.any(Number) });
    const fresh = await buyAndWatch(5, 'fresh');
    expect(fresh).toEqual({ stale: [], failed: 0 });
    const afterFresh = await reads();
    expect(afterFresh.replica - before.replica).toBeGreaterThan(10);
    // The replica's own view: onsale's connections are there.
    const onReplica = new pg.Client({ connectionString: replica.url('onsale') });
    await onReplica.connect();
    const sessions = await onReplica.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'onsale'",
    );
    await onReplica.end();
    expect(sessions.rows[0].n).toBeGreaterThan(0);

    // 2. The replica applies changes 3 s late: reads move to the primary, none of them stale.
    replica.restartWithApplyDelay(3_000);
    const delayedStart = await reads();
    const delayed = await buyAndWatch(4, 'delayed');
    expect(delayed).toEqual({ stale: [], failed: 0 });
    const delayedEnd = await reads();
    expect(delayedEnd.primary - delayedStart.primary).toBeGreaterThan(10);

    // 3. The replica is stopped: no buyer sees an error.
    replica.stop('fast');
    const stopped = await buyAndWatch(3, 'stopped');
    expect(stopped).toEqual({ stale: [], failed: 0 });

    // 4. Back without delay: once it has caught up, reads go to it again.
    replica.restartWithApplyDelay(0);
    const back = await reads();
    const after = await buyAndWatch(4, 'back');
    expect(after).toEqual({ stale: [], failed: 0 });
    expect((await reads()).replica - back.replica).toBeGreaterThan(5);
  }, 240_000);
});
