import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { PaymentProvider } from '../ports/payments.js';
import type { Storage } from '../ports/storage.js';
import { countCheckoutChanges } from '../metrics/metrics.js';
import { reconcilePayments } from '../shared/payment-flow.js';

/** How often a worker looks for holds to expire: well within the contract's 2 seconds. */
const SWEEP_MS = 500;
/** Holds expired per transaction. */
const EXPIRE_BATCH = 500;

export interface CheckoutSweeper {
  stop(): Promise<void>;
}

/**
 * Every worker runs this beside its allocation loop: it expires holds past their end (their tickets back
 * on sale, the waitlist served), makes refunds that are due, and reconciles payments left unsettled. The
 * state is all in storage, and each step is conditional there, so any number of workers sweep at once,
 * and a sweep that dies half way is simply done by the next one: nothing rests on one process's timers.
 */
export function startCheckoutSweeper(opts: {
  storage: Storage;
  provider: PaymentProvider;
  logger: Logger;
}): CheckoutSweeper {
  const { storage, provider, logger } = opts;
  let running = true;
  let timer: NodeJS.Timeout | null = null;
  let current: Promise<void> = Promise.resolve();

  async function sweep(): Promise<void> {
    try {
      for (;;) {
        const changes = await storage.expireHolds(new Date(), EXPIRE_BATCH);
        countCheckoutChanges(changes);
        const expired = changes.filter((c) => c.to === 'expired').length;
        if (expired > 0) logger.debug({ expired, changes: changes.length }, 'holds expired');
        if (expired < EXPIRE_BATCH || !running) break;
        // On SQLite each step is synchronous: let the process's other timers run between them.
        await nextTurn();
      }
      await reconcilePayments(storage, provider, logger);
    } catch (error) {
      logger.warn({ err: error }, 'checkout sweep failed; the next one tries again');
    }
  }

  const tick = () => {
    if (!running) return;
    current = sweep().finally(() => {
      if (running) timer = setTimeout(tick, SWEEP_MS);
    });
  };
  tick();

  return {
    stop: async () => {
      running = false;
      if (timer) clearTimeout(timer);
      await current;
    },
  };
}
