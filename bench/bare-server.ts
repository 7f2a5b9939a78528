/**
 * The baseline of `npm run bench`: a bare Fastify server whose purchase route answers 202 at once, with a
 * receipt of the same shape as the real one, and writes nothing. Run as its own process:
 *   node build/bench/bare-server.js PORT [PROCESSES]
 * With PROCESSES > 1 it forks that many servers sharing the port through node:cluster, as `onsale start`
 * does, so both sides of the comparison spread the load the same way.
 */
import cluster from 'node:cluster';
import { randomUUID } from 'node:crypto';
import Fastify from 'fastify';

async function serve(port: number): Promise<void> {
  process.title = 'onsale-bench-bare';
  const app = Fastify({ logger: false });
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.post('/api/events/:eventId/purchases', async (_request, reply) => {
    const purchaseId = randomUUID();
    return reply.code(202).send({ purchaseId, status: 'queued', statusUrl: `/api/purchases/${purchaseId}` });
  });
  await app.listen({ port, host: '127.0.0.1' });
  const stop = () => void app.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

function main(): void {
  const port = Number(process.argv[2]);
  const processes = Number(process.argv[3] ?? '1');
  if (!Number.isInteger(port) || port <= 0 || !Number.isInteger(processes) || processes < 1) {
    process.stderr.write('usage: bare-server.js PORT [PROCESSES]\n');
    process.exit(2);
  }
  if (processes === 1 || cluster.isWorker) {
    void serve(port);
    return;
  }
  process.title = 'onsale-bench-bare-primary';
  const children = Array.from({ length: processes }, () => cluster.fork());
  let alive = children.length;
  cluster.on('exit', () => {
    alive -= 1;
    if (alive === 0) process.exit(0);
  });
  const stop = () => {
    for (const child of children) child.process.kill('SIGTERM');
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
