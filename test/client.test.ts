/**
 * onsale/client (src/client): every operation it knows is one of the OpenAPI document's, with the same
 * method, path and success statuses, and every public and admin operation of the document has a client
 * method; then the client buys, follows and reads against a real `onsale serve` and worker on SQLite.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  OnsaleApiError,
  OnsaleClient,
  OPERATIONS,
  requests,
  type OperationName,
} from '../src/client/index.js';
import { OPENAPI_PATH } from '../src/web/openapi.js';
import { withInProcessApp } from './helpers/in-process-app.js';
import { ADMIN_TOKEN, startOnsale, type Onsale } from './helpers/processes.js';

type Json = Record<string, any>;
let doc: Json;
let onsale: Onsale;

beforeAll(async () => {
  doc = await withInProcessApp(async (app) => (await app.inject({ url: OPENAPI_PATH })).json());
  onsale = await startOnsale({ workers: 1 });
}, 60_000);

afterAll(async () => onsale?.stop());

/** The path a builder makes for sample ids, as the document's template: /api/events/x → /api/events/{eventId}. */
function templateOf(path: string): RegExp {
  return new RegExp(`^${path.replace(/[.?]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/?]+')}(\\?.*)?$`);
}

describe('onsale/client against the OpenAPI document', () => {
  const names = Object.keys(OPERATIONS) as OperationName[];

  it.each(names)('%s: its method, path and success statuses are in the document', (name) => {
    const { method, path, ok } = OPERATIONS[name];
    const op = doc.paths[path]?.[method.toLowerCase()] as Json | undefined;
    expect(op, `${method} ${path} is not in the OpenAPI document`).toBeDefined();
    const documented = Object.keys(op!.responses as Json)
      .map(Number)
      .filter((s) => s >= 200 && s < 300);
    expect([...ok].sort()).toEqual(documented.sort());
  });

  it('builds each request on its operation path and method', () => {
    const built: Record<OperationName, ReturnType<(typeof requests)[OperationName]>> = {
      listEvents: requests.listEvents(),
      getEvent: requests.getEvent('ev 1'),
      createEvent: requests.createEvent({ name: 'x', ticketTypes: [] }, 'token'),
      eventStats: requests.eventStats('ev', 'token'),
      listPurchases: requests.listPurchases('ev', 'token', { q: 'a b', limit: 5 }),
      exportPurchases: requests.exportPurchases('ev', 'token'),
      purchase: requests.purchase('ev', { buyerId: 'b', items: [] }, { idempotencyKey: 'k' }),
      getPurchase: requests.getPurchase('p'),
      purchaseEvents: requests.purchaseEvents('p'),
      pay: requests.pay('p', 'tok_visa', { idempotencyKey: 'k' }),
      cancel: requests.cancel('p'),
      paymentHistory: requests.paymentHistory('p', 'token'),
      queueChallenge: requests.queueChallenge('ev', 'b'),
      joinQueue: requests.joinQueue('ev', 'b', { challenge: 'c', solution: 's' }),
      getPlace: requests.getPlace('pl'),
      getLine: requests.getLine('ev', 'token'),
      setRoomLimits: requests.setRoomLimits('ev', { maxActiveBuyers: 5 }, 'token'),
      health: requests.health(),
      ready: requests.ready(),
      openApi: requests.openApi(),
    };
    for (const name of names) {
      expect(built[name].method, name).toBe(OPERATIONS[name].method);
      expect(built[name].path, name).toMatch(templateOf(OPERATIONS[name].path));
    }
    expect(built.getEvent.path).toBe('/api/events/ev%201');
    expect(built.listPurchases.path).toBe('/api/events/ev/purchases?q=a+b&limit=5');
    expect(built.purchase.headers['idempotency-key']).toBe('k');
    expect(built.eventStats.headers.authorization).toBe('Bearer token');
    expect(JSON.parse(built.joinQueue.body!)).toEqual({
      buyerId: 'b',
      proofOfWork: { challenge: 'c', solution: 's' },
    });
  });

  it('has a method for every public and admin operation of the document', () => {
    const known = new Set(Object.values(OPERATIONS).map((o) => `${o.method} ${o.path}`));
    const missing = Object.entries(doc.paths as Json).flatMap(([path, item]) =>
      Object.entries(item as Json)
        .filter(([, op]) => (op as Json).tags?.some((t: string) => t === 'public' || t === 'admin'))
        .map(([method]) => `${method.toUpperCase()} ${path}`)
        .filter((key) => !known.has(key)),
    );
    expect(
      missing,
      'operations without a client method: add them to OPERATIONS, requests and OnsaleClient in src/client/index.ts',
    ).toEqual([]);
  });
});

describe('onsale/client against a running server', () => {
  it('creates an event, buys, follows the purchase to its end, and reads it back', async () => {
    const admin = new OnsaleClient({ baseUrl: `${onsale.baseUrl}/`, adminToken: ADMIN_TOKEN });
    const buyer = new OnsaleClient({ baseUrl: onsale.baseUrl });
    expect(await buyer.health()).toEqual({ status: 'ok' });
    expect(await buyer.ready()).toEqual({ status: 'ready' });
    const event = await admin.createEvent({
      name: 'Client night',
      ticketTypes: [{ name: 'GA', priceCents: 900, capacity: 2, maxPerBuyer: 2 }],
    });
    expect((await buyer.listEvents()).events.map((e) => e.id)).toContain(event.id);
    expect((await buyer.getEvent(event.id)).ticketTypes[0]!.available).toBe(2);
    const items = [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 2 }];

    const receipt = await buyer.purchase(event.id, { buyerId: 'ada', items }, { idempotencyKey: 'once' });
    expect(receipt).toMatchObject({ status: 'queued', replayed: false });
    const again = await buyer.purchase(event.id, { buyerId: 'ada', items }, { idempotencyKey: 'once' });
    expect(again).toMatchObject({ purchaseId: receipt.purchaseId, replayed: true });
    const final = await buyer.waitForFinal(receipt.purchaseId);
    expect(final.status).toBe('confirmed');
    expect(final.tickets).toHaveLength(2);
    expect(await buyer.getPurchase(receipt.purchaseId)).toEqual(final);

    const late = await buyer.purchase(event.id, { buyerId: 'bob', items });
    expect((await buyer.waitForFinal(late.purchaseId)).reason).toBe('sold_out');
    const stats = await admin.eventStats(event.id);
    expect(stats.ticketTypes[0]).toMatchObject({ sold: 2, available: 0 });
    expect(stats.purchases).toMatchObject({ confirmed: 1, rejected: 1 });
    expect((await admin.listPurchases(event.id, { q: 'ADA' })).purchases.map((p) => p.purchaseId)).toEqual([
      receipt.purchaseId,
    ]);
    const csv = await new Response(await admin.exportPurchases(event.id)).text();
    expect(csv.split('\r\n').filter((line) => line.includes(receipt.purchaseId))).toHaveLength(1);
    expect(csv).toContain(late.purchaseId);
    expect((await buyer.openApi()).openapi).toBe('3.1.0');
  });

  it('throws OnsaleApiError with the status and code of the error body', async () => {
    const buyer = new OnsaleClient({ baseUrl: onsale.baseUrl });
    const refusal = (promise: Promise<unknown>) =>
      promise.then(
        () => expect.unreachable('answered'),
        (error: unknown) => error as OnsaleApiError,
      );
    const missing = await refusal(buyer.getPurchase('no-such-purchase'));
    expect(missing).toBeInstanceOf(OnsaleApiError);
    expect(missing).toMatchObject({ status: 404, code: 'not_found' });
    const event = (await buyer.listEvents()).events[0]!;
    const invalid = await refusal(buyer.purchase(event.id, { buyerId: 'x', items: [] }));
    expect(invalid).toMatchObject({ status: 400, code: 'invalid_request' });
    // The waiting room's methods on an event without one, and an unknown place.
    const noRoom = await refusal(buyer.joinQueue(event.id, 'ann'));
    expect(noRoom).toMatchObject({ status: 404, code: 'not_found' });
    expect(await refusal(buyer.getPlace('no-such-place'))).toMatchObject({ status: 404, code: 'not_found' });
    const wrongToken = new OnsaleClient({ baseUrl: onsale.baseUrl, adminToken: 'not-the-token' });
    expect(await refusal(wrongToken.eventStats(event.id))).toMatchObject({
      status: 401,
      code: 'unauthorized',
    });
    await expect(buyer.eventStats(event.id)).rejects.toThrow(/adminToken/);
  });
});
