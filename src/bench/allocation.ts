import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openQueue, openStorage } from '../adapters/index.js';
import { newPurchaseId } from '../domain/ids.js';
import type { EnqueueRequest } from '../ports/queue.js';
import { NaiveAllocator } from './naive-allocator.js';
import { cleanEnv, peakRssMb, sleep, spawnNode } from './processes.js';

const CLI = fileURLToPath(new URL('../cli.js', import.meta.url));

export interface AllocationPlan {
  /** Purchases queued for the real worker, all drained. */
  purchases: number;
  /** Purchases queued for the naive allocator, which runs for at most `naiveSeconds`. */
  naivePurchases: number;
  naiveSeconds: number;
}

export interface AllocationFigures {
  allocPerSec: number;
  naivePerSec: number;
  workerPeakRssMb: number | null;
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

/** The real worker (an `onsale worker` process) and then the naive allocator, each on a fresh database. */
export async function measureAllocation(
  plan: AllocationPlan,
  progress: (line: string) => void,
): Promise<AllocationFigures> {
  progress(`allocation: filling a queue with ${fmt(plan.purchases)} purchases`);
  const worker = await measureWorker(plan.purchases);
  progress(
    `allocation: onsale worker allocated ${fmt(worker.allocated)} in ${worker.seconds.toFixed(2)} s: ` +
      `${fmt(worker.allocated / worker.seconds)}/s`,
  );
  progress(`allocation: filling a queue with ${fmt(plan.naivePurchases)} purchases for the naive allocator`);
  const naive = await measureNaive(plan.naivePurchases, plan.naiveSeconds);
  progress(
    `allocation: naive allocator (one transaction per purchase) allocated ${fmt(naive.allocated)} in ` +
      `${naive.seconds.toFixed(2)} s: ${fmt(naive.allocated / naive.seconds)}/s`,
  );
  return {
    allocPerSec: worker.allocated / worker.seconds,
    naivePerSec: naive.allocated / naive.seconds,
    workerPeakRssMb: worker.peakRssMb,
  };
}

/**
 * A fresh embedded database (storage and queue in one file, as by default) whose queue holds `count`
 * purchases of 2 tickets each by distinct buyers, for an event with stock for all of them.
 */
async function filledDatabase(count: number): Promise<{ dir: string; url: string; eventId: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'onsale-bench-'));
  const url = `sqlite:${join(dir, 'onsale.db')}`;
  const storage = openStorage(url);
  const queue = openQueue(url);
  try {
    const event = await storage.createEvent({
      name: 'bench',
      salesOpenAt: new Date().toISOString(),
      holdSeconds: 0,
      ticketTypes: [{ name: 'General admission', priceCents: 5000, capacity: 10_000_000, maxPerBuyer: 4 }],
    });
    const ticketTypeId = event.ticketTypes[0]!.id;
    // Big batches: filling is set-up, not what is measured.
    for (let done = 0; done < count;) {
      const batch: EnqueueRequest[] = [];
      for (; batch.length < 10_000 && done < count; done++) {
        batch.push({
          purchase: {
            purchaseId: newPurchaseId(),
            eventId: event.id,
            buyerId: `buyer-${done}`,
            items: [{ ticketTypeId, quantity: 2 }],
            acceptedAt: new Date().toISOString(),
          },
        });
      }
      await queue.enqueue(batch);
    }
    return { dir, url, eventId: event.id };
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  } finally {
    await Promise.all([storage.close(), queue.close()]);
  }
}

/** Fails unless exactly `expected` purchases were confirmed, with two tickets each: a rate is only worth
 * reporting for work that was done right. */
async function verify(url: string, eventId: string, expected: number, who: string): Promise<void> {
  const storage = openStorage(url);
  try {
    const stats = await storage.getStats(eventId);
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

/** Starts `onsale worker` on a filled queue and times it until the queue is empty. */
async function measureWorker(
  count: number,
): Promise<{ allocated: number; seconds: number; peakRssMb: number | null }> {
  const { dir, url, eventId } = await filledDatabase(count);
  const queue = openQueue(url);
  const worker = spawnNode(CLI, ['worker'], cleanEnv({ ONSALE_DATA_DIR: dir, LOG_LEVEL: 'warn' }));
  try {
    // The clock starts when the first batch is seen done, so Node's start-up is not counted; the purchases
    // done by then are left out of the count likewise. The queue is polled every 5 ms.
    let first: { at: number; depth: number } | null = null;
    for (;;) {
      const { depth } = await queue.depth();
      const at = performance.now();
      if (first === null && depth < count) first = { at, depth };
      if (first !== null && depth === 0) {
        const figures = {
          allocated: first.depth,
          seconds: (at - first.at) / 1000,
          peakRssMb: peakRssMb(worker.pid),
        };
        await worker.stop();
        await verify(url, eventId, count, 'onsale worker');
        return figures;
      }
      if (worker.exited())
        throw new Error(`the worker exited with ${depth} purchases queued:\n${worker.output()}`);
      await sleep(5);
    }
  } finally {
    await worker.stop();
    await queue.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs the naive allocator on a filled queue for `seconds` at most (it is far slower than the worker). */
async function measureNaive(count: number, seconds: number): Promise<{ allocated: number; seconds: number }> {
  const { dir, url, eventId } = await filledDatabase(count);
  try {
    const naive = new NaiveAllocator(url);
    let allocated = 0;
    const started = performance.now();
    try {
      const until = started + seconds * 1000;
      while (performance.now() < until && naive.allocateNext()) allocated++;
    } finally {
      naive.close();
    }
    const elapsed = (performance.now() - started) / 1000;
    await verify(url, eventId, allocated, 'naive allocator');
    return { allocated, seconds: elapsed };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
