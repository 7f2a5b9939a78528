/**
 * The baseline of `npm run bench`: a bare Fastify server whose purchase route answers 202 at once, with a
 * receipt of the same shape as the real one, and writes nothing. Run as its own process:
 *   node build/bench/bare-server.js PORT [PROCESSES] [--durable DIR]
 * With PROCESSES > 1 it forks that many servers sharing the port through node:cluster, as `onsale start`
 * does, so both sides of the comparison spread the load the same way.
 *
 * With --durable, the route first writes the purchase to onsale's own SQLite queue in DIR (the same table,
 * statements and group commit as a web server, the 202 after the commit) and does nothing else: no
 * validation, limits, hooks or metrics. That is the floor of a durable 202 on this engine, the part of
 * onsale's cost that no accept path can leave out.
 */
import cluster from 'node:cluster';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import Fastify from 'fastify';
import { SqliteQueue } from '../src/adapters/sqlite/queue.js';
import type { EnqueueRequest, EnqueueResult } from '../src/ports/queue.js';
import { newPurchaseId } from '../src/shared/ids.js';
import { GroupCommit } from '../src/web/group-commit.js';

type Enqueue = (
  body: { buyerId: string; items: Array<{ ticketTypeId: string; quantity: number }> },
  eventId: string,
) => Promise<string>;

/** Writes each purchase durably to a SQLite queue in `dir`, in group commits, and gives its id. */
function durableEnqueue(dir: string): Enqueue {
  const queue = new SqliteQueue(`sqlite:${join(dir, 'onsale.db')}`);
  const commits = new GroupCommit<EnqueueRequest, EnqueueResult>((batch) => queue.enqueue(batch));
  return async ({ buyerId, items }, eventId) => {
    const purchaseId = newPurchaseId();
    await commits.submit({
      purchase: {
        purchaseId,
        eventId,
        buyerId,
        canonicalBuyerId: buyerId,
        items,
        acceptedAt: new Date().toISOString(),
      },
    });
    return purchaseId;
  };
}

async function serve(port: number, durableDir: string | null): Promise<void> {
  process.title = 'onsale-bench-bare';
  const enqueue = durableDir === null ? null : durableEnqueue(durableDir);
  const app = Fastify({ logger: false });
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.post<{ Params: { eventId: string }; Body: Parameters<Enqueue>[0] }>(
    '/api/events/:eventId/purchases',
    async (request, reply) => {
      const purchaseId = enqueue ? await enqueue(request.body, request.params.eventId) : randomUUID();
      return reply
        .code(202)
        .send({ purchaseId, status: 'queued', statusUrl: `/api/purchases/${purchaseId}` });
    },
  );
  await app.listen({ port, host: '127.0.0.1' });
  const stop = () => void app.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

function main(): void {
  const [portArg, processesArg = '1', flag, durableDir] = process.argv.slice(2);
  const port = Number(portArg);
  const processes = Number(processesArg);
  const usable =
    Number.isInteger(port) &&
    port > 0 &&
    Number.isInteger(processes) &&
    processes >= 1 &&
    (flag === undefined || (flag === '--durable' && durableDir !== undefined));
  if (!usable) {
    process.stderr.write('usage: bare-server.js PORT [PROCESSES] [--durable DIR]\n');
    process.exit(2);
  }
  if (processes === 1 || cluster.isWorker) {
    void serve(port, durableDir ?? null);
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
