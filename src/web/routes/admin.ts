import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { csvLine, PURCHASE_EXPORT_COLUMNS, purchaseExportLine } from '../../domain/csv.js';
import { OnsaleError } from '../../domain/errors.js';
import { eventToCreate } from '../../domain/event-request.js';
import { queuedPurchase, type SaleEvent } from '../../domain/types.js';
import type { Queue } from '../../ports/queue.js';
import type { Storage } from '../../ports/storage.js';
import { requireAdminToken } from '../admin-token.js';
import { errorResponses } from '../errors.js';
import { withAvailability, type Lookups } from '../lookups.js';
import { ADMIN_SECURITY } from '../openapi.js';
import {
  eventParams,
  eventStats,
  eventView,
  newEventBody,
  paymentHistoryView,
  purchaseList,
  purchaseParams,
  purchaseListQuery,
  textResponse,
  type NewEventBody,
  type PurchaseListQuery,
} from '../schemas.js';

interface AdminOptions {
  storage: Storage;
  queue: Queue;
  lookups: Lookups;
  adminToken: string;
  /** The worker processes alive, when this server's supervisor tells it (`onsale cluster`). */
  workersAlive?: () => number | undefined;
}

const ADMIN_READ_ERRORS = errorResponses(
  'invalid_request',
  'unauthorized',
  'not_found',
  'rate_limited',
  'internal_error',
  'unavailable',
);

/** Purchases read per page by the export: one page is in memory at a time, whatever the event's size. */
const EXPORT_PAGE = 1_000;

/**
 * The CSV of an event's allocated purchases, produced page by page as the client reads it: Readable.from
 * asks for the next page only when the socket has taken the previous one, so a 200,000-purchase export
 * holds one page in memory, and a slow client slows the reads instead of filling memory.
 */
function purchasesCsv(storage: Storage, event: SaleEvent): Readable {
  async function* lines(): AsyncGenerator<string> {
    // A byte-order mark, so that spreadsheets open the file as UTF-8.
    yield `\uFEFF${csvLine([...PURCHASE_EXPORT_COLUMNS])}`;
    let after: string | null = null;
    for (;;) {
      const page = await storage.purchasesPage(event.id, after, EXPORT_PAGE);
      if (page.length === 0) return;
      yield page.map((p) => purchaseExportLine(p, event)).join('');
      after = page[page.length - 1]!.purchaseId;
    }
  }
  return Readable.from(lines(), { objectMode: false });
}

/** The endpoints that need the admin token: creating events, their stats and their purchases. */
export async function adminRoutes(
  app: FastifyInstance,
  { storage, queue, lookups, adminToken, workersAlive }: AdminOptions,
) {
  // Added here, it covers this plugin's routes only.
  app.addHook('onRequest', requireAdminToken(adminToken));

  app.post<{ Body: NewEventBody }>(
    '/api/events',
    {
      schema: {
        tags: ['admin'],
        summary: 'Create an event and its ticket types',
        security: ADMIN_SECURITY,
        body: newEventBody,
        response: {
          201: {
            ...eventView,
            description: 'the event, with the ids the server gave it and its ticket types',
          },
          ...errorResponses(
            'invalid_request',
            'unauthorized',
            'payload_too_large',
            'unsupported_media_type',
            'rate_limited',
            'internal_error',
            'unavailable',
          ),
        },
      },
    },
    async (request, reply) => {
      const input = eventToCreate(request.body, new Date());
      if (input instanceof OnsaleError) throw input;
      const event = await storage.createEvent(input);
      return reply.code(201).send(withAvailability(event, new Map()));
    },
  );

  app.get<{ Params: { eventId: string } }>(
    '/api/events/:eventId/stats',
    {
      schema: {
        tags: ['admin'],
        summary: "The event's exact figures, read from the system of record",
        security: ADMIN_SECURITY,
        params: eventParams,
        response: { 200: eventStats, ...ADMIN_READ_ERRORS },
      },
    },
    async (request) => {
      // The queue first, then storage: a worker commits a batch before it acks it, so every purchase gone
      // from the queue at the first read is in storage at the second. The other order could miss a batch
      // committed between the reads, counted neither queued nor final.
      const { queued, deadLetters } = await queue.depthOf(request.params.eventId);
      const stats = await storage.getStats(request.params.eventId);
      if (!stats) throw new OnsaleError('not_found', `no event ${request.params.eventId}`);
      // A dead letter is still queued from the buyer's point of view, until an operator replays it.
      stats.purchases.queued = queued + deadLetters;
      const workers = workersAlive?.();
      return { ...stats, deadLetters, ...(workers === undefined ? {} : { workers }) };
    },
  );

  app.get<{ Params: { eventId: string }; Querystring: PurchaseListQuery }>(
    '/api/events/:eventId/purchases',
    {
      schema: {
        tags: ['admin'],
        summary: "The event's purchases, newest first; `q` finds a purchase id or any spelling of a buyer id",
        security: ADMIN_SECURITY,
        params: eventParams,
        querystring: purchaseListQuery,
        response: { 200: purchaseList, ...ADMIN_READ_ERRORS },
      },
    },
    async (request) => {
      const event = await lookups.eventOr404(request.params.eventId);
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

  app.get<{ Params: { eventId: string } }>(
    '/api/events/:eventId/export.csv',
    {
      schema: {
        tags: ['admin'],
        summary: "The event's allocated purchases as CSV, streamed (purchases still queued are not in it)",
        security: ADMIN_SECURITY,
        params: eventParams,
        response: {
          200: textResponse(
            'an attachment, a UTF-8 byte-order mark then one line per purchase: ' +
              PURCHASE_EXPORT_COLUMNS.join(', '),
            'text/csv',
          ),
          ...ADMIN_READ_ERRORS,
        },
      },
    },
    async (request, reply) => {
      const event = await lookups.eventOr404(request.params.eventId);
      // Purchases still on the queue have no final status yet: the export is of what storage holds.
      return reply
        .type('text/csv; charset=utf-8')
        .header('content-disposition', `attachment; filename="event-${event.id}-purchases.csv"`)
        .header('cache-control', 'no-store')
        .send(purchasesCsv(storage, event));
    },
  );

  // A purchase's payment history (attempts, answers, webhooks, refunds), for the admin page.
  app.get<{ Params: { purchaseId: string } }>(
    '/api/purchases/:purchaseId/payments',
    {
      schema: {
        tags: ['admin'],
        summary: "A purchase's payment history: attempts, the provider's answers, webhooks, refunds",
        security: ADMIN_SECURITY,
        params: purchaseParams,
        response: { 200: paymentHistoryView, ...ADMIN_READ_ERRORS },
      },
    },
    async (request) => {
      const purchase = await lookups.purchaseOr404(request.params.purchaseId);
      const history = await storage.paymentHistory(purchase.purchaseId);
      return {
        purchaseId: purchase.purchaseId,
        payment: purchase.payment,
        refunded: purchase.refunded,
        history,
      };
    },
  );
}
