import { afterAll, describe, expect, it } from 'vitest';
import { createEvent, getJson, purchase, waitDrained } from '../helpers/api.js';
import { startPrivatePostgres, type PrivatePostgres } from '../helpers/private-postgres.js';
import { deleteRedisKeys } from '../helpers/redis.js';
import { LOOPBACK_EXEMPT, startOnsale, until, type Onsale } from '../helpers/processes.js';
import { sleep } from '../helpers/http.js';
import { exclusion, included, REDIS_URL, uniqueName } from '../helpers/services.js';

/**
 * Storage down while the queue stays up: PostgreSQL (a private server) holds the sale, the shared Redis the
 * queue. With the database stopped, the web servers keep accepting (the queue is up) and the workers claim
 * batches they cannot apply, again and again, past the attempts that make a poison purchase; then they are
 * SIGKILLed and a new worker takes over once the database is back. None of that is the purchases' fault:
 * none may be dead-lettered (the new worker has seen no failure, only a high delivery count), and all
 * complete.
 */
const skip = exclusion('postgres', 'redis');

describe.skipIf(!included('postgres') || !included('redis'))(
  `PostgreSQL storage stopped while the Redis queue stays up${skip}`,
  () => {
    let server: PrivatePostgres | undefined;
    let onsale: Onsale | undefined;
    const prefix = uniqueName('onsale_test');

    afterAll(async () => {
      await onsale?.stop();
      server?.remove();
      await deleteRedisKeys(`${prefix}:*`);
    });

    it('dead-letters nothing while the database is down; every queued purchase completes after', async () => {
      server = await startPrivatePostgres();
      const queueUrl = new URL(REDIS_URL);
      queueUrl.searchParams.set('prefix', prefix);
      onsale = await startOnsale({
        workers: 2,
        env: {
          ...LOOPBACK_EXEMPT,
          ONSALE_DATABASE_URL: await server.createDatabase('onsale'),
          ONSALE_QUEUE_URL: queueUrl.toString(),
          // Two deliveries make a poison purchase here: the outage lasts many more.
          ONSALE_MAX_ATTEMPTS: '2',
        },
      });
      const { baseUrl } = onsale;
      const event = await createEvent(baseUrl, {
        ticketTypes: [{ name: 'GA', priceCents: 1000, capacity: 100, maxPerBuyer: 4 }],
      });
      const item = [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }];
      // One purchase before: the web server has the event in its cache, and the sale works.
      const first = await purchase(baseUrl, event.id, { buyerId: 'before@example.com', items: item });
      expect(first.status).toBe(202);
      await waitDrained(baseUrl, event.id);

      server.stop('immediate');
      const accepted: string[] = [];
      for (let i = 0; i < 30; i++) {
        const answer = await purchase(baseUrl, event.id, { buyerId: `buyer-${i}@example.com`, items: item });
        // The queue is up: a 202 (or a polite 503), never a 500.
        expect([202, 503]).toContain(answer.status);
        if (answer.status === 202) accepted.push(answer.body.purchaseId);
      }
      expect(accepted.length).toBeGreaterThan(0);
      // The workers claim and fail for a while: long enough for many deliveries of the same batch, each
      // failure seen as the database's (transient) by the worker that had it.
      await sleep(8_000);
      for (const id of accepted.slice(0, 3)) {
        const seen = await getJson(`${baseUrl}/api/purchases/${id}`);
        expect([200, 503]).toContain(seen.status);
        if (seen.status === 200) expect(seen.body.status).toBe('queued');
      }
      // Those workers go (killed, as a crash or a scale-down would), and a new one, which has seen none of
      // the failures, takes the batch once the database is back.
      for (const worker of onsale.processes.slice(1)) await worker.stop('SIGKILL');
      server.start();
      onsale.addWorker();
      const deadLettered = () =>
        onsale!.processes
          .flatMap((p) => p.output().split('\n'))
          .filter((line) => line.includes('purchase dead-lettered'));
      const stats = await waitDrained(baseUrl, event.id, 120_000).catch((error: unknown) => {
        throw new Error(`${String(error)}\n${deadLettered().join('\n')}`);
      });
      expect(stats.deadLetters).toBe(0);
      for (const id of accepted) {
        let final: { status: number; body: any } = { status: 0, body: null };
        await until(async () => {
          final = await getJson(`${baseUrl}/api/purchases/${id}`);
          return final.status === 200 && final.body.status !== 'queued';
        }, 60_000);
        expect(final.body.status).toBe('confirmed');
      }
      expect(deadLettered()).toEqual([]);
    }, 400_000);
  },
);
