import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { UnavailableError } from '../domain/errors.js';
import type { EnqueueRequest, EnqueueResult, Queue } from '../ports/queue.js';
import type { Storage } from '../ports/storage.js';
import { RateLimiter } from './admission.js';
import {
  clientErrorResponse,
  httpStatus,
  sendError,
  sendFrameworkError,
  toOnsaleError,
  UNAVAILABLE_MESSAGE,
} from './errors.js';
import { GroupCommit } from './group-commit.js';
import { Lookups, withAvailability } from './lookups.js';
import { acceptJsonBodies } from './json-body.js';
import { registry } from '../metrics/metrics.js';
import { installObservability, maskedPath, noteErrorCode, requestId } from './metrics-plugin.js';
import { registerPages } from './pages/pages.js';
import { adminRoutes } from './routes/admin.js';
import { eventRoutes } from './routes/events.js';
import { healthRoutes } from './routes/health.js';
import { purchaseRoutes } from './routes/purchases.js';

interface AppDeps {
  config: Config;
  storage: Storage;
  queue: Queue;
  adminToken: string;
  logger: Logger;
  /**
   * The text of this process's own metrics for GET /metrics: its registry, or, for a web server of
   * `onsale start`, the sum over every process of the machine (the process decides, not the app).
   */
  ownMetrics?: () => Promise<string>;
}

interface OnsaleApp {
  app: FastifyInstance;
  /**
   * Turns /readyz to 503 so that a load balancer stops sending before the server closes; requests that still
   * come are served as usual until close.
   */
  startDraining(): void;
  /** Waits for purchases being written to the queue. */
  drain(): Promise<void>;
}

/** Builds the HTTP API of api.md over a storage and a queue. */
export function buildApp({ config, storage, queue, adminToken, logger, ownMetrics }: AppDeps): OnsaleApp {
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimit,
    // X-Forwarded-For names the client only when it comes from a trusted balancer (ONSALE_TRUST_PROXY).
    trustProxy: config.trustProxy.length > 0 ? config.trustProxy : false,
    genReqId: requestId,
    // While closing, requests still arriving on open connections are handled here, not by Fastify's own
    // 503 (its body is not api.md's and has no Retry-After): purchases get 503 unavailable
    // (routes/purchases.ts).
    return503OnClosing: false,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    // Requests refused before they reach a route still get api.md's error body, not Fastify's.
    clientErrorHandler: (error, socket) => {
      if (error.code === 'ECONNRESET' || socket.destroyed) return;
      if (socket.writable) socket.write(clientErrorResponse(error));
      socket.destroy(error);
    },
    frameworkErrors: (error, _request, reply) => void sendFrameworkError(reply, error),
  });
  acceptJsonBodies(app);
  answerErrors(app);

  const lookups = new Lookups(storage, queue);
  const addressLimit = new RateLimiter(config.addressRate);
  const exempt = new Set(config.rateLimitExempt);
  const commits = new GroupCommit<EnqueueRequest, EnqueueResult>((batch) => queue.enqueue(batch));
  let draining = false;

  // Request logs and metrics, and GET /metrics: before the routes, so that their hooks cover every route.
  installObservability(app, { storage, queue, logger, ownMetrics: ownMetrics ?? (() => registry.metrics()) });

  app.addHook('onRequest', async (request) => {
    // The route matched, not the raw URL: the router decodes /%61pi/events to /api/events, which must count.
    if (!(request.routeOptions.url ?? request.url).startsWith('/api/')) return;
    if (!exempt.has(request.ip)) addressLimit.take(request.ip);
  });

  registerPages(app, {
    listEvents: () => storage.listEvents(),
    event: async (eventId) => {
      const event = await lookups.event(eventId);
      return event && withAvailability(event, await lookups.availability(event.id));
    },
    purchase: (purchaseId) => lookups.findPurchase(purchaseId),
  });
  app.register(healthRoutes, { storage, queue, isDraining: () => draining });
  app.register(eventRoutes, { storage, lookups });
  app.register(purchaseRoutes, { config, storage, queue, lookups, commits });
  app.register(adminRoutes, { storage, queue, lookups, adminToken });

  return {
    app,
    startDraining: () => {
      draining = true;
    },
    drain: () => commits.drain(),
  };
}

/**
 * Every error a route throws, and every unknown route, is answered with api.md's error body: a domain
 * error with the status of its code, anything else (a bug) with a logged 500.
 */
function answerErrors(app: FastifyInstance): void {
  app.setErrorHandler((error, request, reply) => {
    const failure = toOnsaleError(error);
    noteErrorCode(request, failure?.code ?? 'internal_error');
    const route = request.routeOptions.url ?? maskedPath(request.url);
    if (!failure) {
      request.log.error({ err: error, route }, 'request failed');
      return sendError(reply, 'internal_error', 'something went wrong on our side');
    }
    if (httpStatus(failure.code) >= 500) request.log.warn({ err: error, route }, failure.message);
    // A datastore's failure names its engine and error codes: that is for the log, not for clients.
    const message = failure instanceof UnavailableError ? UNAVAILABLE_MESSAGE : failure.message;
    return sendError(reply, failure.code, message, failure.retryAfterSeconds);
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, 'not_found', `no route ${request.method} ${request.url.split('?')[0]}`),
  );
}
