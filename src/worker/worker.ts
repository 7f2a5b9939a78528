import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Logger } from 'pino';
import { UnavailableError } from '../domain/errors.js';
import { headOf, type ClaimedBatch, type Queue } from '../ports/queue.js';
import type { Storage } from '../ports/storage.js';
import { countRetry, observeBatch } from '../metrics/metrics.js';
import { logRef } from '../shared/logger.js';

/**
 * How long a worker holds an event. Short, so that a crashed worker's event is taken over within seconds;
 * renewed at every claim, so a live worker keeps it. A lease that runs out mid-batch is still safe:
 * applyBatch skips purchases already applied, so a second worker cannot double anything.
 */
const LEASE_MS = 5_000;
const IDLE_MIN_MS = 2;
const IDLE_MAX_MS = 50;
const RETRY_MAX_MS = 5_000;

/** From this delivery on, a batch that keeps failing is narrowed to its head purchase alone. */
const ISOLATE_FROM_DELIVERY = 3;

export interface WorkerLoop {
  /** Resolves when the loop has stopped, after finishing its current batch. */
  stop(): Promise<void>;
}

/**
 * The worker loop: claim the oldest batch of one event, allocate it in one storage transaction, then ack.
 * The ack comes only after the commit, so a crash between them redelivers a batch that is already applied,
 * which applyBatch turns into a no-op: each purchase takes effect exactly once. When the queue's tables live
 * in the storage's database (`ackInApply`), the ack is part of that transaction instead: one commit less per
 * batch, and nothing to redeliver.
 *
 * A batch that fails is retried with exponential backoff. When it fails again and again, the worker takes
 * its head purchase alone; a head that still fails after `maxAttempts` deliveries is a poison purchase and
 * goes to the dead-letter place, so one bad purchase cannot stall a whole sale. A database or queue that
 * is unavailable is not the purchase's fault: such failures never dead-letter anything, nor do deliveries
 * whose failure this process did not see (see `failures`).
 */
export function startWorkerLoop(opts: {
  storage: Storage;
  queue: Queue;
  workerId: string;
  batchSize: number;
  maxAttempts: number;
  logger: Logger;
  /** The queue's tables are in the storage's own database (the same URL): ack inside applyBatch. */
  ackInApply?: boolean;
}): WorkerLoop {
  const { storage, queue, workerId, batchSize, maxAttempts, logger } = opts;
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
  /**
   * The last failure of a head purchase in this process. Only a failure seen here, and not a transient one,
   * makes a poison purchase: a head delivered many times with none seen here failed in other workers (the
   * database down while they tried, or they were killed), which says nothing against the purchase, so it
   * is tried here first. Dead-lettering it on its delivery count alone lost valid purchases to the dead
   * letters whenever an outage outlasted the attempts and another worker took the batch.
   */
  const failures = new Map<string, { message: string; transient: boolean }>();

  async function handle(batch: ClaimedBatch): Promise<void> {
    const work = batch.deliveries >= ISOLATE_FROM_DELIVERY ? headOf(batch, 1) : batch;
    const head = work.purchases[0]!;
    const failure = failures.get(head.purchaseId);
    if (work.deliveries > maxAttempts && failure && !failure.transient) {
      const reason = failure.message;
      await queue.deadLetter(work, reason);
      failures.delete(head.purchaseId);
      logger.error(
        { purchaseRef: logRef(head.purchaseId), eventId: work.eventId, reason },
        'purchase dead-lettered (onsale dlq list shows its id)',
      );
      return;
    }
    const started = performance.now();
    try {
      const inline = (opts.ackInApply && queue.inlineAck?.(work)) || undefined;
      const { applied, outcomes } = await storage.applyBatch(work.eventId, work.purchases, inline);
      if (!inline) await queue.ack(work);
      failures.delete(head.purchaseId);
      const ms = performance.now() - started;
      observeBatch(work.purchases.length, ms / 1000, outcomes);
      // At debug, one line per finalized purchase: its purchaseRef ties it to the web server's request line.
      if (logger.isLevelEnabled('debug')) {
        for (const o of outcomes) {
          logger.debug(
            {
              purchaseRef: logRef(o.purchaseId),
              eventId: work.eventId,
              outcome: o.outcome,
              reason: o.reason,
            },
            'purchase finalized',
          );
        }
      }
      logger.debug({ eventId: work.eventId, size: work.purchases.length, applied, ms }, 'batch allocated');
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      failures.set(head.purchaseId, { message, transient: error instanceof UnavailableError });
      if (failures.size > 10_000) failures.clear();
      throw error;
    }
  }

  /**
   * The next batch, claimed while `batch` is applied (Queue.claimNext), so that the database's work on the one
   * overlaps the worker's on the other; null when the queue cannot, or the batch may not be applied whole (a
   * redelivery, which handle() may narrow). A claim that fails here is simply made again in turn.
   */
  function claimBeside(batch: ClaimedBatch): Promise<ClaimedBatch | null> | null {
    if (!queue.claimNext || batch.deliveries > 1) return null;
    return queue.claimNext(workerId, batchSize, LEASE_MS, batch).catch(() => null);
  }

  const loop = (async () => {
    let idle = IDLE_MIN_MS;
    let failed = 0;
    let next: Promise<ClaimedBatch | null> | null = null;
    while (running) {
      try {
        const claimed = next;
        next = null;
        const batch = claimed ? await claimed : await queue.claim(workerId, batchSize, LEASE_MS);
        if (!batch) {
          // After a claim beside, an empty answer may predate what arrived meanwhile: look again at once.
          if (claimed) continue;
          await sleep(idle);
          idle = Math.min(IDLE_MAX_MS, idle * 2);
          continue;
        }
        idle = IDLE_MIN_MS;
        const following = claimBeside(batch);
        try {
          await handle(batch);
        } catch (error) {
          // This batch is delivered again; what was claimed after it is claimed again after it. Another
          // event's claim is handed back, or no other worker could take that event while this one backs off.
          const dropped = await following;
          if (dropped && dropped.eventId !== batch.eventId)
            await queue.release(dropped).catch(() => undefined);
          throw error;
        }
        next = following;
        failed = 0;
        // On an embedded engine every step above is synchronous: without a turn of the event loop here, a
        // backlog would keep this process's timers, signals and metrics waiting until the queue is empty.
        await nextTurn();
      } catch (error) {
        failed += 1;
        countRetry();
        const wait = Math.min(RETRY_MAX_MS, 50 * 2 ** Math.min(failed, 10));
        logger.warn({ err: error, failed, retryInMs: wait }, 'batch failed; it stays queued and is retried');
        await sleep(wait);
      }
    }
    // Stopping with a batch claimed beside the last: hand it back, so another worker need not await its lease.
    const left = await next;
    if (left) await queue.release(left).catch(() => undefined);
  })();

  return {
    stop: async () => {
      running = false;
      wake?.();
      await loop;
    },
  };
}
