import { createServer } from 'node:http';
import type { Logger } from 'pino';
import { registry } from './metrics.js';

/**
 * A process's own /metrics on a port of its own, so that Prometheus can scrape a process that has no web
 * server: a standalone worker (ONSALE_METRICS_PORT), and the workers and the autoscaler of `onsale cluster`.
 * Anything else on that port is a 404; a failed collection is a 503.
 */
export async function serveProcessMetrics(
  host: string,
  port: number,
): Promise<{ close: () => Promise<void> }> {
  const server = createServer((request, response) => {
    if (request.method !== 'GET' || request.url?.split('?')[0] !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
      return;
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text),
      () =>
        response
          .writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' })
          .end('metrics unavailable\n'),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * For a child of `onsale cluster` (a worker, the autoscaler): its own /metrics if the port can be had, else
 * none and an error logged. A metrics failure never stops the process; Prometheus shows its target down.
 */
export async function serveProcessMetricsOrLog(
  host: string,
  port: number,
  logger: Logger,
): Promise<{ close: () => Promise<void> } | null> {
  try {
    return await serveProcessMetrics(host, port);
  } catch (error) {
    logger.error({ err: error, host, port }, 'metrics: cannot listen for scrapes; carrying on without');
    return null;
  }
}
