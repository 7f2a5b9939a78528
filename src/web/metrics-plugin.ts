import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { countAccepted, countRefused, metricsEnabled, observeRequest, registry } from '../metrics/metrics.js';
import { sharedStateMetrics } from '../metrics/shared-state.js';
import { roomStateMetrics } from '../metrics/room-state.js';
import { logRef } from '../shared/logger.js';
import type { Queue } from '../ports/queue.js';
import type { Outbox } from '../ports/outbox.js';
import type { Storage } from '../ports/storage.js';
import type { WaitingRoom } from '../ports/waiting-room.js';
import { requireAdminToken } from './admin-token.js';
import { errorResponses, sendError } from './errors.js';
import { ADMIN_SECURITY } from './openapi.js';
import { textResponse } from './schemas.js';

export const PURCHASE_ROUTE = '/api/events/:eventId/purchases';
/** Endpoints a load balancer or Prometheus polls: logged at debug, so that info shows buyers' requests. */
const POLLED = new Set(['/healthz', '/readyz', '/metrics', '/api/queue/:placeId']);
/** An X-Request-Id from a load balancer is kept when it looks like an id; anything else gets a fresh one. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/**
 * The ids this process gives: a random prefix (48 bits, so that the processes of a cluster do not meet) and
 * a counter. Unique like a UUID in the logs, at a fraction of its cost on the hot paths.
 */
const ID_PREFIX = randomBytes(6).toString('hex');
let idsGiven = 0;

/** Fastify's genReqId: the load balancer's X-Request-Id if it sent a sane one, else a fresh id. */
export function requestId(request: IncomingMessage): string {
  const given = request.headers['x-request-id'];
  if (typeof given === 'string' && REQUEST_ID.test(given)) return given;
  idsGiven += 1;
  return `${ID_PREFIX}-${idsGiven.toString(36)}`;
}

/** What the route learnt about a request, for its log line and its metrics. */
interface RequestNote {
  purchaseId?: string;
  errorCode?: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by notePurchase and noteErrorCode; a field of every request (decorateRequest), not a map entry. */
    onsaleNote: RequestNote | null;
  }
}

/** The purchase a request created or named: logged with the request, and by the worker that allocates it. */
export function notePurchase(request: FastifyRequest, purchaseId: string): void {
  if (request.onsaleNote) request.onsaleNote.purchaseId = purchaseId;
  else request.onsaleNote = { purchaseId };
}

/** The api.md error code a request was answered with (the refusal reason of a purchase). */
export function noteErrorCode(request: FastifyRequest, code: string): void {
  if (request.onsaleNote) request.onsaleNote.errorCode = code;
  else request.onsaleNote = { errorCode: code };
}

/** What a request's metric, counters and log line are made of. */
interface RequestRecord {
  method: string;
  /** The route pattern, 'unmatched' for none: the metric's label. */
  route: string;
  status: number;
  ms: number;
  errorCode?: string;
  /** The log line's fields naming the request (route, ids, references): made only when the line is written. */
  where: () => Record<string, unknown>;
}

/**
 * The request metric, the purchase counters and the request's log line (info, debug for polled endpoints):
 * for Fastify's routes (the onResponse hook) and the purchase fast path alike.
 */
export function recordRequest(
  log: Pick<Logger, 'isLevelEnabled' | 'info' | 'debug'>,
  { method, route, status, ms, errorCode, where }: RequestRecord,
): void {
  observeRequest(route, method, status, ms / 1000);
  if (route === PURCHASE_ROUTE && method === 'POST') countPurchaseAnswer(status, errorCode);
  const level = POLLED.has(route) ? 'debug' : 'info';
  if (!log.isLevelEnabled(level)) return;
  const line = {
    method,
    ...where(),
    status,
    ms: Math.round(ms * 100) / 100,
    ...(errorCode ? { code: errorCode } : {}),
  };
  log[level](line, 'request');
}

/** Counts a purchase's answer: accepted (202), or refused with its reason; a 200 (a repeat) is neither. */
function countPurchaseAnswer(status: number, errorCode: string | undefined): void {
  if (status === 202) countAccepted();
  else if (status >= 400) countRefused(refusalReason(errorCode, status));
}

/** Refusal reasons: api.md's error codes, with the three kinds of bad input folded into "invalid". */
function refusalReason(code: string | undefined, status: number): string {
  if (code === 'invalid_request' || code === 'payload_too_large' || code === 'unsupported_media_type')
    return 'invalid';
  if (code) return code === 'internal_error' ? 'error' : code;
  if (status === 429) return 'rate_limited';
  if (status === 503) return 'unavailable';
  return status >= 500 ? 'error' : 'invalid';
}

/**
 * Where a request went, told without what may be a secret: the route pattern and its event id; the purchase
 * only as its purchaseRef (a purchase id is the key to its tickets); never the query string (it may hold a
 * token, or an admin's search for an email). An unmatched path loses its query and any long segment.
 */
function whereTo(request: FastifyRequest, route: string, purchaseId: string | undefined) {
  const params = (request.params ?? {}) as Record<string, unknown>;
  const purchase = purchaseId ?? (typeof params.purchaseId === 'string' ? params.purchaseId : undefined);
  return {
    route,
    ...(route === 'unmatched' ? { path: maskedPath(request.url) } : {}),
    ...(typeof params.eventId === 'string' ? { eventId: params.eventId } : {}),
    ...(purchase ? { purchaseRef: logRef(purchase) } : {}),
  };
}

/** A path as logged: no query string, at most 200 characters, segments of 16 or more masked as [id]. */
export function maskedPath(url: string): string {
  return url
    .split('?')[0]!
    .slice(0, 200)
    .split('/')
    .map((segment) => (segment.length >= 16 ? '[id]' : segment))
    .join('/');
}

/**
 * One log line per request (with its id, route, status, time and purchaseRef), the request metrics, the
 * purchase accept/refuse counters, and GET /metrics (admin token required): the whole machine's metrics under `onsale start`,
 * this process's otherwise, plus the queue and stock gauges read once from the shared state.
 */
export function installObservability(
  app: FastifyInstance,
  deps: {
    outboxes?: readonly Outbox[];
    storage: Storage;
    queue: Queue;
    room: WaitingRoom;
    logger: Logger;
    ownMetrics: () => Promise<string>;
    adminToken: string;
  },
): void {
  app.decorateRequest('onsaleNote', null);
  // Callback hooks rather than async ones: they run on every request, and an async hook costs a promise and
  // a turn of the microtask queue each.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    observe(request, reply);
    done();
  });

  function observe(request: FastifyRequest, reply: FastifyReply): void {
    const route = request.routeOptions.url ?? 'unmatched';
    const note = request.onsaleNote;
    // A pino child: buildApp gives Fastify a pino logger.
    recordRequest(request.log as Logger, {
      method: request.method,
      route,
      status: reply.statusCode,
      ms: reply.elapsedTime,
      errorCode: note?.errorCode,
      where: () => whereTo(request, route, note?.purchaseId),
    });
  }

  const shared = metricsEnabled()
    ? sharedStateMetrics(deps.storage, deps.queue, deps.logger, deps.outboxes)
    : null;
  const rooms = metricsEnabled() ? roomStateMetrics(deps.storage, deps.room, deps.logger) : null;
  // Per-event sales and the queue's depth are as private as the admin stats: the same token is asked for
  // (Prometheus sends it from a credentials file, prometheus-config.ts).
  // With metrics off there is nothing to protect: a 404 says so to anyone.
  const onRequest = shared ? requireAdminToken(deps.adminToken) : [];
  const schema = {
    tags: ['operations'],
    summary: 'Prometheus metrics of this server (of every process of the machine under `onsale start`)',
    security: ADMIN_SECURITY,
    response: {
      200: textResponse('the Prometheus text exposition format', 'text/plain'),
      ...errorResponses('unauthorized', 'not_found', 'unavailable'),
    },
  };
  // In a plugin of its own, so that it is added after the OpenAPI generator is in place (openapi.ts).
  app.register(async (scope) => {
    scope.get('/metrics', { onRequest, schema }, async (request, reply) => {
      if (!shared) {
        noteErrorCode(request, 'not_found');
        return sendError(reply, 'not_found', 'metrics are off on this server (ONSALE_METRICS=off)');
      }
      try {
        const own = await deps.ownMetrics();
        reply.type(registry.contentType);
        return own + (await shared()) + ((await rooms?.()) ?? '');
      } catch (error) {
        deps.logger.warn({ err: error }, 'metrics: cannot serve /metrics');
        return sendError(reply, 'unavailable', 'the metrics cannot be gathered right now', 1);
      }
    });
  });
}
