import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FINAL_STATUSES, type Purchase } from '../../domain/types.js';
import type { Config } from '../../config.js';
import type { Storage } from '../../ports/storage.js';
import type { Lookups } from '../lookups.js';
import { notePurchase, PURCHASE_ROUTE } from '../metrics-plugin.js';
import { errorResponses } from '../errors.js';
import type { PurchaseAcceptance } from '../purchase-acceptance.js';
import {
  eventParams,
  purchaseBody,
  purchaseHeaders,
  purchaseParams,
  purchaseReceipt,
  purchaseView,
  textResponse,
  type PurchaseBody,
} from '../schemas.js';
import { StatusWatcher } from '../status-stream.js';
import { addressMatcher, StreamCap } from '../client-limits.js';
import { neverCache } from '../no-store.js';

interface PurchasesOptions {
  config: Config;
  storage: Storage;
  lookups: Lookups;
  /** Buying itself, shared with the purchase fast path. */
  acceptance: PurchaseAcceptance;
}

const READ_ERRORS = errorResponses(
  'invalid_request',
  'not_found',
  'rate_limited',
  'internal_error',
  'unavailable',
);

/** Buying (accepting a purchase onto the queue), reading a purchase, and following its status. */
export async function purchaseRoutes(
  app: FastifyInstance,
  { config, storage, lookups, acceptance }: PurchasesOptions,
) {
  const watcher = new StatusWatcher(storage);
  const streamCap = new StreamCap(config.maxStreamsPerClient);
  const uncapped = addressMatcher(config.rateLimitExempt);

  // A purchase's answer carries its id, the key to its tickets: no cache (browser or proxy) may keep it.
  neverCache(app);

  // Status streams never end by themselves before a final status: end them so that closing does not wait.
  const openStreams = new Set<() => void>();
  app.addHook('preClose', async () => {
    acceptance.close();
    for (const end of [...openStreams]) end();
    watcher.close();
  });

  app.post<{ Params: { eventId: string }; Body: PurchaseBody }>(
    PURCHASE_ROUTE,
    {
      schema: {
        tags: ['public'],
        summary: 'Buy: the purchase is durably queued, then allocated in the order accepted',
        params: eventParams,
        headers: purchaseHeaders,
        body: purchaseBody,
        response: {
          200: { ...purchaseReceipt, description: 'the purchase this Idempotency-Key already made' },
          202: {
            ...purchaseReceipt,
            description: 'accepted and durably queued: it will reach a final status',
          },
          ...errorResponses(
            'invalid_request',
            'admission_required',
            'not_found',
            'sales_not_open',
            'idempotency_conflict',
            'payload_too_large',
            'unsupported_media_type',
            'rate_limited',
            'internal_error',
            'overloaded',
            'unavailable',
          ),
        },
      },
    },
    async (request, reply) => {
      const event =
        lookups.knownEvent(request.params.eventId) ?? (await lookups.eventOr404(request.params.eventId));
      // Checked by purchaseHeaders: a string of 1..128 printable ASCII characters, if sent.
      const key = request.headers['idempotency-key'] as string | undefined;
      const { statusCode, receipt } = await acceptance.accept(
        event,
        request.body,
        key,
        request.headers['onsale-admission'],
      );
      notePurchase(request, receipt.purchaseId);
      return reply.code(statusCode).send(receipt);
    },
  );

  app.get<{ Params: { purchaseId: string } }>(
    '/api/purchases/:purchaseId',
    {
      schema: {
        tags: ['public'],
        summary: 'A purchase, with its status and, once confirmed, its tickets',
        params: purchaseParams,
        response: { 200: purchaseView, ...READ_ERRORS },
      },
    },
    async (request) => lookups.purchaseOr404(request.params.purchaseId),
  );

  app.get<{ Params: { purchaseId: string } }>(
    '/api/purchases/:purchaseId/events',
    {
      schema: {
        tags: ['public'],
        summary: "Follow a purchase's status as server-sent events",
        description:
          'One `event: status` whose data is the purchase (as GET /api/purchases/{purchaseId}) now and at ' +
          'every change; the stream ends after a final status.',
        params: purchaseParams,
        response: {
          200: textResponse(
            'server-sent events, `event: status` with the purchase as data',
            'text/event-stream',
          ),
          ...READ_ERRORS,
        },
      },
    },
    async (request, reply) =>
      streamStatus(await lookups.purchaseOr404(request.params.purchaseId), request, reply),
  );

  function streamStatus(purchase: Purchase, request: FastifyRequest, reply: FastifyReply): void {
    // Each open stream is a socket and a watched purchase: a client opening hundreds would starve others.
    const release = uncapped(request.ip) ? () => {} : streamCap.take(request.ip);
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
    if (FINAL_STATUSES.has(purchase.status)) {
      release();
      return void res.end();
    }
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    const stop = watcher.watch(purchase, (next) => {
      send(next);
      if (FINAL_STATUSES.has(next.status)) finish();
    });
    function finish() {
      release();
      openStreams.delete(finish);
      clearInterval(heartbeat);
      stop();
      res.end();
    }
    openStreams.add(finish);
    request.raw.on('close', finish);
  }
}
