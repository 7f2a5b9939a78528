import type { FastifyInstance } from 'fastify';

/**
 * Marks every answer of this plugin's routes `cache-control: no-store`: they carry what only their buyer may
 * see (a purchase id, an admission token). A callback hook, not an async one: it runs on every purchase.
 */
export function neverCache(app: FastifyInstance): void {
  app.addHook('onSend', (_request, reply, payload, done) => {
    reply.header('cache-control', 'no-store');
    done(null, payload);
  });
}
