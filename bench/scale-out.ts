/**
 * Scale-out: what sharding and read replicas do, measured with the real adapters in this process
 * (`npm run bench -- --only scale-out`).
 *
 * - Accept and allocation with 1 and 2 shards: the sharded queue and storage over one database, then over
 *   two (two databases of one server: on this 2-CPU machine a second server would share the same CPUs, so
 *   the figures show the cost of the routing, not a gain). Accept is durable enqueueing in group-commit
 *   sized writes from concurrent callers; allocation is two worker loops draining what was accepted.
 * - CPU per purchase per shard: this process's CPU and the CPU of the PostgreSQL backends serving each
 *   shard's database (read from /proc), over the purchases allocated. That is what one more machine per
 *   shard would take off the first one.
 * - Reads per second of the event page (event and availability) and of a purchase status, from the
 *   primary and from a streaming replica of a private server (pg_basebackup -R), side by side.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { PostgresQueue } from '../src/adapters/postgres/queue.js';
import { ShardedQueue } from '../src/adapters/sharding/sharded-queue.js';
import { ShardedStorage, type ReadTarget } from '../src/adapters/sharding/sharded-storage.js';
import { canonicalBuyerId } from '../src/domain/buyer.js';
import type { AcceptedPurchase, SaleEvent } from '../src/domain/types.js';
import { newPurchaseId } from '../src/shared/ids.js';
import { createLogger } from '../src/shared/logger.js';
import { startWorkerLoop } from '../src/worker/worker.js';
import { startPrivatePostgres, startPrivateReplica } from '../test/helpers/private-postgres.js';
import { createDatabase } from '../test/support/services.js';
import { sleep } from './processes.js';

export interface ScaleOutPlan {
  adminUrl: string;
  /** Purchases accepted then allocated per shard count. */
  purchases: number;
  /** Seconds each read side runs. */
  readSeconds: number;
}

export interface ShardRun {
  shards: number;
  acceptPerSec: number;
  allocPerSec: number;
  /** CPU ms per purchase: this process, and the PostgreSQL backends of each shard. */
  cpuMsPerPurchase: { node: number; perShard: number[] };
}

export interface ScaleOutFigures {
  runs: ShardRun[];
  reads: Record<ReadTarget, { eventPagePerSec: number; statusPerSec: number }>;
}

const CONCURRENT_WRITES = 8;
const WRITE_SIZE = 100;
const READERS = 16;

export async function measureScaleOut(
  plan: ScaleOutPlan,
  progress: (line: string) => void,
): Promise<ScaleOutFigures> {
  const runs: ShardRun[] = [];
  for (const shards of [1, 2]) {
    progress(`scale-out: accept and allocation on ${shards} shard(s)`);
    runs.push(await shardRun(plan, shards));
  }
  progress('scale-out: reads from the primary and from a streaming replica');
  const reads = await readRun(plan);
  return { runs, reads };
}

async function shardRun(plan: ScaleOutPlan, shards: number): Promise<ShardRun> {
  const dbs = await Promise.all(
    Array.from({ length: shards }, () => createDatabase(plan.adminUrl, 'onsale_bench')),
  );
  const urls = dbs.map((d) => d.url);
  // One shard is the sharded storage over one database: the same code path, so the two runs compare.
  const storage = new ShardedStorage(urls.map((url) => ({ url })));
  const queue = new ShardedQueue(urls.map((url) => new PostgresQueue(url)));
  try {
    await storage.migrate();
    await queue.migrate();
    // Two events per shard, as a sale of several events would spread.
    const events: SaleEvent[] = [];
    for (let i = 0; i < shards * 2; i++) {
      events.push(
        await storage.createEvent({
          name: `bench ${i}`,
          salesOpenAt: new Date().toISOString(),
          holdSeconds: 0,
          ticketTypes: [{ name: 'GA', priceCents: 5000, capacity: 10_000_000, maxPerBuyer: 4 }],
        }),
      );
    }
    const purchases = Array.from({ length: plan.purchases }, (_, i): AcceptedPurchase => {
      const event = events[i % events.length]!;
      const buyerId = `buyer-${i}@example.com`;
      return {
        purchaseId: newPurchaseId(event.id),
        eventId: event.id,
        buyerId,
        canonicalBuyerId: canonicalBuyerId(buyerId),
        items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 2 }],
        acceptedAt: new Date().toISOString(),
      };
    });

    const acceptStarted = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENT_WRITES }, async () => {
        while (next < purchases.length) {
          const chunk = purchases.slice(next, next + WRITE_SIZE);
          next += WRITE_SIZE;
          const results = await queue.enqueue(chunk.map((purchase) => ({ purchase })));
          if (results.some((r) => r.status !== 'accepted')) throw new Error('an enqueue was not accepted');
        }
      }),
    );
    const acceptSeconds = (performance.now() - acceptStarted) / 1000;

    const backendsBefore = await backendCpuMs(plan.adminUrl, urls);
    const nodeBefore = process.cpuUsage();
    const allocStarted = performance.now();
    const logger = createLogger('silent', 'bench');
    const loops = [1, 2].map((n) =>
      startWorkerLoop({ storage, queue, workerId: `bench-${n}`, batchSize: 500, maxAttempts: 5, logger }),
    );
    while ((await queue.depth()).depth > 0) await sleep(20);
    const allocSeconds = (performance.now() - allocStarted) / 1000;
    await Promise.all(loops.map((l) => l.stop()));
    const node = process.cpuUsage(nodeBefore);
    const backendsAfter = await backendCpuMs(plan.adminUrl, urls);
    const sold = await Promise.all(events.map((e) => storage.getStats(e.id)));
    const confirmed = sold.reduce((sum, s) => sum + (s?.purchases.confirmed ?? 0), 0);
    if (confirmed !== plan.purchases) throw new Error(`allocated ${confirmed} of ${plan.purchases}`);
    const perShardPurchases = plan.purchases / shards;
    return {
      shards,
      acceptPerSec: plan.purchases / acceptSeconds,
      allocPerSec: plan.purchases / allocSeconds,
      cpuMsPerPurchase: {
        node: (node.user + node.system) / 1000 / plan.purchases,
        perShard: urls.map((_, i) => (backendsAfter[i]! - backendsBefore[i]!) / perShardPurchases),
      },
    };
  } finally {
    await storage.close();
    await queue.close();
    for (const db of dbs) await db.drop();
  }
}

/**
 * CPU ms used so far by the PostgreSQL backends connected to each database (utime + stime of their
 * processes, /proc/PID/stat fields 14 and 15, in clock ticks of 10 ms). Backends live as long as the pools'
 * connections, which stay open through a run.
 */
async function backendCpuMs(adminUrl: string, urls: readonly string[]): Promise<number[]> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const totals: number[] = [];
    for (const url of urls) {
      const database = new URL(url).pathname.slice(1);
      const { rows } = await admin.query<{ pid: number }>(
        'SELECT pid FROM pg_stat_activity WHERE datname = $1',
        [database],
      );
      let ms = 0;
      for (const { pid } of rows) {
        try {
          const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
          ms += (Number(fields[11]) + Number(fields[12])) * 10;
        } catch {
          // A backend that ended since the query.
        }
      }
      totals.push(ms);
    }
    return totals;
  } finally {
    await admin.end();
  }
}

async function readRun(plan: ScaleOutPlan): Promise<ScaleOutFigures['reads']> {
  const primary = await startPrivatePostgres();
  try {
    const url = await primary.createDatabase('onsale');
    const replica = await startPrivateReplica(primary);
    try {
      const reads = {} as ScaleOutFigures['reads'];
      const counted: Record<ReadTarget, number> = { primary: 0, replica: 0 };
      const withReplica = new ShardedStorage([{ url, replicaUrl: replica.url('onsale') }], {
        onRead: (target) => counted[target]++,
      });
      const primaryOnly = new ShardedStorage([{ url }], { onRead: (target) => counted[target]++ });
      try {
        await withReplica.migrate();
        const event = await withReplica.createEvent({
          name: 'bench',
          salesOpenAt: new Date().toISOString(),
          holdSeconds: 0,
          ticketTypes: [{ name: 'GA', priceCents: 5000, capacity: 1_000_000, maxPerBuyer: 4 }],
        });
        const buyerId = 'reader@example.com';
        const purchase: AcceptedPurchase = {
          purchaseId: newPurchaseId(event.id),
          eventId: event.id,
          buyerId,
          canonicalBuyerId: canonicalBuyerId(buyerId),
          items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
          acceptedAt: new Date().toISOString(),
        };
        await withReplica.applyBatch(event.id, [purchase]);
        // Wait for the replica to replay it and be measured fresh.
        for (let i = 0; i < 200 && (await withReplica.getPurchase(purchase.purchaseId)) === null; i++)
          await sleep(50);
        for (const [target, storage] of [
          ['primary', primaryOnly],
          ['replica', withReplica],
        ] as const) {
          const before = { ...counted };
          const eventPagePerSec = await rate(plan.readSeconds, async () => {
            await Promise.all([storage.getEvent(event.id), storage.getAvailability(event.id)]);
          });
          const statusPerSec = await rate(plan.readSeconds, async () => {
            if (!(await storage.getPurchase(purchase.purchaseId))) throw new Error('purchase not found');
          });
          if (counted[target] - before[target] === 0) throw new Error(`no read went to the ${target}`);
          reads[target] = { eventPagePerSec, statusPerSec };
        }
        return reads;
      } finally {
        await withReplica.close();
        await primaryOnly.close();
      }
    } finally {
      replica.remove();
    }
  } finally {
    primary.remove();
  }
}

/** Calls of `read` per second from READERS concurrent readers over `seconds`. */
async function rate(seconds: number, read: () => Promise<void>): Promise<number> {
  const until = performance.now() + seconds * 1000;
  let done = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: READERS }, async () => {
      while (performance.now() < until) {
        await read();
        done++;
      }
    }),
  );
  return done / ((performance.now() - started) / 1000);
}
