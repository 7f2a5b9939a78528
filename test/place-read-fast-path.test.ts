/**
 * Place reads answered before Fastify (src/web/place-read-fast-path.ts): from memory, with the same answer,
 * headers and per-address rate limit as the route; everything else handed to Fastify. First the fast path
 * alone over a real HTTP server, its clock fixed, with a handler standing for Fastify that marks what it is
 * handed; then a real `onsale serve`, whose Fastify answers what the fast path hands over.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WaitingRoom } from '../src/ports/waiting-room.js';
import { RateLimiter } from '../src/web/admission.js';
import { AdmissionSigner } from '../src/web/admission-token.js';
import { addressAdmitter } from '../src/web/fast-path.js';
import { placeReadFastPath } from '../src/web/place-read-fast-path.js';
import { RoomReader } from '../src/web/room-reader.js';
import { ADMIN, expectApiError, JSON_TYPE, send } from './helpers/http.js';
import { openInProcessApp } from './helpers/in-process-app.js';
import { ADMIN_TOKEN, startOnsale, type Onsale } from './helpers/processes.js';

/** What the stand-in for Fastify answers: the fast path handed the request over. */
const HANDED_OVER = 599;
const BUDGET = 3;

describe('the place-read fast path, alone', () => {
  const T = Date.now();
  let closeAll: () => Promise<void>;
  let room: WaitingRoom;
  let placeId: string;

  /** A server with the fast path ahead of the stand-in for Fastify, its clock at `at()`. */
  async function serve(options: { trustProxy?: string[]; exempt?: string[]; at?: () => number } = {}) {
    const reader = new RoomReader(room, new AdmissionSigner(ADMIN_TOKEN), pino({ level: 'silent' }));
    const limiter = new RateLimiter({ count: BUDGET, windowMs: 60_000 });
    const at = options.at ?? (() => T);
    const fastPath = placeReadFastPath({
      reader,
      admitAddress: addressAdmitter({
        takeAddressToken: (address) => limiter.take(address, at()),
        exempt: new Set(options.exempt ?? []),
        trustProxy: options.trustProxy ?? [],
      }),
      logger: pino({ level: 'silent' }),
      now: at,
    });
    const server: Server = createServer((request, response) => {
      if (!fastPath(request, response)) response.writeHead(HANDED_OVER).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push(server);
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return { base, reader, limiter };
  }
  const servers: Server[] = [];

  beforeAll(async () => {
    const web = await openInProcessApp();
    ({ room, close: closeAll } = web);
    const created = await web.app.inject({
      method: 'POST',
      url: '/api/events',
      headers: ADMIN,
      payload: {
        name: 'Fast night',
        ticketTypes: [{ name: 'GA', priceCents: 1000, capacity: 10, maxPerBuyer: 1 }],
        waitingRoom: { maxActiveBuyers: 5 },
      },
    });
    expect(created.statusCode, created.body).toBe(201);
    const joined = await web.app.inject({
      method: 'POST',
      url: `/api/events/${created.json<{ id: string }>().id}/queue`,
      headers: JSON_TYPE,
      payload: { buyerId: 'fast-buyer' },
    });
    expect(joined.statusCode, joined.body).toBe(201);
    placeId = joined.json<{ placeId: string }>().placeId;
  });

  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
    await closeAll?.();
  });

  it('answers from memory what the route answers, within the address budget, and hands over the rest', async () => {
    const { base, reader, limiter } = await serve();
    // Not in this process's memory yet: the route reads the database.
    expect((await send(base, 'GET', `/api/queue/${placeId}`)).status).toBe(HANDED_OVER);
    const expected = await reader.read(placeId, T);
    // Bad, odd and unknown ids are the route's (its 400 and 404), and take no token.
    for (const path of [
      `/api/queue/${'a'.repeat(65)}`,
      `/api/queue/${placeId.slice(0, 4)}%41${placeId.slice(5)}`,
      `/api/queue/${placeId}/`,
      '/api/queue/no-such-place',
    ]) {
      expect((await send(base, 'GET', path)).status, path).toBe(HANDED_OVER);
    }
    expect((await send(base, 'HEAD', `/api/queue/${placeId}`)).status).toBe(HANDED_OVER);
    const ids = new Set<unknown>();
    for (let i = 0; i < BUDGET; i++) {
      const read = await send(base, 'GET', `/api/queue/${placeId}?seen=${i}`);
      expect(read.status).toBe(200);
      expect(read.body).toEqual(expected);
      expect(read.headers['cache-control']).toBe('no-store');
      expect(read.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(read.headers['x-request-id']).toMatch(/^[0-9a-f]{12}-[0-9a-z]+$/);
      ids.add(read.headers['x-request-id']);
    }
    expect(ids.size).toBe(BUDGET);
    // Over the budget: handed to the route, whose hook asks the same bucket, empty, and answers 429.
    expect((await send(base, 'GET', `/api/queue/${placeId}`)).status).toBe(HANDED_OVER);
    expect(() => limiter.take('127.0.0.1', T)).toThrow(/too many requests/);
  });

  it("hands a read over once the line's counters are due for a read again", async () => {
    let now = T;
    const { base, reader } = await serve({ at: () => now });
    await reader.read(placeId, T);
    expect((await send(base, 'GET', `/api/queue/${placeId}`)).status).toBe(200);
    now = T + 400;
    expect((await send(base, 'GET', `/api/queue/${placeId}`)).status).toBe(HANDED_OVER);
  });

  it('counts behind a trusted proxy the address it names, and never counts an exempt one', async () => {
    const { base, reader } = await serve({ trustProxy: ['127.0.0.1'], exempt: ['203.0.113.7'] });
    await reader.read(placeId, T);
    const read = (forwardedFor: string) =>
      send(base, 'GET', `/api/queue/${placeId}`, { headers: { 'x-forwarded-for': forwardedFor } });
    for (let i = 0; i < BUDGET; i++) expect((await read('203.0.113.9')).status).toBe(200);
    expect((await read('10.9.9.9, 203.0.113.9')).status).toBe(HANDED_OVER);
    expect((await read('203.0.113.10')).status).toBe(200);
    for (let i = 0; i < BUDGET + 2; i++) expect((await read('203.0.113.7')).status).toBe(200);
  });
});

describe('place reads of a real server', () => {
  let onsale: Onsale;
  let placeId: string;

  beforeAll(async () => {
    onsale = await startOnsale({ workers: 0, env: { ONSALE_ADDRESS_RATE: `${BUDGET}/m` } });
    // The set-up comes from other addresses: each has its own budget.
    const created = await send(onsale.baseUrl, 'POST', '/api/events', {
      headers: ADMIN,
      localAddress: '127.0.0.2',
      body: JSON.stringify({
        name: 'Fast night',
        ticketTypes: [{ name: 'GA', priceCents: 1000, capacity: 10, maxPerBuyer: 1 }],
        waitingRoom: { maxActiveBuyers: 5 },
      }),
    });
    expect(created.status, created.text).toBe(201);
    const joined = await send(onsale.baseUrl, 'POST', `/api/events/${created.body.id}/queue`, {
      headers: JSON_TYPE,
      localAddress: '127.0.0.3',
      body: JSON.stringify({ buyerId: 'fast-buyer' }),
    });
    expect(joined.status, joined.text).toBe(201);
    placeId = joined.body.placeId;
  });

  afterAll(async () => {
    await onsale?.stop();
  });

  it("answers a bad id with the contract's 400 and an unknown one with its 404", async () => {
    expectApiError(
      await send(onsale.baseUrl, 'GET', `/api/queue/${'a'.repeat(65)}`, { localAddress: '127.0.0.4' }),
      400,
      'invalid_request',
    );
    expectApiError(
      await send(onsale.baseUrl, 'GET', '/api/queue/no-such-place', { localAddress: '127.0.0.5' }),
      404,
      'not_found',
    );
  });

  it('rate-limits place reads per address, with 429 and Retry-After past the budget', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < BUDGET; i++) {
      const read = await send(onsale.baseUrl, 'GET', `/api/queue/${placeId}`, { localAddress: '127.0.0.6' });
      expect(read.headers['cache-control']).toBe('no-store');
      statuses.push(read.status);
    }
    expect(statuses).toEqual(Array<number>(BUDGET).fill(200));
    const refused = await send(onsale.baseUrl, 'GET', `/api/queue/${placeId}`, { localAddress: '127.0.0.6' });
    expectApiError(refused, 429, 'rate_limited');
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    // Another address still reads.
    const other = await send(onsale.baseUrl, 'GET', `/api/queue/${placeId}`, { localAddress: '127.0.0.7' });
    expect(other.status).toBe(200);
  });
});
