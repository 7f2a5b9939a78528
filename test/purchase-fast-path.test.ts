/**
 * Purchases answered before Fastify (src/web/purchase-fast-path.ts). First the fast path alone over a real
 * HTTP server, with a handler standing for Fastify that marks what it is handed: what it takes, what it
 * leaves untouched. Then a real app: the same requests answered by Fastify's route (app.inject, which does
 * not pass through the server's fast path) and over HTTP by the fast path, which must answer alike.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openQueue, openStorage, openWaitingRoom } from '../src/adapters/index.js';
import { loadConfig } from '../src/config.js';
import type { EnqueueRequest, EnqueueResult, Queue } from '../src/ports/queue.js';
import { RateLimiter } from '../src/web/admission.js';
import { AdmissionSigner } from '../src/web/admission-token.js';
import { addressAdmitter } from '../src/web/fast-path.js';
import { GroupCommit } from '../src/web/group-commit.js';
import { acceptJsonBodies } from '../src/web/json-body.js';
import { Lookups } from '../src/web/lookups.js';
import { PurchaseAcceptance } from '../src/web/purchase-acceptance.js';
import { purchaseFastPath } from '../src/web/purchase-fast-path.js';
import { ADMIN, JSON_TYPE, send, type HttpAnswer } from './helpers/http.js';
import { openInProcessApp } from './helpers/in-process-app.js';
import { ADMIN_TOKEN, tempDir } from './helpers/processes.js';

/** What the stand-in for Fastify answers: the fast path handed the request over. */
const HANDED_OVER = 599;
const BUDGET = 3;
const BODY_LIMIT = 2048;

const EVENT = {
  name: 'Fast sale',
  ticketTypes: [{ name: 'GA', priceCents: 1000, capacity: 1000, maxPerBuyer: 4 }],
};

function purchase(buyerId: string, ticketTypeId: string, quantity = 1): string {
  return JSON.stringify({ buyerId, items: [{ ticketTypeId, quantity }] });
}

describe('the purchase fast path, alone', () => {
  const dir = tempDir();
  const config = loadConfig({}, { ONSALE_DATA_DIR: dir.path });
  const servers: Server[] = [];
  let closeAll: () => Promise<void>;
  let queue: Queue;
  let eventId: string;
  let ticketTypeId: string;
  let parseJson: ReturnType<typeof acceptJsonBodies>;
  let lookups: Lookups;
  let acceptance: PurchaseAcceptance;

  /** A server with the fast path ahead of the stand-in for Fastify, which records whether the body was read. */
  async function serve(options: { trustProxy?: string[]; exempt?: string[] } = {}) {
    const limiter = new RateLimiter({ count: BUDGET, windowMs: 60_000 });
    const fastPath = purchaseFastPath({
      acceptance,
      knownEvent: (id) => lookups.knownEvent(id),
      parseJson,
      bodyLimit: BODY_LIMIT,
      admitAddress: addressAdmitter({
        takeAddressToken: (address) => limiter.take(address),
        exempt: new Set(options.exempt ?? []),
        trustProxy: options.trustProxy ?? [],
      }),
      logger: pino({ level: 'silent' }),
    });
    const server: Server = createServer((request, response) => {
      if (fastPath(request, response)) return;
      // Handed over: the body must still be there, unread, for Fastify.
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () =>
        response.writeHead(HANDED_OVER).end(JSON.stringify({ body: Buffer.concat(chunks).toString() })),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push(server);
    return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, limiter, fastPath };
  }

  beforeAll(async () => {
    const storage = await openStorage(config.databaseUrl);
    queue = await openQueue(config.queueUrl, config);
    const room = await openWaitingRoom(config.databaseUrl);
    await Promise.all([storage.migrate(), queue.migrate(), room.migrate()]);
    const event = await storage.createEvent({
      ...EVENT,
      salesOpenAt: new Date().toISOString(),
      holdSeconds: 0,
    });
    eventId = event.id;
    ticketTypeId = event.ticketTypes[0]!.id;
    const json = Fastify();
    parseJson = acceptJsonBodies(json);
    lookups = new Lookups(storage, queue);
    await lookups.event(eventId);
    acceptance = new PurchaseAcceptance({
      config,
      queue,
      lookups,
      commits: new GroupCommit<EnqueueRequest, EnqueueResult>((batch) => queue.enqueue(batch)),
      admissions: { signer: new AdmissionSigner(ADMIN_TOKEN), room },
      logger: pino({ level: 'silent' }),
    });
    closeAll = async () => {
      await json.close();
      await Promise.all([storage.close(), queue.close(), room.close()]);
      dir.remove();
    };
  });

  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
    await closeAll?.();
  });

  it('accepts a purchase of a known event, with the headers of every answer, and queues it', async () => {
    const { base } = await serve();
    const before = (await queue.depth()).depth;
    const answer = await send(base, 'POST', `/api/events/${eventId}/purchases?from=ad`, {
      headers: { 'content-type': 'application/json; charset=utf-8' },
      body: purchase('alone-1', ticketTypeId),
    });
    expect(answer.status, answer.text).toBe(202);
    expect(answer.body).toEqual({
      purchaseId: expect.stringMatching(/^[A-Za-z0-9_-]+$/),
      status: 'queued',
      statusUrl: `/api/purchases/${answer.body.purchaseId}`,
    });
    expect(answer.headers['cache-control']).toBe('no-store');
    expect(answer.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(answer.headers['x-request-id']).toMatch(/^[0-9a-f]{12}-[0-9a-z]+$/);
    expect((await queue.depth()).depth).toBe(before + 1);
    expect((await queue.find(answer.body.purchaseId))?.buyerId).toBe('alone-1');
  });

  it('hands over, body unread and nothing queued, what it cannot take before reading the body', async () => {
    const { base, fastPath } = await serve();
    const body = purchase('alone-2', ticketTypeId);
    const path = `/api/events/${eventId}/purchases`;
    const before = (await queue.depth()).depth;
    const cases: Array<[string, string, string, Parameters<typeof send>[3]]> = [
      ['an event not in memory', 'POST', '/api/events/no-such-event/purchases', { headers: JSON_TYPE, body }],
      ['another method', 'PUT', path, { headers: JSON_TYPE, body }],
      [
        'a percent-escape',
        'POST',
        `/api/events/${eventId.slice(0, 2)}%41/purchases`,
        { headers: JSON_TYPE, body },
      ],
      ['a trailing slash', 'POST', `${path}/`, { headers: JSON_TYPE, body }],
      ['no Content-Length', 'POST', path, { headers: JSON_TYPE, body, chunked: true }],
      ['a body over the limit', 'POST', path, { headers: JSON_TYPE, body: 'x'.repeat(BODY_LIMIT + 1) }],
      ['another type', 'POST', path, { headers: { 'content-type': 'text/plain' }, body }],
      ['no type', 'POST', path, { body }],
      [
        'a header that fails its schema',
        'POST',
        path,
        { headers: { ...JSON_TYPE, 'idempotency-key': 'k'.repeat(129) }, body },
      ],
    ];
    for (const [what, method, url, options] of cases) {
      const answer = await send(base, method, url, options);
      expect(answer.status, what).toBe(HANDED_OVER);
      expect(answer.body.body, what).toBe(options?.body?.toString() ?? '');
    }
    expect((await queue.depth()).depth).toBe(before);
    // A server closing: Fastify answers (its route refuses purchases then).
    fastPath.close();
    expect((await send(base, 'POST', path, { headers: JSON_TYPE, body })).status).toBe(HANDED_OVER);
  });

  it('takes a token of the per-address budget; over it, Fastify answers (its hook refuses again)', async () => {
    const { base, limiter } = await serve({ trustProxy: ['127.0.0.1'], exempt: ['203.0.113.7'] });
    const buy = (n: number, forwardedFor: string) =>
      send(base, 'POST', `/api/events/${eventId}/purchases`, {
        headers: { ...JSON_TYPE, 'x-forwarded-for': forwardedFor },
        body: purchase(`budget-${forwardedFor}-${n}`, ticketTypeId),
      });
    for (let i = 0; i < BUDGET; i++) expect((await buy(i, '203.0.113.9')).status).toBe(202);
    expect((await buy(BUDGET, '203.0.113.9')).status).toBe(HANDED_OVER);
    expect(() => limiter.take('203.0.113.9')).toThrow(/too many requests/);
    for (let i = 0; i < BUDGET + 2; i++) expect((await buy(i, '203.0.113.7')).status).toBe(202);
  });
});

describe('the purchase fast path answers as the route does', () => {
  let app: FastifyInstance;
  let base: string;
  let closeAll: () => Promise<void>;
  const ids: Record<'open' | 'later' | 'room', { eventId: string; ticketTypeId: string }> = {} as never;

  beforeAll(async () => {
    const web = await openInProcessApp({ ONSALE_RATE_LIMIT_EXEMPT: '127.0.0.1', ONSALE_BUYER_RATE: '3/m' });
    ({ app, close: closeAll } = web);
    await app.listen({ port: 0, host: '127.0.0.1' });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const definitions = {
      open: EVENT,
      later: { ...EVENT, salesOpenAt: new Date(Date.now() + 3_600_000).toISOString() },
      room: { ...EVENT, waitingRoom: { maxActiveBuyers: 5 } },
    };
    for (const [name, definition] of Object.entries(definitions)) {
      const created = await app.inject({
        method: 'POST',
        url: '/api/events',
        headers: ADMIN,
        payload: definition,
      });
      expect(created.statusCode, created.body).toBe(201);
      const event = created.json<{ id: string; ticketTypes: Array<{ id: string }> }>();
      ids[name as keyof typeof ids] = { eventId: event.id, ticketTypeId: event.ticketTypes[0]!.id };
      // Read once, so that the process has it in memory and the fast path takes its purchases.
      expect((await app.inject({ method: 'GET', url: `/api/events/${event.id}` })).statusCode).toBe(200);
    }
  });

  afterAll(async () => {
    await closeAll?.();
  });

  /** The same purchase answered by the route and by the fast path; `tag` keeps their buyers and keys apart. */
  async function both(
    event: keyof typeof ids,
    body: (tag: string, ticketTypeId: string) => string | Buffer,
    headers: (tag: string) => Record<string, string> = () => ({}),
  ): Promise<[HttpAnswer, HttpAnswer]> {
    const { eventId, ticketTypeId } = ids[event];
    const url = `/api/events/${eventId}/purchases`;
    const routed = await app.inject({
      method: 'POST',
      url,
      headers: { ...JSON_TYPE, ...headers('route') },
      payload: body('route', ticketTypeId),
    });
    const fast = await send(base, 'POST', url, {
      headers: { ...JSON_TYPE, ...headers('fast') },
      body: body('fast', ticketTypeId),
    });
    const route: HttpAnswer = {
      status: routed.statusCode,
      headers: routed.headers as HttpAnswer['headers'],
      text: routed.body,
      body: JSON.parse(routed.body),
    };
    return [route, fast];
  }

  function expectAlike([route, fast]: [HttpAnswer, HttpAnswer]): void {
    const shape = (a: HttpAnswer) => ({
      status: a.status,
      body: a.body.purchaseId
        ? { ...a.body, purchaseId: 'ID', statusUrl: a.body.statusUrl.replace(a.body.purchaseId, 'ID') }
        : a.body,
      type: a.headers['content-type'],
      cache: a.headers['cache-control'],
      retryAfter: a.headers['retry-after'],
      requestId: typeof a.headers['x-request-id'],
    });
    expect(shape(fast)).toEqual(shape(route));
  }

  it('accepts alike', async () => {
    const answers = await both('open', (tag, t) => purchase(`buyer-ok-${tag}`, t));
    expect(answers[0].status).toBe(202);
    expectAlike(answers);
  });

  it('refuses bodies alike: malformed JSON, bytes not UTF-8, prototype poisoning, each schema failure', async () => {
    const bodies: Array<[string, (tag: string, t: string) => string | Buffer]> = [
      ['malformed JSON', (tag) => `{"buyerId":"${tag}",`],
      [
        'not UTF-8',
        (tag, t) =>
          Buffer.concat([Buffer.from(purchase(tag, t).slice(0, -2)), Buffer.from([0xff, 0x5d, 0x7d])]),
      ],
      [
        '__proto__',
        (tag, t) => `{"__proto__":{"x":1},"buyerId":"${tag}","items":[{"ticketTypeId":"${t}","quantity":1}]}`,
      ],
      ['a quantity over 100', (tag, t) => purchase(`q-${tag}`, t, 101)],
      ['a quantity not an integer', (tag, t) => purchase(`q-${tag}`, t, 1.5)],
      ['an unknown field', (tag, t) => JSON.stringify({ ...JSON.parse(purchase(tag, t)), coupon: 'x' })],
      ['no items', (tag) => JSON.stringify({ buyerId: tag, items: [] })],
      ['not an object', () => '[1,2]'],
      ['an empty buyer id', (_tag, t) => purchase('', t)],
    ];
    for (const [what, body] of bodies) {
      const answers = await both('open', body);
      expect(answers[0].status, what).toBe(400);
      expect(answers[0].body.error.code, what).toBe('invalid_request');
      expectAlike(answers);
    }
  });

  it("refuses alike what the sale's rules refuse", async () => {
    const unknownType = await both('open', (tag) => purchase(`u-${tag}`, 'no-such-type'));
    expect(unknownType[0].body.error.code).toBe('not_found');
    expectAlike(unknownType);
    const overMax = await both('open', (tag, t) => purchase(`m-${tag}`, t, 5));
    expect(overMax[0].status).toBe(400);
    expectAlike(overMax);
    const notOpen = await both('later', (tag, t) => purchase(`l-${tag}`, t));
    expect(notOpen[0].body.error.code).toBe('sales_not_open');
    expectAlike(notOpen);
    const noAdmission = await both('room', (tag, t) => purchase(`r-${tag}`, t));
    expect(noAdmission[0].body.error.code).toBe('admission_required');
    expectAlike(noAdmission);
  });

  it("answers an Idempotency-Key's repeat and its conflict alike", async () => {
    const key = (tag: string) => ({ 'idempotency-key': `key-${tag}` });
    expectAlike(await both('open', (tag, t) => purchase(`k-${tag}`, t), key));
    const repeat = await both('open', (tag, t) => purchase(`k-${tag}`, t), key);
    expect(repeat[0].status).toBe(200);
    expectAlike(repeat);
    const conflict = await both('open', (tag, t) => purchase(`k-${tag}`, t, 2), key);
    expect(conflict[0].body.error.code).toBe('idempotency_conflict');
    expectAlike(conflict);
  });

  it("refuses a buyer over the buyer's rate alike, with Retry-After", async () => {
    for (let i = 0; i < 3; i++) expectAlike(await both('open', (tag, t) => purchase(`rate-${tag}`, t)));
    const refused = await both('open', (tag, t) => purchase(`rate-${tag}`, t));
    expect(refused[0].status).toBe(429);
    expect(Number(refused[0].headers['retry-after'])).toBeGreaterThan(0);
    expectAlike(refused);
  });
});
