import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { openQueue, openStorage } from '../adapters/index.js';
import type { Config } from '../config.js';
import type { Queue } from '../ports/queue.js';
import type { Storage } from '../ports/storage.js';
import { createLogger } from '../shared/logger.js';
import { onShutdown } from '../shared/shutdown.js';

/**
 * How long a worker holds an event. Short, so that a crashed worker's event is taken over within seconds;
 * renewed at every claim, so a live worker keeps it. A lease that runs out mid-batch is still safe:
 * applyBatch skips purchases already applied, so a second worker cannot double anything.
 */
export const LEASE_MS = 5_000;
const IDLE_MIN_MS = 2;
const IDLE_MAX_MS = 50;
const RETRY_MAX_MS = 5_000;

export interface WorkerLoop {
  /** Resolves when the loop has stopped, after finishing its current batch. */
  stop(): Promise<void>;
}

/**
 * The worker loop: claim the oldest batch of one event, allocate it in one storage transaction, then ack.
 * The ack comes only after the commit, so a crash between them redelivers a batch that is already applied,
 * which applyBatch turns into a no-op: each purchase takes effect exactly once.
 */
export function startWorkerLoop(opts: {
  storage: Storage;
  queue: Queue;
  workerId: string;
  batchSize: number;
  logger: Logger;
}): WorkerLoop {
  const { storage, queue, workerId, batchSize, logger } = opts;
  let running = true;
  let wake: (() => void) | null = null;
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = null;
        resolve();
      }
      wake = done;
    });

  const loop = (async () => {
    let idle = IDLE_MIN_MS;
    let failures = 0;
    while (running) {
      try {
        const batch = await queue.claim(workerId, batchSize, LEASE_MS);
        if (!batch) {
          await sleep(idle);
          idle = Math.min(IDLE_MAX_MS, idle * 2);
          continue;
        }
        idle = IDLE_MIN_MS;
        const started = performance.now();
        const { applied } = await storage.applyBatch(batch.eventId, batch.purchases);
        await queue.ack(batch);
        failures = 0;
        logger.debug(
          { eventId: batch.eventId, size: batch.purchases.length, applied, ms: performance.now() - started },
          'batch allocated',
        );
      } catch (error) {
        failures += 1;
        const wait = Math.min(RETRY_MAX_MS, 50 * 2 ** Math.min(failures, 10));
        logger.warn(
          { err: error, failures, retryInMs: wait },
          'batch failed; it stays queued and is retried',
        );
        await sleep(wait);
      }
    }
  })();

  return {
    stop: async () => {
      running = false;
      wake?.();
      await loop;
    },
  };
}

/** One worker process (`onsale worker`, or one of `onsale start`'s workers). */
export async function runWorker(config: Config, workerId?: string): Promise<void> {
  process.title = 'onsale-worker';
  const logger = createLogger(config.logLevel, 'worker');
  const storage = openStorage(config.databaseUrl);
  const queue = openQueue(config.queueUrl);
  const id = workerId ?? `${hostname()}-${process.pid}`;
  const loop = startWorkerLoop({ storage, queue, workerId: id, batchSize: config.batchSize, logger });
  logger.info({ workerId: id }, 'worker started');
  onShutdown(logger, async () => {
    await loop.stop();
    await Promise.all([storage.close(), queue.close()]);
  });
}
