import { createServer } from 'node:http';
import { registry } from './metrics.js';

/**
 * A standalone worker's own /metrics (ONSALE_METRICS_PORT), so that Prometheus can scrape workers run
 * apart from the web servers. Anything else on that port is a 404; a failed collection is a 503.
 */
export async function serveWorkerMetrics(
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
