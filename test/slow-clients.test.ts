/**
 * Clients that hold a web server's resources: a body trickled byte by byte is cut off after
 * ONSALE_REQUEST_TIMEOUT and logged, connections beyond ONSALE_MAX_CONNECTIONS_PER_CLIENT are closed, and
 * status streams beyond ONSALE_MAX_STREAMS_PER_CLIENT get 429.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEvent, purchase, type CreatedEvent } from './helpers/api.js';
import { expectApiError, openSse, retryAfter } from './helpers/http.js';
import { startOnsale, until, type Onsale } from './helpers/processes.js';

const REQUEST_TIMEOUT_MS = 2000;
/** Node looks at the deadlines every quarter of the timeout; the rest is room for a busy machine. */
const CUT_OFF_WITHIN_MS = REQUEST_TIMEOUT_MS + REQUEST_TIMEOUT_MS / 4 + 3000;
const MAX_CONNECTIONS = 4;
const MAX_STREAMS = 2;

let onsale: Onsale;
let event: CreatedEvent;

beforeAll(async () => {
  // No worker: purchases stay queued, so their status streams stay open.
  onsale = await startOnsale({
    workers: 0,
    env: {
      ONSALE_REQUEST_TIMEOUT: String(REQUEST_TIMEOUT_MS),
      ONSALE_MAX_CONNECTIONS_PER_CLIENT: String(MAX_CONNECTIONS),
      ONSALE_MAX_STREAMS_PER_CLIENT: String(MAX_STREAMS),
      ONSALE_RATE_LIMIT_EXEMPT: 'none',
    },
  });
  event = await createEvent(onsale.baseUrl);
}, 30_000);

afterAll(async () => {
  await onsale?.stop();
});

function open(): Promise<Socket> {
  const { port } = new URL(onsale.baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Resolves once the server has closed `socket`, with what it sent before. */
function closed(socket: Socket): Promise<string> {
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString()));
  socket.on('error', () => {});
  return new Promise((resolve) => socket.once('close', () => resolve(text)));
}

describe('slow and greedy clients', () => {
  it('cuts off a body sent one byte a second after the request timeout, with a 408, and logs it', async () => {
    const socket = await open();
    const started = Date.now();
    const answer = closed(socket);
    socket.write(
      `POST /api/events/${event.id}/purchases?secret=hush HTTP/1.1\r\nHost: onsale\r\n` +
        'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n',
    );
    const trickle = setInterval(() => {
      if (!socket.destroyed) socket.write(' ');
    }, 1000);
    try {
      const text = await answer;
      const elapsed = Date.now() - started;
      expect(text).toMatch(/^HTTP\/1\.1 408 /);
      expect(text).toContain('request_timeout');
      expect(elapsed).toBeLessThan(CUT_OFF_WITHIN_MS);
    } finally {
      clearInterval(trickle);
    }
    // The child's log reaches this process through a pipe, a moment after the socket closed.
    const timedOutLine = () =>
      onsale.processes[0]!.output()
        .split('\n')
        .find((l) => l.includes('request timed out'));
    await until(() => timedOutLine() !== undefined, 5_000).catch(() => {});
    const line = timedOutLine();
    expect(line, onsale.processes[0]!.output()).toBeDefined();
    expect(line).toContain(`/api/events/${event.id}/purchases`);
    expect(line).not.toContain('secret');
  }, 20_000);

  it('cuts off headers that never end', async () => {
    const socket = await open();
    const started = Date.now();
    const answer = closed(socket);
    socket.write('GET /api/events HTTP/1.1\r\nHost: onsale\r\n');
    const trickle = setInterval(() => {
      if (!socket.destroyed) socket.write('X');
    }, 1000);
    try {
      expect(await answer).toMatch(/^HTTP\/1\.1 408 /);
      expect(Date.now() - started).toBeLessThan(CUT_OFF_WITHIN_MS);
    } finally {
      clearInterval(trickle);
    }
  }, 20_000);

  it(`closes connections from one address beyond ${MAX_CONNECTIONS}, and takes new ones once some close`, async () => {
    const sockets = await Promise.all(Array.from({ length: MAX_CONNECTIONS + 2 }, () => open()));
    const ends = sockets.map((s) => closed(s));
    let answered = 0;
    for (const s of sockets) {
      s.on('data', () => (answered += 1));
      s.write('GET /healthz HTTP/1.1\r\nHost: onsale\r\n\r\n');
    }
    // The extra ones are closed by the server without an answer; the others stay open (keep-alive).
    const refused = await Promise.race([
      Promise.all(ends.slice(-2)).then(() => true),
      new Promise((r) => setTimeout(() => r(false), 5000)),
    ]);
    expect(refused).toBe(true);
    expect(answered).toBeLessThanOrEqual(MAX_CONNECTIONS);
    for (const s of sockets) s.destroy();
    await Promise.all(ends);
    const res = await fetch(`${onsale.baseUrl}/healthz`);
    expect(res.status).toBe(200);
  }, 20_000);

  it(`answers 429 with Retry-After to a status stream beyond ${MAX_STREAMS} from one client`, async () => {
    const streams: Array<{ sse: Awaited<ReturnType<typeof openSse>>; statusUrl: string }> = [];
    for (let i = 0; i < MAX_STREAMS; i++) {
      const bought = await purchase(onsale.baseUrl, event.id, {
        buyerId: `watcher-${i}`,
        items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
      });
      expect(bought.status).toBe(202);
      const sse = await openSse(`${onsale.baseUrl}${bought.body.statusUrl}/events`);
      expect(sse.status).toBe(200);
      streams.push({ sse, statusUrl: bought.body.statusUrl as string });
    }
    const over = await fetch(`${onsale.baseUrl}${streams[0]!.statusUrl}/events`);
    expectApiError({ status: over.status, body: await over.json() }, 429, 'rate_limited');
    expect(retryAfter(over.headers)).toBeGreaterThanOrEqual(1);

    // A closed stream frees its place.
    await streams[0]!.sse.close();
    await expect
      .poll(async () => {
        const again = await fetch(`${onsale.baseUrl}${streams[0]!.statusUrl}/events`);
        await again.body?.cancel();
        return again.status;
      })
      .toBe(200);
    for (const { sse } of streams.slice(1)) await sse.close();
  }, 30_000);
});
