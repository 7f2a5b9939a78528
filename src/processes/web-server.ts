import cluster from 'node:cluster';
import { openOutbox, openQueue, openStorage, openWaitingRoom } from '../adapters/index.js';
import { openPaymentProvider } from '../adapters/payments/index.js';
import { splitUrls } from '../adapters/sharding/urls.js';
import type { Config } from '../config.js';
import { countStorageRead, registry } from '../metrics/metrics.js';
import { machineMetrics, startProcessMetrics } from './machine-metrics.js';
import { CLUSTER_CHILD_ENV, isWorkersMessage, type WorkersMessage } from './messages.js';
import { createLogger } from '../shared/logger.js';
import { onShutdown } from '../shared/shutdown.js';
import { buildApp } from '../web/app.js';

/** One web server process (`onsale serve`, or one of `onsale start`'s cluster). */
export async function runWebServer(config: Config, adminToken: string): Promise<void> {
  process.title = 'onsale-web';
  const logger = createLogger(config.logLevel, 'web', undefined, config.logFormat);
  if (config.metrics) startProcessMetrics();
  const storage = await openStorage(config.databaseUrl, {
    databaseReplicaUrl: config.databaseReplicaUrl,
    onRead: countStorageRead,
  });
  // On SQLite, the group commit runs on this event loop: a writer thread was measured to cost more CPU per
  // 202 than the commit it took off the loop (docs/benchmarks.md, ackVsBare).
  const queue = await openQueue(config.queueUrl, { databaseUrl: config.databaseUrl });
  // Read for the outbox gauges of /metrics only: each shard keeps its own outbox, the gauges add them up.
  const outboxes = config.metrics
    ? await Promise.all(splitUrls(config.databaseUrl).map((url) => openOutbox(url)))
    : [];
  const room = await openWaitingRoom(config.databaseUrl, config.roomUrl);
  await Promise.all([
    storage.migrate(),
    queue.migrate(),
    ...outboxes.map((o) => o.migrate()),
    room.migrate(),
  ]);
  // Under `onsale start` one scrape of any web server shows the whole machine (every child's registry summed).
  const ownMetrics = cluster.isWorker ? machineMetrics : () => registry.metrics();
  const payments = await openPaymentProvider(config, storage);
  const workers = clusterWorkers();
  const web = buildApp({
    config,
    storage,
    queue,
    room,
    adminToken,
    logger,
    payments,
    ownMetrics,
    outboxes,
    workersAlive: workers.alive,
  });
  await web.app.listen({ port: config.port, host: config.host });
  workers.ask();

  onShutdown(logger, async () => {
    // /readyz answers 503 from now on; a balancer takes the server out within its check interval, while it
    // still serves what comes. Then the listener closes and requests in flight finish.
    web.startDraining();
    if (config.drainDelay > 0) await new Promise((r) => setTimeout(r, config.drainDelay));
    await web.app.close();
    await web.drain();
    await Promise.all([storage.close(), queue.close(), ...outboxes.map((o) => o.close()), room.close()]);
  });
}

/**
 * Under `onsale cluster`, the worker processes the cluster runs, as it tells each web server (for the admin's
 * stats); elsewhere unknown to a web server.
 */
function clusterWorkers(): { alive: () => number | undefined; ask: () => void } {
  let alive: number | undefined;
  const child = process.env[CLUSTER_CHILD_ENV] === '1' && !cluster.isWorker && process.send !== undefined;
  if (child)
    process.on('message', (message: unknown) => {
      if (isWorkersMessage(message) && message.workers !== undefined) alive = message.workers;
    });
  return {
    alive: () => alive,
    ask: () => {
      if (child) process.send!({ type: 'onsale-workers' } satisfies WorkersMessage, () => {});
    },
  };
}
