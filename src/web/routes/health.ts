import type { FastifyInstance } from 'fastify';
import type { Queue } from '../../ports/queue.js';
import type { Storage } from '../../ports/storage.js';
import { errorResponses, sendError } from '../errors.js';
import { statusBody } from '../schemas.js';

interface HealthOptions {
  storage: Storage;
  queue: Queue;
  /** True once the server drains before closing: /readyz then turns the load balancer away. */
  isDraining: () => boolean;
  /** Why the last write to the queue failed, while that still counts (write-health.ts); null: it did not. */
  writeProblem: () => string | null;
}

/**
 * GET /healthz (the process answers) and GET /readyz (it can serve: not draining, storage and queue answer,
 * and the last write to the queue did not fail).
 */
export async function healthRoutes(
  app: FastifyInstance,
  { storage, queue, isDraining, writeProblem }: HealthOptions,
) {
  app.get(
    '/healthz',
    {
      schema: {
        tags: ['operations'],
        summary: 'Liveness: the process answers',
        response: { 200: statusBody('ok') },
      },
    },
    async () => ({ status: 'ok' }),
  );

  const readiness = {
    tags: ['operations'],
    summary: 'Readiness: not draining, the database and the queue answer, the last write to the queue worked',
    response: { 200: statusBody('ready'), ...errorResponses('unavailable') },
  };
  app.get('/readyz', { schema: readiness }, async (_request, reply) => {
    if (isDraining()) return sendError(reply, 'unavailable', 'draining: this server is shutting down', 5);
    try {
      await Promise.all([storage.ping(), queue.ping()]);
    } catch {
      return sendError(reply, 'unavailable', 'the database or the queue does not answer', 1);
    }
    // Reads work on a database that refuses writes (disk full, locked): purchases would all fail here.
    const problem = writeProblem();
    if (problem) return sendError(reply, 'unavailable', `the last write to the queue failed: ${problem}`, 5);
    return { status: 'ready' };
  });
}
