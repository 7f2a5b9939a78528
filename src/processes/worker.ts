import { hostname } from 'node:os';
import { openQueue, openStorage, openWaitingRoom } from '../adapters/index.js';
import type { Config } from '../config.js';
import { serveProcessMetrics, serveProcessMetricsOrLog } from '../metrics/listener.js';
import { setWorkerCount } from '../metrics/metrics.js';
import { createLogger } from '../shared/logger.js';
import { onShutdown } from '../shared/shutdown.js';
import { startRoomTicker } from '../worker/room-ticker.js';
import { startWorkerLoop } from '../worker/worker.js';
import { startProcessMetrics } from './machine-metrics.js';

/**
 * One worker process: `onsale worker` (standalone), or a child of `onsale start` (a node:cluster worker) or
 * of `onsale cluster` (`under`).
 */
export async function runWorker(
  config: Config,
  workerId?: string,
  under?: 'start' | 'cluster',
): Promise<void> {
  process.title = 'onsale-worker';
  const logger = createLogger(config.logLevel, 'worker');
  if (config.metrics) startProcessMetrics();
  // Under `onsale start` the supervisor counts its workers and serves their metrics through the web
  // servers. Under `onsale cluster` the autoscaler counts them, and each serves its own metrics on the
  // port the cluster gave it. A standalone worker counts itself and may serve its own.
  if (!under) setWorkerCount(1);
  const listener =
    !config.metrics || config.metricsPort === null || under === 'start'
      ? null
      : under === 'cluster'
        ? await serveProcessMetricsOrLog(config.host, config.metricsPort, logger)
        : await serveProcessMetrics(config.host, config.metricsPort);
  const storage = await openStorage(config.databaseUrl);
  const queue = await openQueue(config.queueUrl, config);
  const room = await openWaitingRoom(config.databaseUrl);
  await Promise.all([storage.migrate(), queue.migrate(), room.migrate()]);
  const id = workerId ?? `${hostname()}-${process.pid}`;
  const loop = startWorkerLoop({
    storage,
    queue,
    workerId: id,
    batchSize: config.batchSize,
    maxAttempts: config.maxAttempts,
    logger,
  });
  const ticker = startRoomTicker({ storage, room, logger });
  logger.info({ workerId: id }, 'worker started');
  onShutdown(logger, async () => {
    await Promise.all([loop.stop(), ticker.stop()]);
    await Promise.all([storage.close(), queue.close(), room.close(), listener?.close()]);
  });
}
