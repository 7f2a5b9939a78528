import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openQueue, openStorage } from '../src/adapters/index.js';
import { newPurchaseId } from '../src/shared/ids.js';
import type { EnqueueRequest } from '../src/ports/queue.js';
import { describeCeiling, sqliteCeiling } from './ceiling.js';
import { NaiveAllocator } from './naive-allocator.js';
import { cleanEnv, cpuSeconds, peakRssMb, sleep, spawnNode, tempDir } from './processes.js';
import { int } from '../src/shared/format.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));

export interface AllocationPlan {
  /** Purchases queued for the real worker, all drained. */
  purchases: number;
  /** Purchases queued for the naive allocator, which runs for at most `naiveSeconds`. */
  naivePurchases: number;
  naiveSeconds: number;
}

interface AllocationFigures {
  allocPerSec: number;
  naivePerSec: number;
  /** The storage's own ceiling (ceiling.ts): the same rows for as many purchases, set-based, one transaction. */
  ceilingPerSec: number;
  /** CPU time of the worker process per purchase it allocated, in microseconds. */
  workerCpuUsPerPurchase: number;
  /** CPU time of the ceiling's transaction per purchase, in microseconds. */
  ceilingCpuUsPerPurchase: number;
  workerPeakRssMb: number | null;
}

/** A fresh embedded database (storage and queue in one file, as by default) with one event. */
interface BenchDatabase {
  dir: string;
  url: string;
  eventId: string;
  ticketTypeId: string;
}

/**
 * The real worker (an `onsale worker` process) drains `plan.purchases` from a fresh database; then the naive
 * allocator runs on a database already holding half as many allocated purchases. Inserts into random-keyed
 * indexes get slower as the tables grow, so both are measured at the same average table size.
 */
export async function measureAllocation(
  plan: AllocationPlan,
  progress: (line: string) => void,
): Promise<AllocationFigures> {
  const half = Math.floor(plan.purchases / 2);
  const worker = await withDatabase(async (db) => {
    progress(`allocation: filling a queue with ${int(plan.purchases)} purchases`);
    await fillQueue(db, 0, plan.purchases);
    const run = await drainWithWorker(db, plan.purchases);
    await verify(db, plan.purchases, 'onsale worker');
    progress(
      `allocation: onsale worker allocated ${int(run.allocated)} in ${run.seconds.toFixed(2)} s: ` +
        `${int(run.allocated / run.seconds)}/s, ${((run.cpuSeconds / run.allocated) * 1e6).toFixed(0)} µs CPU each`,
    );
    return run;
  });
  const naive = await withDatabase(async (db) => {
    progress(`allocation: preparing the naive allocator's database: ${int(half)} purchases allocated first`);
    await fillQueue(db, 0, half);
    await drainWithWorker(db, half);
    await fillQueue(db, half, plan.naivePurchases);
    const run = runNaive(db, plan.naiveSeconds);
    await verify(db, half + run.allocated, 'naive allocator');
    progress(
      `allocation: naive allocator (one transaction per purchase) allocated ${int(run.allocated)} in ` +
        `${run.seconds.toFixed(2)} s: ${int(run.allocated / run.seconds)}/s`,
    );
    return run;
  });
  const ceiling = await withDatabase(async (db) => {
    progress(`allocation: the storage's ceiling: filling a queue with ${int(plan.purchases)} purchases`);
    await fillQueue(db, 0, plan.purchases);
    const run = sqliteCeiling(db.url, db.eventId, db.ticketTypeId);
    await verify(db, plan.purchases, 'storage ceiling');
    progress(`allocation: ${describeCeiling(run)}`);
    return run;
  });
  return {
    allocPerSec: worker.allocated / worker.seconds,
    naivePerSec: naive.allocated / naive.seconds,
    ceilingPerSec: ceiling.allocated / ceiling.seconds,
    workerCpuUsPerPurchase: (worker.cpuSeconds / worker.allocated) * 1e6,
    ceilingCpuUsPerPurchase: (ceiling.cpuSeconds / ceiling.allocated) * 1e6,
    workerPeakRssMb: worker.peakRssMb,
  };
}

/** Runs `fn` on a fresh database with an event that has stock for every purchase, then deletes it. */
async function withDatabase<T>(fn: (db: BenchDatabase) => Promise<T>): Promise<T> {
  const dir = tempDir();
  try {
    const url = `sqlite:${join(dir.path, 'onsale.db')}`;
    return await fn({ dir: dir.path, url, ...(await createEvent(url)) });
  } finally {
    dir.remove();
  }
}

async function createEvent(url: string): Promise<{ eventId: string; ticketTypeId: string }> {
  const storage = await openStorage(url);
  const queue = await openQueue(url);
  try {
    await Promise.all([storage.migrate(), queue.migrate()]);
    const event = await storage.createEvent({
      name: 'bench',
      salesOpenAt: new Date().toISOString(),
      holdSeconds: 0,
      ticketTypes: [{ name: 'General admission', priceCents: 5000, capacity: 10_000_000, maxPerBuyer: 4 }],
    });
    return { eventId: event.id, ticketTypeId: event.ticketTypes[0]!.id };
  } finally {
    await Promise.all([storage.close(), queue.close()]);
  }
}

/**
 * Queues `count` purchases of 2 tickets each, by buyers `buyer-<from>` onwards (one purchase each), on the
 * queue engine of `db.url` (the SQLite and the PostgreSQL benches both fill their queue with it).
 */
export async function fillQueue(
  db: Pick<BenchDatabase, 'url' | 'eventId' | 'ticketTypeId'>,
  from: number,
  count: number,
): Promise<void> {
  const queue = await openQueue(db.url);
  try {
    // Big batches: filling is set-up, not what is measured.
    for (let i = from; i < from + count;) {
      const batch: EnqueueRequest[] = [];
      for (; batch.length < 10_000 && i < from + count; i++) {
        batch.push({
          purchase: {
            purchaseId: newPurchaseId(),
            eventId: db.eventId,
            buyerId: `buyer-${i}`,
            canonicalBuyerId: `buyer-${i}`,
            items: [{ ticketTypeId: db.ticketTypeId, quantity: 2 }],
            acceptedAt: new Date().toISOString(),
          },
        });
      }
      await queue.enqueue(batch);
    }
  } finally {
    await queue.close();
  }
}

/**
 * Starts `onsale worker` on a queue holding `queued` purchases and waits until it is empty. The clock starts
 * when the first batch is seen done, so Node's start-up is not counted; the purchases done by then are left
 * out of the count likewise. The queue is polled every 5 ms.
 */
async function drainWithWorker(
  db: BenchDatabase,
  queued: number,
): Promise<{ allocated: number; seconds: number; cpuSeconds: number; peakRssMb: number | null }> {
  const queue = await openQueue(db.url);
  const worker = spawnNode(CLI, ['worker'], cleanEnv({ ONSALE_DATA_DIR: db.dir, LOG_LEVEL: 'warn' }));
  try {
    let first: { at: number; depth: number; cpu: number } | null = null;
    for (;;) {
      const { depth } = await queue.depth();
      const at = performance.now();
      if (first === null && depth < queued) first = { at, depth, cpu: cpuSeconds(worker.pid) };
      if (first !== null && depth === 0) {
        return {
          allocated: first.depth,
          seconds: (at - first.at) / 1000,
          cpuSeconds: cpuSeconds(worker.pid) - first.cpu,
          peakRssMb: peakRssMb(worker.pid),
        };
      }
      if (worker.exited())
        throw new Error(`the worker exited with ${depth} purchases queued:\n${worker.output()}`);
      await sleep(5);
    }
  } finally {
    await worker.stop();
    await queue.close();
  }
}

/** Runs the naive allocator for `seconds` at most (it is far slower than the worker), or until the queue is empty. */
function runNaive(db: BenchDatabase, seconds: number): { allocated: number; seconds: number } {
  const naive = new NaiveAllocator(db.url);
  try {
    let allocated = 0;
    const started = performance.now();
    const until = started + seconds * 1000;
    while (performance.now() < until && naive.allocateNext()) allocated++;
    return { allocated, seconds: (performance.now() - started) / 1000 };
  } finally {
    naive.close();
  }
}

/**
 * Fails unless exactly `expected` purchases of the event are confirmed, with two tickets each: a rate is only
 * worth reporting for work that was done right.
 */
async function verify(db: BenchDatabase, expected: number, who: string): Promise<void> {
  const storage = await openStorage(db.url);
  try {
    const stats = await storage.getStats(db.eventId);
    const confirmed = stats?.purchases.confirmed ?? 0;
    const sold = stats?.ticketTypes[0]?.sold ?? 0;
    if (confirmed !== expected || sold !== 2 * expected) {
      throw new Error(
        `${who}: expected ${expected} confirmed purchases, found ${confirmed} (${sold} tickets)`,
      );
    }
  } finally {
    await storage.close();
  }
}
