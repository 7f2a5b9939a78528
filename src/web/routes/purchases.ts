import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { buyerIdentity } from '../../domain/buyer.js';
import { OnsaleError, UnavailableError } from '../../domain/errors.js';
import { newPurchaseId } from '../../shared/ids.js';
import { purchaseRefusal } from '../../domain/purchase-request.js';
import { FINAL_STATUSES, type AcceptedPurchase, type Purchase } from '../../domain/types.js';
import type { Config } from '../../config.js';
import type { EnqueueRequest, EnqueueResult, Queue } from '../../ports/queue.js';
import type { Storage } from '../../ports/storage.js';
import type { AdmittedPurchase, WaitingRoom } from '../../ports/waiting-room.js';
import type { AdmissionSigner } from '../admission-token.js';
import { Backpressure, RateLimiter } from '../admission.js';
import { GroupCommit } from '../group-commit.js';
import type { Lookups } from '../lookups.js';
import { notePurchase } from '../metrics-plugin.js';
import { errorResponses } from '../errors.js';
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
  queue: Queue;
  lookups: Lookups;
  /** Shared with buildApp, which waits for it to drain when the server stops. */
  commits: GroupCommit<EnqueueRequest, EnqueueResult>;
  /** Checks the Onsale-Admission token of purchases of events with a waiting room, and tells the room. */
  admissions: { signer: AdmissionSigner; room: WaitingRoom };
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
  { config, storage, queue, lookups, commits, admissions }: PurchasesOptions,
) {
  const watcher = new StatusWatcher(storage);
  const backpressure = new Backpressure(queue, config.maxQueueDepth);
  const buyerLimit = new RateLimiter(config.buyerRate);
  const streamCap = new StreamCap(config.maxStreamsPerClient);
  const uncapped = addressMatcher(config.rateLimitExempt);
  // Admitted purchases of concurrent requests are recorded in one transaction: one commit each would hold
  // the event loop for a sync per purchase.
  const admittedPurchases = new GroupCommit<AdmittedPurchase, void>(async (notes) => {
    await admissions.room.notePurchases(notes);
    return notes.map(() => undefined);
  }, 500);
  // Set once the server closes (after the drain delay): purchases still coming on open connections are refused.
  let closing = false;

  // A purchase's answer carries its id, the key to its tickets: no cache (browser or proxy) may keep it.
  neverCache(app);

  // Status streams never end by themselves before a final status: end them so that closing does not wait.
  const openStreams = new Set<() => void>();
  app.addHook('preClose', async () => {
    closing = true;
    for (const end of [...openStreams]) end();
    watcher.close();
  });

  app.post<{ Params: { eventId: string }; Body: PurchaseBody }>(
    '/api/events/:eventId/purchases',
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
      const { buyerId, items } = request.body;
      // Checked by purchaseHeaders: a string of 1..128 printable ASCII characters, if sent.
      const key = request.headers['idempotency-key'] as string | undefined;
      const event =
        lookups.knownEvent(request.params.eventId) ?? (await lookups.eventOr404(request.params.eventId));
      // The one normalization of this request: the limits and the Idempotency-Key go by this id.
      const canonicalBuyerId = buyerIdentity(buyerId, event.buyerIdKind);
      if (canonicalBuyerId instanceof OnsaleError) throw canonicalBuyerId;
      const now = Date.now();
      const refusal = purchaseRefusal(event, items, now);
      if (refusal) throw refusal;
      const placeId = event.waitingRoom
        ? admittedPlaceFor(event.id, canonicalBuyerId, request.headers['onsale-admission'])
        : null;
      buyerLimit.take(canonicalBuyerId, now, event.id);
      backpressure.check();
      if (closing)
        throw new OnsaleError('unavailable', 'this server is shutting down', { retryAfterSeconds: 1 });

      const purchase: AcceptedPurchase = {
        purchaseId: newPurchaseId(event.id),
        eventId: event.id,
        buyerId,
        canonicalBuyerId,
        items: items.map((i) => ({ ticketTypeId: i.ticketTypeId, quantity: i.quantity })),
        acceptedAt: new Date().toISOString(),
      };
      const result = await commits.submit({
        purchase,
        ...(key === undefined ? {} : { idempotency: { key, requestHash: requestHash(purchase) } }),
      });
      // This event's shard did not answer (the others of the same group commit were written).
      if (result.status === 'unavailable') throw new UnavailableError(result.message);
      if (result.status === 'conflict') {
        throw new OnsaleError('idempotency_conflict', 'this Idempotency-Key was used with a different body');
      }
      if (placeId !== null) await noteAdmittedPurchase(placeId, result.purchaseId);
      if (result.status === 'duplicate') {
        notePurchase(request, result.purchaseId);
        const first = await lookups.findPurchase(result.purchaseId);
        return reply.code(200).send(receipt(result.purchaseId, first?.status ?? 'queued'));
      }
      backpressure.accepted();
      notePurchase(request, purchase.purchaseId);
      return reply.code(202).send(receipt(purchase.purchaseId, 'queued'));
    },
  );

  /**
   * The place whose admission the header carries, for this event and buyer and not expired; else 403. The
   * signature is checked here, without a database read.
   */
  function admittedPlaceFor(eventId: string, canonicalBuyerId: string, header: unknown): string {
    const claims = typeof header === 'string' ? admissions.signer.verify(header.trim()) : null;
    if (!claims || claims.eventId !== eventId || claims.canonicalBuyerId !== canonicalBuyerId) {
      throw new OnsaleError(
        'admission_required',
        'this event has a waiting room: buy with the Onsale-Admission token of your admitted place',
      );
    }
    return claims.placeId;
  }

  /** So that the room frees the buyer's slot once the purchase is final; the admission's expiry does too. */
  async function noteAdmittedPurchase(placeId: string, purchaseId: string): Promise<void> {
    try {
      await admittedPurchases.submit({ placeId, purchaseId });
    } catch (error) {
      app.log.warn(
        { err: error },
        'could not record an admitted purchase; its slot frees when the admission expires',
      );
    }
  }

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

function receipt(purchaseId: string, status: Purchase['status']) {
  return { purchaseId, status, statusUrl: `/api/purchases/${purchaseId}` };
}

/** What makes two requests with one Idempotency-Key "the same body": two spellings of one buyer are. */
function requestHash(p: AcceptedPurchase): string {
  return createHash('sha256')
    .update(JSON.stringify([p.canonicalBuyerId, p.items.map((i) => [i.ticketTypeId, i.quantity])]))
    .digest('base64url');
}
