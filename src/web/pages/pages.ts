import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { extname } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errorResponses, sendError } from '../errors.js';
import { textResponse } from '../schemas.js';
import { FINAL_STATUSES, type Purchase, type SaleEvent } from '../../domain/types.js';
import { html, type SafeHtml } from './html.js';
import { qrSvg } from './qr.js';
import {
  adminPage,
  eventPage,
  eventsPage,
  layout,
  notFoundPage,
  purchasePage,
  threeDSecurePage,
  queuePage,
  type PlaceForPage,
  type AssetUrls,
  type EventWithAvailability,
  type FormState,
  PAY_NOTICES,
  type PayNotice,
} from './views.js';

/** What the pages read; app.ts passes its own cached readers, so pages cost the API nothing extra. */
interface PageReaders {
  listEvents(): Promise<Array<Pick<SaleEvent, 'id' | 'name' | 'salesOpenAt'>>>;
  event(eventId: string): Promise<EventWithAvailability | null>;
  purchase(purchaseId: string): Promise<Purchase | null>;
  /**
   * For a payment provider whose 3-D Secure step is a page of onsale's own: records the buyer's choice and
   * delivers the provider's signed webhook; false when the payment awaited no action. Null: no such page.
   */
  completeAction: ((purchaseId: string, outcome: 'approve' | 'fail') => Promise<boolean>) | null;
  /** A place in a waiting room, as GET /api/queue/:placeId answers it. */
  place(
    placeId: string,
  ): Promise<
    (PlaceForPage & { eventId: string; buyerId: string; admission: { token: string } | null }) | null
  >;
}

/**
 * Strict for pages: scripts and styles only from this origin as files (no inline code, no eval), no
 * framing, forms post only here. Data is never markup: the server escapes it, the scripts use textContent.
 */
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  // Purchase pages carry the purchase id, which is what lets one read it: never send it elsewhere. Not
  // no-referrer: under it a browser sends `Origin: null` with the page's own form, which the buy form's
  // cross-site check must refuse.
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
};

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/**
 * Whether a form post comes from this site's own pages, so that another site cannot make its visitors buy
 * here. Origin, else Referer, must name this server as the client reached it (request.protocol and
 * request.host honour X-Forwarded-Proto/-Host only from trusted proxies). A post with neither header (an
 * old browser, curl) is let through; `Origin: null` (a sandboxed or no-referrer page) is not.
 */
function fromThisOrigin(request: FastifyRequest): boolean {
  const origin = request.headers.origin;
  const referer = request.headers.referer;
  const claimed = typeof origin === 'string' ? origin : typeof referer === 'string' ? referer : undefined;
  if (claimed === undefined) return true;
  return (
    originOf(claimed) !== null && originOf(claimed) === originOf(`${request.protocol}://${request.host}`)
  );
}

/** scheme://host:port with default ports dropped and case folded, or null for anything not http(s). */
function originOf(url: string): string | null {
  try {
    const parsed = new URL(url);
    return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed.origin : null;
  } catch {
    return null;
  }
}

const HTML = 'text/html';
const page200 = (description: string) => textResponse(description, HTML);
const notFoundHtml = textResponse('a page saying there is no such thing', HTML);
const idParam = (name: string) => ({
  type: 'object',
  required: [name],
  // The page itself answers 404 to an id that is not one of ours, rather than a JSON 400.
  properties: { [name]: { type: 'string' } },
});

/** URL ids are opaque and URL-safe (api.md); anything else is not one of ours. */
const ID = /^[A-Za-z0-9_~.-]{1,64}$/;

interface Asset {
  body: Buffer;
  type: string;
  hash: string;
}

/** Reads the page assets (copied next to this file by the build) once, at start. */
function loadAssets(): Map<string, Asset> {
  const dir = new URL('./public/', import.meta.url);
  const assets = new Map<string, Asset>();
  for (const name of readdirSync(dir)) {
    const type = TYPES[extname(name)];
    if (!type) continue;
    const body = readFileSync(new URL(name, dir));
    assets.set(name, {
      body,
      type,
      hash: createHash('sha256').update(body).digest('base64url').slice(0, 12),
    });
  }
  return assets;
}

/** The buyer pages (`/`, `/events/:id`, `/purchases/:id`), the admin page (`/admin`) and their assets. */
export function registerPages(app: FastifyInstance, read: PageReaders): void {
  const assets = loadAssets();
  const assetUrl: AssetUrls = (name) => `/assets/${name}?v=${assets.get(name)?.hash ?? ''}`;

  app.register(async (pages) => {
    pages.addHook('onSend', async (_request, reply) => {
      reply.headers(SECURITY_HEADERS);
    });
    // The plain form of the event page posts here when its script has not loaded (yet).
    pages.addContentTypeParser(
      'application/x-www-form-urlencoded',
      { parseAs: 'string' },
      (_request, body, done) => done(null, new URLSearchParams(body as string)),
    );

    const page = (
      reply: FastifyReply,
      title: string,
      body: SafeHtml,
      opts: { cache?: string; head?: SafeHtml } = {},
    ) =>
      reply
        .type('text/html; charset=utf-8')
        .header('cache-control', opts.cache ?? 'no-cache')
        .send(layout(assetUrl, { title, script: 'buyer.js', body, head: opts.head }));
    const notFound = (reply: FastifyReply, what: string) =>
      page(reply.code(404), 'Not found', notFoundPage(what));

    pages.get(
      '/',
      { schema: { tags: ['pages'], summary: 'The events on sale', response: { 200: page200('the page') } } },
      async (_request, reply) => page(reply, 'On sale — onsale', eventsPage(await read.listEvents())),
    );

    const eventPageSchema = {
      tags: ['pages'],
      summary: "An event's page, with the form to buy",
      params: idParam('eventId'),
      response: { 200: page200('the page'), 404: notFoundHtml },
    };
    pages.get<{ Params: { eventId: string } }>(
      '/events/:eventId',
      { schema: eventPageSchema },
      async (request, reply) => {
        const event = ID.test(request.params.eventId) ? await read.event(request.params.eventId) : null;
        if (!event) return notFound(reply, 'There is no such event.');
        return page(reply, event.name, eventPage(event, newForm()));
      },
    );

    const buySchema = {
      tags: ['pages'],
      summary: "The event page's form without JavaScript: buys through POST /api/events/{eventId}/purchases",
      description:
        "A form (`buyerId`, `idempotencyKey`, `qty-<ticketTypeId>`) posted from this site's own page. " +
        "On success it redirects to the purchase's page; otherwise it shows the event's page again with " +
        "the API's status and the reason.",
      params: idParam('eventId'),
      consumes: ['application/x-www-form-urlencoded'],
      response: {
        303: { description: "accepted: see the purchase's page (Location)", type: 'null' },
        '4xx': page200("the event's page with what went wrong, and the API's status"),
        '5xx': page200("the event's page with what went wrong, and the API's status"),
        ...errorResponses('forbidden'),
      },
    };
    pages.post<{ Params: { eventId: string }; Body: URLSearchParams }>(
      '/events/:eventId/buy',
      { schema: buySchema },
      async (request, reply) => {
        if (!fromThisOrigin(request)) {
          return sendError(reply, 'forbidden', "the buy form only accepts posts from this site's own pages");
        }
        const event = ID.test(request.params.eventId) ? await read.event(request.params.eventId) : null;
        if (!event) return notFound(reply, 'There is no such event.');
        const fields = request.body instanceof URLSearchParams ? request.body : new URLSearchParams();
        const admission = fields.get('admission') ?? '';
        const form: FormState = {
          buyerId: fields.get('buyerId') ?? '',
          ...(admission ? { admission } : {}),
          idempotencyKey: fields.get('idempotencyKey') || newKey(),
          quantities: new Map(
            event.ticketTypes.map((t) => [t.id, Number.parseInt(fields.get(`qty-${t.id}`) ?? '0', 10) || 0]),
          ),
        };
        const items = [...form.quantities]
          .filter(([, n]) => n > 0)
          .map(([ticketTypeId, quantity]) => ({ ticketTypeId, quantity }));
        const missing = !form.buyerId.trim()
          ? 'Please enter your email address: your tickets are kept under it.'
          : items.length === 0
            ? 'Choose at least one ticket.'
            : null;
        if (missing) {
          form.notice = { kind: 'error', text: missing };
          return page(reply.code(400), event.name, eventPage(event, form));
        }
        // The API route itself decides, with all its checks and limits, counted against this client.
        const answer = await app.inject({
          method: 'POST',
          url: `/api/events/${event.id}/purchases`,
          headers: {
            'content-type': 'application/json',
            'idempotency-key': form.idempotencyKey,
            ...(admission ? { 'onsale-admission': admission } : {}),
          },
          payload: JSON.stringify({ buyerId: form.buyerId, items }),
          remoteAddress: request.ip,
        });
        const body = answer.json() as { purchaseId?: string; error?: { message: string } };
        if (body.purchaseId) return reply.redirect(`/purchases/${body.purchaseId}`, 303);
        if (answer.statusCode === 429 || answer.statusCode === 503) {
          const seconds = String(answer.headers['retry-after'] ?? '1');
          reply.header('retry-after', seconds);
          form.notice = {
            kind: 'busy',
            text: `So many people are buying right now that we could not take your request yet. Please press Buy again in ${seconds} s — your request will not be counted twice.`,
          };
        } else {
          form.notice = {
            kind: 'error',
            text: body.error?.message ?? 'Something went wrong; please try again.',
          };
          form.idempotencyKey = newKey();
        }
        return page(reply.code(answer.statusCode), event.name, eventPage(event, form));
      },
    );

    // The waiting room: the join form, then the buyer's place (?place=…), which reloads itself (without the
    // script) until the buyer is let in; then the purchase form, with the admission token.
    const queuePageSchema = {
      tags: ['pages'],
      summary:
        "An event's waiting room: the join form, then the buyer's place in line, then the purchase form",
      description:
        'Without `place`, the join form. With `place` (the place id), the place, reloading itself until the ' +
        'buyer is let in, then the purchase form carrying the admission token.',
      params: idParam('eventId'),
      querystring: {
        type: 'object',
        properties: {
          place: { type: 'string', description: 'the place id' },
          from: { type: 'string', description: 'the position the page first showed, for its progress' },
        },
      },
      response: { 200: page200('the page'), 404: notFoundHtml },
    };
    pages.get<{ Params: { eventId: string }; Querystring: { place?: string; from?: string } }>(
      '/events/:eventId/queue',
      { schema: queuePageSchema },
      async (request, reply) => {
        const event = ID.test(request.params.eventId) ? await read.event(request.params.eventId) : null;
        if (!event?.waitingRoom) return notFound(reply, 'There is no such waiting room.');
        const placeId = request.query.place;
        if (placeId === undefined) return page(reply, event.name, eventPage(event, newForm()));
        const place = ID.test(placeId) ? await read.place(placeId) : null;
        if (!place || place.eventId !== event.id) return notFound(reply, 'There is no such place in line.');
        if (place.state === 'admitted' && place.admission) {
          const form = { ...newForm(), buyerId: place.buyerId, admission: place.admission.token };
          return page(reply, event.name, eventPage(event, form), { cache: 'no-store' });
        }
        const fromParam = Number.parseInt(request.query.from ?? '', 10);
        const from = Number.isFinite(fromParam) && fromParam > 0 ? fromParam : place.position;
        const again = `/events/${event.id}/queue?place=${encodeURIComponent(place.placeId)}${from ? `&from=${from}` : ''}`;
        const waiting = place.state === 'prequeue' || place.state === 'waiting';
        return page(reply, `In line — ${event.name}`, queuePage(event, place, from), {
          cache: 'no-store',
          head: waiting
            ? html`<noscript
                ><meta http-equiv="refresh" content="${String(place.refreshAfterSeconds)};url=${again}"
              /></noscript>`
            : undefined,
        });
      },
    );

    const joinSchema = {
      tags: ['pages'],
      summary:
        "The waiting room's join form without JavaScript: joins through POST /api/events/{eventId}/queue",
      description:
        "A form (`buyerId`; `challenge` and `solution` when the room asks for a proof of work) posted from this site's own page. On success it redirects to the buyer's place; " +
        "otherwise it shows the event's page again with the API's status and the reason.",
      params: idParam('eventId'),
      consumes: ['application/x-www-form-urlencoded'],
      response: {
        303: { description: "joined: see the buyer's place in line (Location)", type: 'null' },
        '4xx': page200("the event's page with what went wrong, and the API's status"),
        '5xx': page200("the event's page with what went wrong, and the API's status"),
        ...errorResponses('forbidden'),
      },
    };
    pages.post<{ Params: { eventId: string }; Body: URLSearchParams }>(
      '/events/:eventId/queue',
      { schema: joinSchema },
      async (request, reply) => {
        if (!fromThisOrigin(request)) {
          return sendError(reply, 'forbidden', "the join form only accepts posts from this site's own pages");
        }
        const event = ID.test(request.params.eventId) ? await read.event(request.params.eventId) : null;
        if (!event?.waitingRoom) return notFound(reply, 'There is no such waiting room.');
        const fields = request.body instanceof URLSearchParams ? request.body : new URLSearchParams();
        const form: FormState = { ...newForm(), buyerId: fields.get('buyerId') ?? '' };
        // The page's script fills these with a solved proof-of-work challenge (empty without the script).
        const challenge = fields.get('challenge') ?? '';
        const solution = fields.get('solution') ?? '';
        const proofOfWork = challenge && solution ? { proofOfWork: { challenge, solution } } : {};
        const answer = await app.inject({
          method: 'POST',
          url: `/api/events/${event.id}/queue`,
          headers: { 'content-type': 'application/json' },
          payload: JSON.stringify({ buyerId: form.buyerId, ...proofOfWork }),
          remoteAddress: request.ip,
        });
        const body = answer.json() as { placeId?: string; error?: { message: string } };
        if (body.placeId) {
          return reply.redirect(`/events/${event.id}/queue?place=${encodeURIComponent(body.placeId)}`, 303);
        }
        form.notice = {
          kind: 'error',
          text: body.error?.message ?? 'Something went wrong; please try again.',
        };
        return page(reply.code(answer.statusCode), event.name, eventPage(event, form));
      },
    );

    const purchasePageSchema = {
      tags: ['pages'],
      summary: "A purchase's page: its status, live, and its tickets with their QR codes",
      params: idParam('purchaseId'),
      querystring: {
        type: 'object',
        properties: {
          notice: {
            type: 'string',
            description: `what the page's Pay or Cancel form came to: ${Object.keys(PAY_NOTICES).join(', ')}`,
          },
        },
      },
      response: { 200: page200('the page'), 404: notFoundHtml },
    };
    pages.get<{ Params: { purchaseId: string }; Querystring: { notice?: string } }>(
      '/purchases/:purchaseId',
      { schema: purchasePageSchema },
      async (request, reply) => {
        const purchase = ID.test(request.params.purchaseId)
          ? await read.purchase(request.params.purchaseId)
          : null;
        if (!purchase) return notFound(reply, 'There is no such purchase.');
        const event = await read.event(purchase.eventId);
        const names = new Map(event?.ticketTypes.map((t) => [t.id, t.name]));
        const form = { attemptKey: newKey(), notice: payNotice(purchase, request.query.notice) };
        // Without the script (or before it loads), an unfinished purchase's page reloads itself; a held one
        // reloads without the last form's notice (see refreshSeconds).
        const refresh = refreshSeconds(purchase);
        const reload =
          refresh === null
            ? ''
            : purchase.status === 'held'
              ? `${refresh};url=/purchases/${encodeURIComponent(purchase.purchaseId)}`
              : String(refresh);
        // The page holds ticket codes: no cache keeps it.
        return page(reply, 'Your purchase', purchasePage(purchase, names, form), {
          cache: 'no-store',
          head: reload
            ? html`<noscript><meta http-equiv="refresh" content="${reload}" /></noscript>`
            : undefined,
        });
      },
    );

    // Pay and Cancel of a held purchase's page without JavaScript: each goes through its API route (all its
    // checks and limits, counted against this client), then back to the purchase's page, which shows the
    // outcome; a payment that needs 3-D Secure goes to the provider's page instead.
    const formResponses = (what: string) => ({
      303: { description: `${what}: the purchase's page (Location), saying the outcome`, type: 'null' },
      404: notFoundHtml,
      ...errorResponses('forbidden'),
    });
    pages.post<{ Params: { purchaseId: string }; Body: unknown }>(
      '/purchases/:purchaseId/pay',
      {
        schema: {
          tags: ['pages'],
          summary:
            "The purchase page's Pay form without JavaScript: pays through POST /api/purchases/{purchaseId}/payment",
          description:
            "A form (`paymentToken`, `attemptKey`: the page's, so that the same form sent twice is one attempt) " +
            "posted from this site's own page. Then the purchase's page (`?notice=` for a payment that did not " +
            "go through), or the provider's 3-D Secure page.",
          params: idParam('purchaseId'),
          consumes: ['application/x-www-form-urlencoded'],
          response: formResponses('paid, declined or refused'),
        },
      },
      async (request, reply) => {
        if (!fromThisOrigin(request)) {
          return sendError(
            reply,
            'forbidden',
            "the payment form only accepts posts from this site's own pages",
          );
        }
        const { purchaseId } = request.params;
        if (!ID.test(purchaseId)) return notFound(reply, 'There is no such purchase.');
        // The page's key: the same form sent twice is one attempt. Without one, a new attempt.
        const attemptKey = formField(request.body, 'attemptKey') ?? '';
        if (attemptKey && !PRINTABLE_KEY.test(attemptKey)) {
          return backToPurchase(reply, purchaseId, 400, { error: { code: 'invalid_request' } });
        }
        const answer = await app.inject({
          method: 'POST',
          url: `/api/purchases/${purchaseId}/payment`,
          headers: {
            'content-type': 'application/json',
            ...(attemptKey ? { 'idempotency-key': attemptKey } : {}),
          },
          payload: JSON.stringify({ paymentToken: (formField(request.body, 'paymentToken') ?? '').trim() }),
          remoteAddress: request.ip,
        });
        const body = parseJson(answer.body) as { payment?: { nextActionUrl?: unknown } } | null;
        const next = body?.payment?.nextActionUrl;
        if (answer.statusCode === 202 && typeof next === 'string' && isRedirectTarget(next)) {
          return reply.redirect(next, 303);
        }
        return backToPurchase(reply, purchaseId, answer.statusCode, body);
      },
    );
    pages.post<{ Params: { purchaseId: string }; Body: unknown }>(
      '/purchases/:purchaseId/cancel',
      {
        schema: {
          tags: ['pages'],
          summary:
            "The purchase page's Cancel button without JavaScript: cancels through POST /api/purchases/{purchaseId}/cancel",
          description:
            "A form posted from this site's own page (its fields are ignored). Then the purchase's page " +
            '(`?notice=` when it could not be cancelled).',
          params: idParam('purchaseId'),
          consumes: ['application/x-www-form-urlencoded'],
          response: formResponses('cancelled or refused'),
        },
      },
      async (request, reply) => {
        if (!fromThisOrigin(request)) {
          return sendError(
            reply,
            'forbidden',
            "the cancel form only accepts posts from this site's own pages",
          );
        }
        const { purchaseId } = request.params;
        if (!ID.test(purchaseId)) return notFound(reply, 'There is no such purchase.');
        const answer = await app.inject({
          method: 'POST',
          url: `/api/purchases/${purchaseId}/cancel`,
          headers: { 'content-type': 'application/json' },
          payload: '{}',
          remoteAddress: request.ip,
        });
        return backToPurchase(reply, purchaseId, answer.statusCode, parseJson(answer.body));
      },
    );

    /** The purchase's page after a form's API answer, with a notice for one that did not go through. */
    function backToPurchase(
      reply: FastifyReply,
      purchaseId: string,
      status: number,
      body: unknown,
    ): FastifyReply {
      if (status === 404) return notFound(reply, 'There is no such purchase.');
      const code = (body as { error?: { code?: unknown } } | null)?.error?.code;
      const notice: PayNotice | null =
        status < 300
          ? null
          : status === 429 || status === 503
            ? 'busy'
            : code === 'payment_declined'
              ? 'declined'
              : code === 'invalid_request'
                ? 'invalid'
                : code === 'hold_expired' || code === 'not_payable' || code === 'not_cancellable'
                  ? code
                  : 'error';
      const page = `/purchases/${encodeURIComponent(purchaseId)}`;
      return reply.redirect(notice ? `${page}?notice=${notice}` : page, 303);
    }

    pages.get<{ Params: { purchaseId: string; ticketId: string } }>(
      '/purchases/:purchaseId/tickets/:ticketId/qr.svg',
      {
        schema: {
          tags: ['pages'],
          summary: "A ticket's QR code, which encodes its code",
          params: {
            type: 'object',
            required: ['purchaseId', 'ticketId'],
            properties: { purchaseId: { type: 'string' }, ticketId: { type: 'string' } },
          },
          response: { 200: textResponse('the QR code', 'image/svg+xml'), 404: notFoundHtml },
        },
      },
      async (request, reply) => {
        const { purchaseId, ticketId } = request.params;
        const purchase = ID.test(purchaseId) ? await read.purchase(purchaseId) : null;
        const ticket = purchase?.tickets.find((t) => t.id === ticketId);
        if (!ticket) return notFound(reply, 'There is no such ticket.');
        // A ticket's code never changes; the browser may keep its image, but only for this person.
        return reply
          .type('image/svg+xml')
          .header('cache-control', 'private, max-age=31536000, immutable')
          .send(qrSvg(ticket.code));
      },
    );

    // The test payment provider's 3-D Secure step: a page of onsale's own with "Approve" and "Fail".
    if (read.completeAction) {
      const complete = read.completeAction;
      pages.get<{ Params: { purchaseId: string } }>(
        '/payments/test/3ds/:purchaseId',
        {
          schema: {
            tags: ['pages'],
            summary:
              'The test payment provider\'s 3-D Secure step, with "Approve" and "Fail" (ONSALE_PAYMENTS=test)',
            params: idParam('purchaseId'),
            response: { 200: page200('the page'), 404: notFoundHtml },
          },
        },
        async (request, reply) => {
          const purchase = ID.test(request.params.purchaseId)
            ? await read.purchase(request.params.purchaseId)
            : null;
          if (!purchase) return notFound(reply, 'There is no such purchase.');
          return page(reply, '3-D Secure (test mode)', threeDSecurePage(purchase), { cache: 'no-store' });
        },
      );
      pages.post<{ Params: { purchaseId: string }; Body: unknown }>(
        '/payments/test/3ds/:purchaseId',
        {
          schema: {
            tags: ['pages'],
            summary:
              'The 3-D Secure form: its outcome reaches onsale as a signed webhook of the test provider',
            description:
              "A form (`outcome`: `approve` or `fail`) posted from this site's own page; then the purchase's page.",
            params: idParam('purchaseId'),
            consumes: ['application/x-www-form-urlencoded'],
            response: {
              303: { description: "done: see the purchase's page (Location)", type: 'null' },
              400: page200('a page asking for Approve or Fail'),
              403: page200('a page saying the form must be sent from this site'),
              404: notFoundHtml,
            },
          },
        },
        async (request, reply) => {
          const { purchaseId } = request.params;
          const purchase = ID.test(purchaseId) ? await read.purchase(purchaseId) : null;
          if (!purchase) return notFound(reply, 'There is no such purchase.');
          if (!fromThisOrigin(request)) {
            return page(reply.code(403), 'Refused', notFoundPage('This form must be sent from this site.'));
          }
          const outcome = formField(request.body, 'outcome');
          if (outcome !== 'approve' && outcome !== 'fail') {
            return page(reply.code(400), 'Not valid', notFoundPage('Choose Approve or Fail.'));
          }
          await complete(purchaseId, outcome);
          return reply.redirect(`/purchases/${encodeURIComponent(purchaseId)}`, 303);
        },
      );
    }

    const adminSchema = {
      tags: ['pages'],
      summary: "The organizer's page (its script asks for the admin token and calls the admin API)",
      response: { 200: page200('the page') },
    };
    pages.get('/admin', { schema: adminSchema }, async (_request, reply) =>
      reply
        .type('text/html; charset=utf-8')
        .header('cache-control', 'no-cache')
        .send(layout(assetUrl, { title: 'Admin — onsale', script: 'admin.js', body: adminPage() })),
    );

    pages.get<{ Params: { name: string }; Querystring: { v?: string } }>(
      '/assets/:name',
      {
        schema: {
          tags: ['pages'],
          summary: "The pages' scripts, style sheet and icon",
          params: idParam('name'),
          querystring: {
            type: 'object',
            properties: { v: { type: 'string', description: 'the version the pages link: kept for a year' } },
          },
          response: {
            200: {
              description: 'the file',
              content: Object.fromEntries(
                [...new Set(Object.values(TYPES))].map((t) => [
                  t.split(';')[0],
                  { schema: { type: 'string' } },
                ]),
              ),
            },
            304: { description: 'not modified (If-None-Match)', type: 'null' },
            404: notFoundHtml,
          },
        },
      },
      async (request, reply) => {
        const asset = assets.get(request.params.name);
        if (!asset) return notFound(reply, 'There is no such file.');
        // Pages link assets with their hash: that exact version may be kept for good, anything else revalidated.
        const current = request.query.v === asset.hash;
        const etag = `"${asset.hash}"`;
        if (request.headers['if-none-match'] === etag) return reply.code(304).header('etag', etag).send();
        return reply
          .type(asset.type)
          .header('cache-control', current ? 'public, max-age=31536000, immutable' : 'no-cache')
          .header('etag', etag)
          .send(asset.body);
      },
    );
  });
}

function newForm(): FormState {
  return { buyerId: '', quantities: new Map(), idempotencyKey: newKey() };
}

/** The Idempotency-Key of one buy attempt: the page's script and the plain form both resend it on retry. */
function newKey(): string {
  return randomBytes(16).toString('base64url');
}

/** What an Idempotency-Key may be (api.md): 1..128 printable ASCII characters. */
const PRINTABLE_KEY = /^[\x20-\x7e]{1,128}$/;

/**
 * The notice a purchase's page shows: the one its address names (only a known one), else, while it is
 * held, why its last payment did not go through.
 */
function payNotice(purchase: Purchase, asked: string | undefined): PayNotice | null {
  if (asked !== undefined && Object.hasOwn(PAY_NOTICES, asked)) return asked as PayNotice;
  if (purchase.status !== 'held') return null;
  if (purchase.payment?.status === 'declined') return 'declined';
  if (purchase.payment?.status === 'failed') return 'failed';
  return null;
}

/**
 * When an unfinished purchase's page reloads itself without the script: a held one (whose buyer is typing a
 * card) when its hold ends, unless a payment is under way; anything else in 3 s. Null: final, no reload.
 */
function refreshSeconds(purchase: Purchase, now = Date.now()): number | null {
  if (FINAL_STATUSES.has(purchase.status)) return null;
  const end = purchase.holdExpiresAt ? Date.parse(purchase.holdExpiresAt) : Number.NaN;
  if (purchase.status !== 'held' || purchase.payment?.status === 'processing' || Number.isNaN(end)) return 3;
  return Math.max(3, Math.ceil((end - now) / 1000) + 2);
}

/** Where a form may send the browser on: a path of this site, or an http(s) address (a provider's page). */
function isRedirectTarget(url: string): boolean {
  if (url.startsWith('/')) return !url.startsWith('//') && !url.startsWith('/\\');
  return originOf(url) !== null;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}

/** A field of a urlencoded or JSON form body, or null. */
function formField(body: unknown, name: string): string | null {
  if (body instanceof URLSearchParams) return body.get(name);
  if (body && typeof body === 'object' && typeof (body as Record<string, unknown>)[name] === 'string') {
    return (body as Record<string, string>)[name]!;
  }
  return null;
}
