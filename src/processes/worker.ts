import { hostname } from 'node:os';
import { openMailer, openOutbox, openQueue, openStorage, openWaitingRoom } from '../adapters/index.js';
import { isSharded, splitUrls } from '../adapters/sharding/urls.js';
import type { Config } from '../config.js';
import { serveProcessMetrics, serveProcessMetricsOrLog } from '../metrics/listener.js';
import { setWorkerCount } from '../metrics/metrics.js';
import { createLogger } from '../shared/logger.js';
import { onShutdown } from '../shared/shutdown.js';
import { domainOf } from '../mail/ticket-email.js';
import { startMailLoop } from '../worker/mail.js';
import { startRoomTicker } from '../worker/room-ticker.js';
import { startWorkerLoop } from '../worker/worker.js';
import { startCheckoutSweeper } from '../worker/checkout-sweeper.js';
import { openPaymentProvider } from '../adapters/payments/index.js';
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
  const logger = createLogger(config.logLevel, 'worker', undefined, config.logFormat);
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
  // A purchase's email is written in its shard's own transaction: each shard keeps its outbox.
  const outboxes = await Promise.all(splitUrls(config.databaseUrl).map((url) => openOutbox(url)));
  const room = await openWaitingRoom(config.databaseUrl, config.roomUrl);
  await Promise.all([
    storage.migrate(),
    queue.migrate(),
    ...outboxes.map((o) => o.migrate()),
    room.migrate(),
  ]);
  const id = workerId ?? `${hostname()}-${process.pid}`;
  const loop = startWorkerLoop({
    storage,
    queue,
    workerId: id,
    batchSize: config.batchSize,
    maxAttempts: config.maxAttempts,
    logger,
    ackInApply: config.queueUrl === config.databaseUrl && !isSharded(config.databaseUrl),
  });
  // Every worker also sends ticket emails; the outbox's leases keep two from sending one at once.
  const mailer = config.smtpUrl ? await openMailer(config.smtpUrl, config.mailFrom) : null;
  const mailLoops = outboxes.map((outbox) =>
    startMailLoop({
      outbox,
      storage,
      mailer,
      workerId: id,
      publicUrl: config.publicUrl,
      senderDomain: domainOf(config.mailFrom),
      logger,
    }),
  );
  const sweeper = startCheckoutSweeper({
    storage,
    provider: await openPaymentProvider(config, storage),
    logger,
  });
  const ticker = startRoomTicker({ storage, room, logger });
  logger.info({ workerId: id, mail: config.smtpUrl ? 'on' : 'off' }, 'worker started');
  onShutdown(logger, async () => {
    await Promise.all([loop.stop(), ...mailLoops.map((m) => m.stop()), sweeper.stop(), ticker.stop()]);
    await Promise.all([
      storage.close(),
      queue.close(),
      ...outboxes.map((o) => o.close()),
      room.close(),
      listener?.close(),
    ]);
  });
}
