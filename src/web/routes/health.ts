import type { FastifyInstance } from 'fastify';
import type { Queue } from '../../ports/queue.js';
import type { Storage } from '../../ports/storage.js';
import { sendError } from '../errors.js';

interface HealthOptions {
  storage: Storage;
  queue: Queue;
  /** True once the server drains before closing: /readyz then turns the load balancer away. */
  isDraining: () => boolean;
}

/** GET /healthz (the process answers) and GET /readyz (it can serve: not draining, storage and queue up). */
export async function healthRoutes(app: FastifyInstance, { storage, queue, isDraining }: HealthOptions) {
  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    if (isDraining()) return sendError(reply, 'unavailable', 'draining: this server is shutting down', 5);
    try {
      await Promise.all([storage.ping(), queue.ping()]);
    } catch {
      return sendError(reply, 'unavailable', 'the database or the queue does not answer', 1);
    }
    return { status: 'ready' };
  });
}
