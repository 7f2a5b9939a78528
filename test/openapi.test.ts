/**
 * The OpenAPI document at GET /api/openapi.json: valid OpenAPI 3.1, describing every route the server
 * registers and every error code of src/web/errors.ts, and true: real answers of a running onsale (a real
 * `onsale serve` and worker on SQLite) match the schema the document gives for their status, with no field
 * it does not describe.
 */
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONNECTION_ERROR_CODES, ERROR_CODES, type ApiErrorCode } from '../src/web/errors.js';
import { OPENAPI_PATH, registeredRoutes, type RegisteredRoute } from '../src/web/openapi.js';
import { createEvent, waitFinal } from './helpers/api.js';
import { ADMIN, JSON_TYPE } from './helpers/http.js';
import { withInProcessApp } from './helpers/in-process-app.js';
import { ADMIN_TOKEN, startOnsale, type Onsale } from './helpers/processes.js';

// ajv-formats is CommonJS: its default export arrives as the module object under some loaders.
const addFormats = ((addFormatsModule as { default?: unknown }).default ??
  addFormatsModule) as unknown as typeof addFormatsModule.default;

type Json = Record<string, any>;
interface Operation {
  summary?: string;
  tags?: string[];
  responses: Record<string, Json>;
}

let onsale: Onsale;
let doc: Json;
let routes: readonly RegisteredRoute[];

/** `/api/events/:eventId` as the document writes it: `/api/events/{eventId}`. */
const openApiPath = (url: string) => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');

function operations(): Array<{ method: string; path: string; op: Operation }> {
  return Object.entries(doc.paths as Json).flatMap(([path, item]) =>
    Object.entries(item as Json).map(([method, op]) => ({ method, path, op: op as Operation })),
  );
}

beforeAll(async () => {
  onsale = await startOnsale({ workers: 1 });

  // The routes as Fastify registers them, and the document, from an app built in this process (from the
  // sources under test) over its own SQLite folder.
  await withInProcessApp(async (app) => {
    routes = registeredRoutes(app);
    const res = await app.inject({ url: OPENAPI_PATH });
    expect(res.statusCode).toBe(200);
    doc = res.json();
  });
}, 60_000);

afterAll(async () => onsale?.stop());

describe('the OpenAPI document', () => {
  it('is valid OpenAPI 3.1, and every schema in it compiles as JSON Schema 2020-12', async () => {
    const result = await new Validator().validate(structuredClone(doc));
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(doc.openapi).toBe('3.1.0');
    const ajv = strictAjv();
    for (const { method, path, op } of operations()) {
      for (const [status, response] of Object.entries(op.responses)) {
        for (const [type, media] of Object.entries((response.content ?? {}) as Json)) {
          expect(() => ajv.compile(media.schema), `${method} ${path} ${status} ${type}`).not.toThrow();
        }
      }
    }
  });

  it('is served by onsale serve, public and cacheable, with an ETag that answers 304', async () => {
    const res = await fetch(`${onsale.baseUrl}${OPENAPI_PATH}`);
    expect(res.status).toBe(200);
    expect(await res.clone().json()).toEqual(doc);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('cache-control')).toMatch(/^public, max-age=\d+/);
    const etag = res.headers.get('etag');
    expect(etag).toBeTruthy();
    const again = await fetch(`${onsale.baseUrl}${OPENAPI_PATH}`, { headers: { 'if-none-match': etag! } });
    expect(again.status).toBe(304);
  });

  it('describes every route the server registers, each with a summary, a tag and its own responses', () => {
    // Fastify adds a HEAD route for each GET by itself; the document's GET stands for both.
    const served = routes.filter((r) => r.method !== 'HEAD');
    expect(served.length).toBeGreaterThan(10);
    const missing = served.filter((r) => !doc.paths[openApiPath(r.url)]?.[r.method.toLowerCase()]);
    expect(
      missing.map((r) => `${r.method} ${r.url}`),
      'routes missing from the OpenAPI document: add them in a plugin registered after registerOpenApi ' +
        '(src/web/app.ts), with a schema (tags, summary, params/body/headers, response)',
    ).toEqual([]);
    const undescribed = served
      .map((r) => ({ r, op: doc.paths[openApiPath(r.url)][r.method.toLowerCase()] as Operation }))
      .filter(
        ({ op }) =>
          !op.summary ||
          !op.tags?.length ||
          Object.values(op.responses).some((response) => response.description === 'Default Response'),
      )
      .map(({ r }) => `${r.method} ${r.url}`);
    expect(
      undescribed,
      'routes without a schema: give each schema.tags, schema.summary and schema.response with every status ' +
        '(errorResponses() of src/web/errors.ts for the error codes)',
    ).toEqual([]);
    // And nothing documented that is not served.
    const servedKeys = new Set(served.map((r) => `${r.method.toLowerCase()} ${openApiPath(r.url)}`));
    expect(operations().filter(({ method, path }) => !servedKeys.has(`${method} ${path}`))).toEqual([]);
  });

  it('names every error code of src/web/errors.ts, each at the status that errors.ts gives it', () => {
    const codes = Object.keys(ERROR_CODES) as ApiErrorCode[];
    expect(new Set(doc.components.schemas.Error.properties.error.properties.code.enum)).toEqual(
      new Set(codes),
    );
    const found = new Map<string, Set<string>>();
    for (const { method, path, op } of operations()) {
      for (const [status, response] of Object.entries(op.responses)) {
        const listed = response.content?.['application/json']?.schema?.properties?.error?.properties?.code
          ?.enum as string[] | undefined;
        for (const code of listed ?? []) {
          expect(
            ERROR_CODES[code as ApiErrorCode]?.status,
            `${method} ${path} answers ${code} as ${status}`,
          ).toBe(Number(status));
          found.set(code, (found.get(code) ?? new Set()).add(`${method} ${path}`));
        }
      }
    }
    // Codes Node's parser answers before routing are in the document's description, for every operation.
    for (const code of CONNECTION_ERROR_CODES) expect(doc.info.description).toContain(code);
    const unlisted = codes.filter((c) => !CONNECTION_ERROR_CODES.includes(c) && !found.has(c));
    expect(
      unlisted,
      'error codes that no route lists: add them to the errorResponses() of the routes that answer them',
    ).toEqual([]);
  });
});

describe('real answers match the document', () => {
  /**
   * Sends a request and checks its answer against the document's operation `routePath`: a status it lists,
   * a content type it lists, and a JSON body that its schema describes completely.
   */
  async function check(method: string, path: string, init: RequestInit, routePath: string) {
    const res = await fetch(`${onsale.baseUrl}${path}`, { method, redirect: 'manual', ...init });
    const text = await res.text();
    const op = doc.paths[routePath]?.[method.toLowerCase()] as Operation | undefined;
    expect(op, `${method} ${routePath} is in the document`).toBeDefined();
    const response = op!.responses[String(res.status)] ?? op!.responses[`${String(res.status)[0]}XX`];
    expect(
      response,
      `${method} ${path} answered ${res.status}, a status its document does not list`,
    ).toBeDefined();
    if (!response!.content) {
      expect(text, `${method} ${path} ${res.status} has a body its document does not describe`).toBe('');
      return text;
    }
    const type = (res.headers.get('content-type') ?? '').split(';')[0]!;
    const media = response!.content?.[type];
    expect(media, `${method} ${path} ${res.status} answered ${type}, not in the document`).toBeDefined();
    if (type === 'application/json') {
      const body = JSON.parse(text) as unknown;
      const validate = strictAjv().compile(closed(media.schema) as object);
      expect(
        validate(body),
        `${method} ${path} ${res.status}: ${JSON.stringify(validate.errors)}\n${text}`,
      ).toBe(true);
      return body as Json;
    }
    return text;
  }

  it('for events, purchases, their errors and the admin reads', async () => {
    const base = onsale.baseUrl;
    const event = await createEvent(base, {
      ticketTypes: [{ name: 'GA', priceCents: 1500, capacity: 3, maxPerBuyer: 2 }],
    });
    const typeId = event.ticketTypes[0]!.id;
    const buy = (body: unknown, key?: string) => ({
      headers: { ...JSON_TYPE, ...(key === undefined ? {} : { 'idempotency-key': key }) },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    const purchases = '/api/events/{eventId}/purchases';
    const pPath = `/api/events/${event.id}/purchases`;

    await check('GET', '/api/events', {}, '/api/events');
    await check('GET', `/api/events/${event.id}`, {}, '/api/events/{eventId}');
    await check('GET', '/api/events/nope', {}, '/api/events/{eventId}');
    await check(
      'POST',
      '/api/events',
      { headers: ADMIN, body: JSON.stringify({ name: 'x', ticketTypes: [], extra: 1 }) },
      '/api/events',
    );
    await check(
      'POST',
      '/api/events',
      { headers: JSON_TYPE, body: JSON.stringify({ name: 'x' }) },
      '/api/events',
    );
    const first = await check(
      'POST',
      pPath,
      buy({ buyerId: 'a', items: [{ ticketTypeId: typeId, quantity: 2 }] }, 'k1'),
      purchases,
    );
    await check(
      'POST',
      pPath,
      buy({ buyerId: 'a', items: [{ ticketTypeId: typeId, quantity: 2 }] }, 'k1'),
      purchases,
    );
    await check(
      'POST',
      pPath,
      buy({ buyerId: 'a', items: [{ ticketTypeId: typeId, quantity: 1 }] }, 'k1'),
      purchases,
    );
    const rejected = await check(
      'POST',
      pPath,
      buy({ buyerId: 'b', items: [{ ticketTypeId: typeId, quantity: 2 }] }),
      purchases,
    );
    await check('POST', pPath, buy({ buyerId: 'a', items: [] }), purchases);
    await check('POST', pPath, buy('{"buyerId":'), purchases);
    await check('POST', pPath, { headers: { 'content-type': 'text/csv' }, body: 'a,b' }, purchases);
    await check(
      'POST',
      pPath,
      buy({ buyerId: 'a', items: [{ ticketTypeId: typeId, quantity: 1 }] }, ''),
      purchases,
    );
    await check(
      'POST',
      '/api/events/nope/purchases',
      buy({ buyerId: 'a', items: [{ ticketTypeId: typeId, quantity: 1 }] }),
      purchases,
    );
    const later = await createEvent(base, { salesOpenAt: new Date(Date.now() + 3_600_000).toISOString() });
    await check(
      'POST',
      `/api/events/${later.id}/purchases`,
      buy({ buyerId: 'a', items: [{ ticketTypeId: later.ticketTypes[0]!.id, quantity: 1 }] }),
      purchases,
    );

    const purchase = '/api/purchases/{purchaseId}';
    await check('GET', `/api/purchases/${(first as Json).purchaseId}`, {}, purchase);
    await waitFinal(base, (first as Json).purchaseId as string);
    await waitFinal(base, (rejected as Json).purchaseId as string);
    const confirmed = (await check(
      'GET',
      `/api/purchases/${(first as Json).purchaseId}`,
      {},
      purchase,
    )) as Json;
    expect(confirmed.status).toBe('confirmed');
    expect(confirmed.tickets).toHaveLength(2);
    const refused = (await check(
      'GET',
      `/api/purchases/${(rejected as Json).purchaseId}`,
      {},
      purchase,
    )) as Json;
    expect(refused.status).toBe('rejected');
    await check('GET', '/api/purchases/nope', {}, purchase);
    const stream = await check(
      'GET',
      `/api/purchases/${(first as Json).purchaseId}/events`,
      {},
      `${purchase}/events`,
    );
    expect(stream).toContain('event: status');

    const auth = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };
    await check('GET', `/api/events/${event.id}/stats`, auth, '/api/events/{eventId}/stats');
    await check('GET', `/api/events/${event.id}/stats`, {}, '/api/events/{eventId}/stats');
    await check('GET', `/api/events/nope/stats`, auth, '/api/events/{eventId}/stats');
    const list = (await check('GET', pPath, auth, purchases)) as Json;
    expect(list.purchases).toHaveLength(2);
    await check('GET', `${pPath}?limit=0`, auth, purchases);
  });

  it('for the operations endpoints and the pages', async () => {
    const event = await createEvent(onsale.baseUrl);
    const auth = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };
    await check('GET', '/healthz', {}, '/healthz');
    await check('GET', '/readyz', {}, '/readyz');
    await check('GET', '/metrics', auth, '/metrics');
    await check('GET', '/metrics', {}, '/metrics');
    await check('GET', '/', {}, '/');
    await check('GET', '/admin', {}, '/admin');
    await check('GET', `/events/${event.id}`, {}, '/events/{eventId}');
    await check('GET', '/events/nope', {}, '/events/{eventId}');
    await check('GET', '/purchases/nope', {}, '/purchases/{purchaseId}');
    await check('GET', '/assets/style.css', {}, '/assets/{name}');
    await check('GET', '/assets/admin.js', {}, '/assets/{name}');
    await check('GET', '/assets/icon.svg', {}, '/assets/{name}');
    await check(
      'POST',
      `/events/${event.id}/buy`,
      {
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://elsewhere.example' },
        body: 'buyerId=a',
      },
      '/events/{eventId}/buy',
    );
    await check(
      'POST',
      `/events/${event.id}/buy`,
      { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'buyerId=' },
      '/events/{eventId}/buy',
    );
    await check(
      'POST',
      `/events/${event.id}/buy`,
      {
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: `buyerId=a&qty-${event.ticketTypes[0]!.id}=1`,
      },
      '/events/{eventId}/buy',
    );
  });
});

function strictAjv() {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  return ajv;
}

/** The schema with every object closed: a field the document does not describe fails validation. */
function closed(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(closed);
  if (!schema || typeof schema !== 'object') return schema;
  const out: Json = Object.fromEntries(Object.entries(schema).map(([k, v]) => [k, closed(v)]));
  if (out.properties && out.additionalProperties === undefined) {
    out.additionalProperties = false;
    out.properties = Object.fromEntries(
      Object.entries(out.properties as Json).map(([k, v]) => [k, closed(v)]),
    );
  }
  return out;
}
