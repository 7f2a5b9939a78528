import { createServer, type IncomingMessage } from 'node:http';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Outbox } from '../ports/outbox.js';
import type { EnqueueRequest, EnqueueResult, Queue } from '../ports/queue.js';
import type { Storage } from '../ports/storage.js';
import type { PaymentProvider } from '../ports/payments.js';
import type { WaitingRoom } from '../ports/waiting-room.js';
import { AdmissionSigner } from './admission-token.js';
import { ChallengeSigner } from './pow-challenge.js';
import { RoomReader } from './room-reader.js';
import { addressAdmitter, type FastPath } from './fast-path.js';
import { placeReadFastPath } from './place-read-fast-path.js';
import { purchaseFastPath } from './purchase-fast-path.js';
import { PurchaseAcceptance } from './purchase-acceptance.js';
import { queueAdminRoutes, queueRoutes } from './routes/queue.js';
import { RateLimiter } from './admission.js';
import { addressMatcher, capConnections } from './client-limits.js';
import { clientErrorResponse, errorAnswer, sendError, sendFrameworkError } from './errors.js';
import { GroupCommit } from './group-commit.js';
import { WriteHealth } from './write-health.js';
import { Lookups, withAvailability } from './lookups.js';
import { acceptJsonBodies } from './json-body.js';
import { lingerOnClose } from './lingering-close.js';
import { registry } from '../metrics/metrics.js';
import { installObservability, maskedPath, noteErrorCode, requestId } from './metrics-plugin.js';
import { registerOpenApi } from './openapi.js';
import { AJV_OPTIONS } from './schemas.js';
import { registerPages } from './pages/pages.js';
import { adminRoutes } from './routes/admin.js';
import { eventRoutes } from './routes/events.js';
import { healthRoutes } from './routes/health.js';
import { purchaseRoutes } from './routes/purchases.js';
import { checkoutRoutes } from './routes/checkout.js';

/** Connections silent for this long are closed (at least the request timeout). */
const IDLE_CONNECTION_MS = 60_000;
const KEEP_ALIVE_MS = 72_000;

interface AppDeps {
  config: Config;
  storage: Storage;
  queue: Queue;
  /** The waiting rooms' lines (in the database). */
  room: WaitingRoom;
  adminToken: string;
  logger: Logger;
  /** The payment provider of held purchases (ONSALE_PAYMENTS). */
  payments: PaymentProvider;
  /**
   * The text of this process's own metrics for GET /metrics: its registry, or, for a web server of
   * `onsale start`, the sum over every process of the machine (the process decides, not the app).
   */
  ownMetrics?: () => Promise<string>;
  /** The outboxes of ticket emails (one per shard), for their gauges on /metrics (none: no such gauges). */
  outboxes?: readonly Outbox[];
  /** The worker processes alive, when this server's supervisor tells it (`onsale cluster`). */
  workersAlive?: () => number | undefined;
}

interface OnsaleApp {
  app: FastifyInstance;
  /**
   * Turns /readyz to 503 so that a load balancer stops sending before the server closes; requests that still
   * come are served as usual until close.
   */
  startDraining(): void;
  /** Waits for purchases being written to the queue, joins to the room, and records the reads of places. */
  drain(): Promise<void>;
}

/** Builds the HTTP API of api.md over a storage and a queue. */
export function buildApp({
  config,
  storage,
  queue,
  room,
  adminToken,
  logger,
  payments,
  ownMetrics,
  outboxes,
  workersAlive,
}: AppDeps): OnsaleApp {
  // The last request each socket brought, so that one cut off for slowness is logged with its route. Kept
  // in the server's own handler: a Fastify hook per request costs more than the map.
  const lastRequest = new WeakMap<object, IncomingMessage>();
  // A client trickling its headers or body holds a socket and a parser: the whole request (headers and
  // body) must arrive within ONSALE_REQUEST_TIMEOUT, else 408 and the connection is closed. Node checks
  // the deadlines every connectionsCheckingInterval, so that is a fraction of the timeout.
  const connectionsCheckingInterval = Math.min(30_000, Math.max(250, config.requestTimeout / 4));
  // A connection silent this long is closed; status streams send a heartbeat every 15 s, well within.
  const connectionTimeout = Math.max(config.requestTimeout, IDLE_CONNECTION_MS);
  // Purchases and place reads answered before Fastify (purchase-fast-path.ts, place-read-fast-path.ts); set
  // once their parts exist.
  let fastPath: FastPath = () => false;
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimit,
    // X-Forwarded-For names the client only when it comes from a trusted balancer (ONSALE_TRUST_PROXY).
    trustProxy: config.trustProxy.length > 0 ? config.trustProxy : false,
    genReqId: requestId,
    requestTimeout: config.requestTimeout,
    connectionTimeout,
    // Idle keep-alive connections are closed after this: longer than balancers keep theirs (HAProxy 10 s,
    // nginx 60 s), so that a balancer never sends on a connection the server is closing.
    keepAliveTimeout: KEEP_ALIVE_MS,
    // The server Fastify would make with these options, with the fast paths ahead of its routing.
    serverFactory: (handler) => {
      const server = createServer({ connectionsCheckingInterval }, (request, response) => {
        lastRequest.set(request.socket, request);
        if (closingConnection(request) || fastPath(request, response)) return;
        handler(request, response);
      });
      const closingConnection = lingerOnClose(server);
      server.keepAliveTimeout = KEEP_ALIVE_MS;
      server.requestTimeout = config.requestTimeout;
      server.setTimeout(connectionTimeout);
      return server;
    },
    // While closing, requests still arriving on open connections are handled here, not by Fastify's own
    // 503 (its body is not api.md's and has no Retry-After): purchases get 503 unavailable
    // (purchase-acceptance.ts).
    return503OnClosing: false,
    ajv: { customOptions: { ...AJV_OPTIONS } },
    // Requests refused before they reach a route still get api.md's error body, not Fastify's.
    clientErrorHandler: (error, socket) => {
      if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
        // The route without its query string: a query may carry what should not be logged.
        logger.warn({ client: socket.remoteAddress, ...receiving(socket) }, 'request timed out: closed');
      }
      if (error.code === 'ECONNRESET' || socket.destroyed) return;
      if (socket.writable) socket.write(clientErrorResponse(error));
      socket.destroy(error);
    },
    frameworkErrors: (error, _request, reply) => void sendFrameworkError(reply, error),
  });
  /** The request a socket was still receiving (its body), if any: its method and path, without the query. */
  function receiving(socket: object): { method?: string; path?: string } {
    const request = lastRequest.get(socket);
    if (!request || request.complete) return {};
    return { method: request.method, path: (request.url ?? '').split('?')[0] };
  }
  // The document collects the routes as they are added: before any of them.
  registerOpenApi(app);
  // Answers are serialized as they are, not by their response schemas (fast-json-stringify would silently
  // drop a field that a schema does not name); test/openapi.test.ts keeps the schemas true instead.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  // Headers must be complete by then too (Node requires headersTimeout ≤ requestTimeout).
  app.server.headersTimeout = config.requestTimeout;
  const uncapped = addressMatcher([...config.trustProxy, ...config.rateLimitExempt]);
  capConnections(app.server, config.maxConnectionsPerClient, uncapped, logger);
  const parseJson = acceptJsonBodies(app);
  answerErrors(app);

  const lookups = new Lookups(storage, queue);
  const addressLimit = new RateLimiter(config.addressRate);
  const exempt = new Set(config.rateLimitExempt);
  const writes = new WriteHealth();
  const commits = new GroupCommit<EnqueueRequest, EnqueueResult>(async (batch) => {
    try {
      const results = await queue.enqueue(batch);
      writes.succeeded();
      return results;
    } catch (error) {
      writes.failed(error);
      throw error;
    }
  });
  let draining = false;

  // Request logs and metrics, and GET /metrics: before the routes, so that their hooks cover every route.
  installObservability(app, {
    storage,
    queue,
    room,
    logger,
    adminToken,
    ownMetrics: ownMetrics ?? (() => registry.metrics()),
    outboxes,
  });

  // Callback hooks rather than async ones on every request: no promise and no extra turn per request.
  app.addHook('onRequest', (request, _reply, done) => {
    // The route matched, not the raw URL: the router decodes /%61pi/events to /api/events, which must count.
    try {
      const path = request.routeOptions.url ?? request.url;
      if (path.startsWith('/api/') && !exempt.has(request.ip)) addressLimit.take(request.ip);
    } catch (error) {
      return done(error as Error);
    }
    done();
  });

  const signer = new AdmissionSigner(adminToken);
  const reader = new RoomReader(room, signer, logger);
  const admitAddress = addressAdmitter({
    takeAddressToken: (address) => addressLimit.take(address),
    exempt,
    trustProxy: config.trustProxy,
  });
  const placeReads = placeReadFastPath({ reader, admitAddress, logger });
  const acceptance = new PurchaseAcceptance({
    config,
    queue,
    lookups,
    commits,
    admissions: { signer, room },
    logger,
  });
  const purchases = purchaseFastPath({
    acceptance,
    knownEvent: (eventId) => lookups.knownEvent(eventId),
    parseJson,
    bodyLimit: config.bodyLimit,
    admitAddress,
    logger,
  });
  fastPath = (request, response) => purchases(request, response) || placeReads(request, response);
  // While closing, Fastify answers every request (with Connection: close).
  app.addHook('preClose', (done) => {
    placeReads.close();
    purchases.close();
    done();
  });
  registerPages(app, {
    listEvents: () => storage.listEvents(),
    event: async (eventId) => {
      const event = await lookups.event(eventId);
      return event && withAvailability(event, await lookups.availability(event.id));
    },
    purchase: (purchaseId) => lookups.findPurchase(purchaseId),
    // The test provider's 3-D Secure page: the buyer's choice goes through the webhook route, signed, as a
    // real provider's webhook would.
    completeAction: payments.completeAction
      ? async (purchaseId, outcome) => {
          const signed = await payments.completeAction!(purchaseId, outcome);
          if (!signed) return false;
          const delivered = await app.inject({
            method: 'POST',
            url: `/webhooks/${payments.name}`,
            headers: { 'content-type': 'application/json', 'onsale-signature': signed.signature },
            payload: signed.body,
          });
          // Not delivered (storage down, say): a worker reconciles the payment with the provider later.
          if (delivered.statusCode !== 200)
            logger.warn({ status: delivered.statusCode }, 'webhook not taken');
          return true;
        }
      : null,
    place: (placeId) => reader.read(placeId),
  });
  app.register(healthRoutes, {
    storage,
    queue,
    isDraining: () => draining,
    writeProblem: () => writes.problem(),
  });
  app.register(eventRoutes, { storage, lookups });
  app.register(purchaseRoutes, { config, storage, lookups, acceptance });
  app.register(checkoutRoutes, { config, storage, lookups, payments });
  app.register(queueRoutes, { lookups, reader, challenges: new ChallengeSigner(adminToken) });
  app.register(queueAdminRoutes, { lookups, room, reader, adminToken });
  app.register(adminRoutes, { storage, queue, lookups, adminToken, workersAlive });

  return {
    app,
    startDraining: () => {
      draining = true;
    },
    drain: async () => {
      await commits.drain();
      await reader.close();
    },
  };
}

/**
 * Every error a route throws, and every unknown route, is answered with api.md's error body: a domain
 * error with the status of its code, anything else (a bug) with a logged 500.
 */
function answerErrors(app: FastifyInstance): void {
  app.setErrorHandler((error, request, reply) => {
    const answer = errorAnswer(error);
    noteErrorCode(request, answer.code);
    if (answer.log) {
      const route = request.routeOptions.url ?? maskedPath(request.url);
      request.log[answer.log.level]({ err: error, route }, answer.log.message);
    }
    return sendError(reply, answer.code, answer.message, answer.retryAfterSeconds);
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, 'not_found', `no route ${request.method} ${request.url.split('?')[0]}`),
  );
}
