import { Redis, type Cluster } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { observe, sendCrowd } from '../../src/simulate/crowd.js';
import { checkInvariants, type SentPurchase } from '../../src/simulate/invariants.js';
import { createEvent, waitDrained } from '../helpers/api.js';
import { makeCrowd } from '../helpers/crowd.js';
import { sleep } from '../helpers/http.js';
import {
  ADMIN_TOKEN,
  LOOPBACK_EXEMPT,
  childrenOf,
  startOnsale,
  until,
  type Onsale,
} from '../helpers/processes.js';
import {
  startPrivateRedis,
  startPrivateRedisCluster,
  type PrivateRedis,
  type PrivateRedisCluster,
} from '../helpers/redis.js';
import { exclusion, included } from '../helpers/services.js';

/** One purchase sent while Redis is down: what came back. */
interface Probe {
  status: number;
  retryAfter: string | null;
  code: string | undefined;
  ms: number;
}

/**
 * onsale on SQLite storage with a Redis Streams queue of the test's own (appendonly, appendfsync always),
 * flooded with purchases while the queue goes away: Redis is stopped cleanly and restarted, a worker is
 * SIGKILLed mid-batch (its batch is taken over with XAUTOCLAIM), then Redis is SIGKILLed and restarted.
 * While Redis is down, purchases get 503 with Retry-After, never a 500; afterwards every 202 reaches a
 * final status and api.md's invariants hold.
 */
/** The queue's Redis: one server, or a cluster of three masters all stopped and started together. */
interface Target {
  name: string;
  start: () => Promise<PrivateRedis | PrivateRedisCluster>;
  inspector: (redis: PrivateRedis | PrivateRedisCluster) => Redis | Cluster;
}

const targets: Target[] = [
  {
    name: 'one server',
    start: startPrivateRedis,
    inspector: (redis) => new Redis(redis.url),
  },
  {
    name: 'Redis Cluster',
    start: startPrivateRedisCluster,
    inspector: (redis) => (redis as PrivateRedisCluster).client(),
  },
];

describe.skipIf(!included('redis')).each(targets)(
  `a Redis queue ($name) that goes away mid-flood${exclusion('redis')}`,
  (target) => {
    let redis: PrivateRedis | PrivateRedisCluster | undefined;
    let onsale: Onsale | undefined;

    afterAll(async () => {
      await onsale?.stop();
      await redis?.remove();
    });

    it('answers 503 while Redis is down, and loses nothing that was answered 202', async () => {
      redis = await target.start();
      onsale = await startOnsale({
        mode: 'start',
        env: {
          ...LOOPBACK_EXEMPT,
          ONSALE_QUEUE_URL: `${redis.url}?prefix=fault`,
          ONSALE_WEB: '2',
          ONSALE_WORKERS_MIN: '2',
          ONSALE_WORKERS_MAX: '2',
        },
      });
      const { baseUrl } = onsale;
      const supervisor = onsale.processes[0]!.child.pid!;
      const event = await createEvent(baseUrl, {
        ticketTypes: [
          { name: 'GA', priceCents: 5000, capacity: 1000, maxPerBuyer: 4 },
          { name: 'VIP', priceCents: 9000, capacity: 200, maxPerBuyer: 2 },
        ],
      });
      // Keyed, so that a purchase whose 202 was lost with Redis can be asked about again (below).
      const crowd = makeCrowd({ count: 6000, buyers: 2500, types: event.ticketTypes, seed: 11 }).map(
        (intent, i) => ({ ...intent, idempotencyKey: `fault-${i}` }),
      );
      const sent: SentPurchase[] = [];
      const probes: Probe[] = [];
      const item = [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }];

      /** Sends a request and records what came back, and how fast. */
      async function probe(path: string, init?: RequestInit): Promise<void> {
        const started = performance.now();
        const res = await fetch(`${baseUrl}${path}`, init);
        const body = (await res.json()) as { error?: { code: string } };
        probes.push({
          status: res.status,
          retryAfter: res.headers.get('retry-after'),
          code: body.error?.code,
          ms: performance.now() - started,
        });
      }

      /** While `down` holds (Redis is stopped until this resolves), sends purchases and reads /readyz. */
      async function probeWhile(down: () => boolean): Promise<void> {
        for (let i = 0; down(); i++) {
          await probe(`/api/events/${event.id}/purchases`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ buyerId: `probe-${probes.length}`, items: item }),
          });
          if (i % 5 === 0) await probe('/readyz');
          await sleep(20);
        }
      }

      /** Stops Redis with `signal` once `after` answers have come back, keeps it down ~1.5 s, starts it again. */
      function outage(after: number, signal: NodeJS.Signals): (record: SentPurchase) => void {
        let started = false;
        return (record) => {
          sent.push(record);
          if (started || sent.length < after) return;
          started = true;
          outages.push(
            (async () => {
              let down = true;
              await redis!.stop(signal);
              const probing = probeWhile(() => down);
              await sleep(1_500);
              down = false;
              await probing;
              await redis!.start();
            })(),
          );
        };
      }
      const outages: Array<Promise<void>> = [];

      // Phase 1: Redis shuts down cleanly (SIGTERM: it writes its AOF and exits) mid-flood, then comes back.
      await sendCrowd({
        baseUrl,
        eventId: event.id,
        intents: crowd.slice(0, 2000),
        concurrency: 32,
        onAnswer: outage(700, 'SIGTERM'),
      });
      await Promise.all(outages.splice(0));

      // Phase 2: the workers are SIGKILLed while a batch is claimed and not acked (the consumer group shows
      // it pending); the supervisor restarts them, and the batch is taken over with XAUTOCLAIM.
      const inspector = target.inspector(redis);
      inspector.on('error', () => undefined);
      const stream = `fault:{${event.id}}:q`;
      let pendingAtKill: number;
      const crowd2 = sendCrowd({
        baseUrl,
        eventId: event.id,
        intents: crowd.slice(2000, 4000),
        concurrency: 32,
        onAnswer: (record) => sent.push(record),
      });
      await until(() => sent.length >= 2200);
      const workers = childrenOf(supervisor).filter((c) => c.title === 'onsale-worker');
      // The workers are frozen (SIGSTOP) while the consumer group is read, so that what it shows pending is
      // still pending when they are killed. Between batches nothing is pending (the stream is deleted
      // whenever they have emptied it): then they stay frozen a moment while purchases pile up, and are let
      // go just long enough to claim a batch, which takes them a while to apply.
      const signalWorkers = (signal: NodeJS.Signals) => workers.forEach((w) => process.kill(w.pid, signal));
      const deadline = Date.now() + 10_000;
      signalWorkers('SIGSTOP');
      for (;;) {
        const summary = await inspector.xpending(stream, 'onsale').catch(() => [0]);
        pendingAtKill = Number((summary as [number])[0]);
        if (pendingAtKill > 0 || Date.now() > deadline) break;
        await sleep(30);
        signalWorkers('SIGCONT');
        await sleep(5);
        signalWorkers('SIGSTOP');
      }
      signalWorkers('SIGKILL');
      await crowd2;
      expect(workers).toHaveLength(2);
      await until(() => {
        const now = childrenOf(supervisor).filter((c) => c.title === 'onsale-worker');
        return now.length === 2 && now.every((c) => !workers.some((w) => w.pid === c.pid));
      });

      // Phase 3: Redis is SIGKILLed mid-flood: what it acknowledged is in its AOF (appendfsync always).
      await sendCrowd({
        baseUrl,
        eventId: event.id,
        intents: crowd.slice(4000, 5800),
        concurrency: 32,
        onAnswer: outage(4700, 'SIGKILL'),
      });
      await Promise.all(outages.splice(0));

      // Phase 4: Redis is back; once the web servers have reconnected (at most 500 ms apart), all is accepted.
      await until(async () => (await fetch(`${baseUrl}/readyz`)).status === 200);
      await sleep(1_000);
      const after = await sendCrowd({
        baseUrl,
        eventId: event.id,
        intents: crowd.slice(5800),
        concurrency: 8,
      });
      sent.push(...after);
      expect(after.filter((r) => r.status !== 202)).toEqual([]);

      // While Redis was down: 503 with Retry-After, for purchases and for /readyz, and nothing else.
      expect(probes.length).toBeGreaterThanOrEqual(4);
      for (const probe of probes) {
        expect(probe.status).toBe(503);
        expect(Number(probe.retryAfter)).toBeGreaterThanOrEqual(1);
        // At once, not after a client-side timeout (this machine runs busy: the bound is loose).
        expect(probe.ms).toBeLessThan(2_500);
      }
      expect(probes.filter((p) => p.code === 'unavailable').length).toBeGreaterThan(0);
      // The crowd saw 202s, and 503s while Redis was away; never a 500 or a dropped connection.
      expect(sent.filter((r) => r.status !== 202 && r.status !== 503)).toEqual([]);
      expect(sent.filter((r) => r.status === 202).length).toBeGreaterThan(3000);

      // A purchase Redis wrote just as it was killed is queued although its client got a 503. The client
      // learns its fate as api.md intends: it sends the request again with the same Idempotency-Key, and gets
      // that purchase (or a new one, if the first never landed).
      const unanswered = sent
        .filter((r) => r.status === 503)
        .map(({ buyerId, items, idempotencyKey }) => ({
          buyerId,
          items,
          idempotencyKey: idempotencyKey!,
        }));
      const retried = await sendCrowd({ baseUrl, eventId: event.id, intents: unanswered, concurrency: 8 });
      expect(retried.filter((r) => r.status !== 200 && r.status !== 202)).toEqual([]);
      sent.push(...retried);

      await waitDrained(baseUrl, event.id);
      const seen = await observe({ baseUrl, eventId: event.id, adminToken: ADMIN_TOKEN, sent });
      expect(checkInvariants({ sent, purchases: seen.purchases, stock: seen.stock })).toEqual([]);
      for (const t of seen.stock) expect(t.sold).toBe(t.capacity);
      expect(onsale.processes[0]!.output()).not.toMatch(/request failed/);
      expect(pendingAtKill).toBeGreaterThan(0);
      // Drained: nothing is left pending in the consumer group (the event's stream is gone once empty).
      expect(await inspector.exists(stream)).toBe(0);
      inspector.disconnect();
    }, 180_000);
  },
);
