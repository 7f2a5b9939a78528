import type { Logger } from 'pino';

/** operations.md: a process stops within 10 s of SIGTERM or SIGINT. */
export const STOP_DEADLINE_MS = 9_000;

/**
 * Runs `stop` on the first SIGTERM or SIGINT, then exits 0; exits 1 if stopping takes longer than the
 * deadline, so a supervisor never waits on a stuck child.
 */
export function onShutdown(logger: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    const deadline = setTimeout(() => {
      logger.error('did not stop in time; exiting');
      process.exit(1);
    }, STOP_DEADLINE_MS);
    deadline.unref();
    stop().then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, 'failed while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}
