import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import type { Logger } from 'pino';
import { OnsaleError } from '../domain/errors.js';
import { eventToCreate } from '../domain/event-request.js';
import { newPurchaseId } from '../domain/ids.js';
import { purchaseRefusal } from '../domain/purchase-request.js';
import { unstorableText } from '../domain/text.js';
import {
  FINAL_STATUSES,
  queuedPurchase,
  type AcceptedPurchase,
  type Purchase,
  type SaleEvent,
} from '../domain/types.js';
import type { Config } from '../config.js';
import type { EnqueueRequest, EnqueueResult, Queue } from '../ports/queue.js';
import type { Storage } from '../ports/storage.js';
import { Backpressure, RateLimiter } from './admission.js';
import { clientErrorResponse, httpStatus, sendError, sendFrameworkError, toOnsaleError } from './errors.js';
import { EventCache } from './event-cache.js';
import { GroupCommit } from './group-commit.js';
import { installObservability, noteErrorCode, notePurchase, requestId } from './metrics-plugin.js';
import { registerPages } from './pages/pages.js';
import {
  eventParams,
  newEventBody,
  purchaseBody,
  purchaseListQuery,
  purchaseParams,
  type NewEventBody,
  type PurchaseListQuery,
  type PurchaseBody,
} from './schemas.js';
import { StatusWatcher } from './status-stream.js';

export interface AppDeps {
  config: Config;
  storage: Storage;
  queue: Queue;
  adminToken: string;
  logger: Logger;
}

export interface OnsaleApp {
  app: FastifyInstance;
  /**
   * Turns /readyz to 503 so that a load balancer stops sending before the server closes; requests that still
   * come are served as usual until close.
   */
  startDraining(): void;
  /** Waits for purchases being written to the queue. */
  drain(): Promise<void>;
}

/** Printable ASCII, 1..128 characters (api.md, Idempotency-Key). */
const IDEMPOTENCY_KEY = /^[\x20-\x7e]{1,128}$/;

/** Builds the HTTP API of api.md over a storage and a queue. */
export function buildApp({ config, storage, queue, adminToken, logger }: AppDeps): OnsaleApp {
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimit,
    // X-Forwarded-For names the client only when it comes from a trusted balancer (ONSALE_TRUST_PROXY).
    trustProxy: config.trustProxy.length > 0 ? config.trustProxy : false,
    genReqId: requestId,
    // While closing, requests still arriving on open connections are handled here, not by Fastify's own
    // 503 (its body is not api.md's and has no Retry-After): purchases get 503 unavailable (closing below).
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
  // Only JSON bodies are accepted: without this, Fastify would also parse text/plain.
  app.removeContentTypeParser('text/plain');
  // Bodies are JSON in UTF-8: bytes that are not UTF-8 are refused, not stored as U+FFFD, so that every
  // string is kept as sent. The rest is Fastify's own JSON parser (with its prototype-poisoning checks).
  const parseJson = app.getDefaultJsonParser('error', 'error') as (
    request: FastifyRequest,
    body: string,
    done: (error: Error | null, value?: unknown) => void,
  ) => void;
  const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    let text: string;
    try {
      text = strictUtf8.decode(body as Buffer);
    } catch {
      return done(new OnsaleError('invalid_request', 'the body is not valid UTF-8'), undefined);
    }
    parseJson(request, text, done);
  });

  const events = new EventCache(storage);
  const watcher = new StatusWatcher(storage);
  const backpressure = new Backpressure(queue, config.maxQueueDepth);
  const buyerLimit = new RateLimiter(config.buyerRate);
  const addressLimit = new RateLimiter(config.addressRate);
  const exempt = new Set(config.rateLimitExempt);
  const commits = new GroupCommit<EnqueueRequest, EnqueueResult>((batch) => queue.enqueue(batch));
  const tokenDigest = createHash('sha256').update(adminToken).digest();
  let draining = false;
  // Set once the server closes (after the drain delay): purchases still coming on open connections are refused.
  let closing = false;

  app.setErrorHandler((error, request, reply) => {
    const failure = toOnsaleError(error);
    noteErrorCode(request, failure?.code ?? 'internal_error');
    if (!failure) {
      request.log.error({ err: error, url: request.url }, 'request failed');
      return sendError(reply, 'internal_error', 'something went wrong on our side');
    }
    if (httpStatus(failure.code) >= 500) request.log.warn({ err: error, url: request.url }, failure.message);
    return sendError(reply, failure.code, failure.message, failure.retryAfterSeconds);
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, 'not_found', `no route ${request.method} ${request.url.split('?')[0]}`),
  );

  // Request logs and metrics, and GET /metrics: before the routes, so that their hooks cover every route.
  installObservability(app, { storage, queue, logger });

  app.addHook('onRequest', async (request) => {
    // The route matched, not the raw URL: the router decodes /%61pi/events to /api/events, which must count.
    if (!(request.routeOptions.url ?? request.url).startsWith('/api/')) return;
    if (!exempt.has(request.ip)) addressLimit.take(request.ip);
  });

  // Status streams never end by themselves before a final status: end them so that closing does not wait.
  const openStreams = new Set<() => void>();
  app.addHook('preClose', async () => {
    closing = true;
    for (const end of [...openStreams]) end();
    watcher.close();
  });

  /**
   * Route hook of the admin endpoints. It runs on request, before the body is read or anything is
   * validated: without the token the answer is 401, never a 400, 413 or 415 that describes the input.
   */
  const adminOnly = { onRequest: async (request: FastifyRequest) => requireAdmin(request) };

  function requireAdmin(request: FastifyRequest): void {
    const header = request.headers.authorization ?? '';
    const match = /^Bearer (.+)$/.exec(header);
    const given = createHash('sha256')
      .update(match?.[1] ?? '')
      .digest();
    if (!match || !timingSafeEqual(given, tokenDigest)) {
      throw new OnsaleError('unauthorized', 'this endpoint needs Authorization: Bearer <admin token>');
    }
  }

  async function eventOr404(eventId: string): Promise<SaleEvent> {
    const event = await events.event(eventId);
    if (!event) throw new OnsaleError('not_found', `no event ${eventId}`);
    return event;
  }

  /** Reads a purchase wherever it is: allocated in storage, or still on the queue. */
  async function findPurchase(purchaseId: string): Promise<Purchase | null> {
    const stored = await storage.getPurchase(purchaseId);
    if (stored) return stored;
    const queued = await queue.find(purchaseId);
    if (queued) return queuedPurchase(queued);
    // Allocated and acked between the two reads above: storage has it now.
    return storage.getPurchase(purchaseId);
  }

  async function purchaseOr404(purchaseId: string): Promise<Purchase> {
    const purchase = await findPurchase(purchaseId);
    if (!purchase) throw new OnsaleError('not_found', `no purchase ${purchaseId}`);
    return purchase;
  }

  registerPages(app, {
    listEvents: () => storage.listEvents(),
    event: async (eventId) => {
      const event = await events.event(eventId);
      return event && withAvailability(event, await events.availability(event.id));
    },
    purchase: findPurchase,
  });

  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    if (draining) return sendError(reply, 'unavailable', 'draining: this server is shutting down', 5);
    try {
      await Promise.all([storage.ping(), queue.ping()]);
    } catch {
      return sendError(reply, 'unavailable', 'the database or the queue does not answer', 1);
    }
    return { status: 'ready' };
  });

  app.post<{ Body: NewEventBody }>(
    '/api/events',
    { ...adminOnly, schema: { body: newEventBody } },
    async (request, reply) => {
      const input = eventToCreate(request.body, new Date());
      if (input instanceof OnsaleError) throw input;
      const event = await storage.createEvent(input);
      return reply.code(201).send(withAvailability(event, new Map()));
    },
  );

  app.get('/api/events', async () => ({ events: await storage.listEvents() }));

  app.get<{ Params: { eventId: string } }>(
    '/api/events/:eventId',
    { schema: { params: eventParams } },
    async (request) => {
      const event = await eventOr404(request.params.eventId);
      return withAvailability(event, await events.availability(event.id));
    },
  );

  app.get<{ Params: { eventId: string } }>(
    '/api/events/:eventId/stats',
    { ...adminOnly, schema: { params: eventParams } },
    async (request) => {
      const stats = await storage.getStats(request.params.eventId);
      if (!stats) throw new OnsaleError('not_found', `no event ${request.params.eventId}`);
      // A dead letter is still queued from the buyer's point of view, until an operator replays it.
      const { queued, deadLetters } = await queue.depthOf(request.params.eventId);
      stats.purchases.queued = queued + deadLetters;
      return { ...stats, deadLetters };
    },
  );

  app.get<{ Params: { eventId: string }; Querystring: PurchaseListQuery }>(
    '/api/events/:eventId/purchases',
    { ...adminOnly, schema: { params: eventParams, querystring: purchaseListQuery } },
    async (request) => {
      const event = await eventOr404(request.params.eventId);
      const { q, limit } = request.query;
      const purchases = await storage.listPurchases(event.id, {
        ...(q === undefined ? {} : { match: q }),
        limit: limit === undefined ? 50 : Number(limit),
      });
      // A purchase still on the queue is not in storage yet: found by its id, it is listed too.
      if (q !== undefined && q.length <= 64 && purchases.length === 0) {
        const queued = await queue.find(q);
        if (queued?.eventId === event.id) purchases.push(queuedPurchase(queued));
      }
      return { purchases };
    },
  );

  app.post<{ Params: { eventId: string }; Body: PurchaseBody }>(
    '/api/events/:eventId/purchases',
    { schema: { params: eventParams, body: purchaseBody } },
    async (request, reply) => {
      const { buyerId, items } = request.body;
      const key = request.headers['idempotency-key'];
      if (key !== undefined && (typeof key !== 'string' || !IDEMPOTENCY_KEY.test(key))) {
        throw new OnsaleError('invalid_request', 'Idempotency-Key must be 1..128 printable ASCII characters');
      }
      const badText = unstorableText(buyerId);
      if (badText) throw badText;
      const event = await eventOr404(request.params.eventId);
      const refusal = purchaseRefusal(event, items, Date.now());
      if (refusal) throw refusal;
      buyerLimit.take(`${event.id}\u0000${buyerId}`);
      backpressure.check();
      if (closing)
        throw new OnsaleError('unavailable', 'this server is shutting down', { retryAfterSeconds: 1 });

      const purchase: AcceptedPurchase = {
        purchaseId: newPurchaseId(),
        eventId: event.id,
        buyerId,
        items: items.map((i) => ({ ticketTypeId: i.ticketTypeId, quantity: i.quantity })),
        acceptedAt: new Date().toISOString(),
      };
      const result = await commits.submit({
        purchase,
        ...(key === undefined ? {} : { idempotency: { key, requestHash: requestHash(purchase) } }),
      });
      if (result.status === 'conflict') {
        throw new OnsaleError('idempotency_conflict', 'this Idempotency-Key was used with a different body');
      }
      if (result.status === 'duplicate') {
        notePurchase(request, result.purchaseId);
        const first = await findPurchase(result.purchaseId);
        return reply.code(200).send(receipt(result.purchaseId, first?.status ?? 'queued'));
      }
      backpressure.accepted();
      notePurchase(request, purchase.purchaseId);
      return reply.code(202).send(receipt(purchase.purchaseId, 'queued'));
    },
  );

  app.get<{ Params: { purchaseId: string } }>(
    '/api/purchases/:purchaseId',
    { schema: { params: purchaseParams } },
    async (request) => purchaseOr404(request.params.purchaseId),
  );

  app.get<{ Params: { purchaseId: string } }>(
    '/api/purchases/:purchaseId/events',
    { schema: { params: purchaseParams } },
    async (request, reply) => streamStatus(await purchaseOr404(request.params.purchaseId), request, reply),
  );

  function streamStatus(purchase: Purchase, request: FastifyRequest, reply: FastifyReply): void {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    const send = (p: Purchase) => res.write(`event: status\ndata: ${JSON.stringify(p)}\n\n`);
    send(purchase);
    if (FINAL_STATUSES.has(purchase.status)) return void res.end();
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    const stop = watcher.watch(purchase, (next) => {
      send(next);
      if (FINAL_STATUSES.has(next.status)) finish();
    });
    function finish() {
      openStreams.delete(finish);
      clearInterval(heartbeat);
      stop();
      res.end();
    }
    openStreams.add(finish);
    request.raw.on('close', finish);
  }

  return {
    app,
    startDraining: () => {
      draining = true;
    },
    drain: () => commits.drain(),
  };
}

function receipt(purchaseId: string, status: Purchase['status']) {
  return { purchaseId, status, statusUrl: `/api/purchases/${purchaseId}` };
}

function withAvailability(event: SaleEvent, availability: Map<string, number>) {
  return {
    ...event,
    ticketTypes: event.ticketTypes.map((t) => ({ ...t, available: availability.get(t.id) ?? t.capacity })),
  };
}

/** What makes two requests with one Idempotency-Key "the same body". */
function requestHash(p: AcceptedPurchase): string {
  return createHash('sha256')
    .update(JSON.stringify([p.buyerId, p.items.map((i) => [i.ticketTypeId, i.quantity])]))
    .digest('base64url');
}
