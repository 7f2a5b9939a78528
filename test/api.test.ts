/**
 * Black-box tests of api.md against real processes: `onsale serve` + `onsale worker` on a temp SQLite folder,
 * over real HTTP. Every endpoint but holds, every status of the error table but 400/413/415 (see
 * hostile-input.test.ts), idempotency, ordering and all-or-nothing as a client sees them.
 */
import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEvent, getJson, purchase, waitDrained, waitFinal, type CreatedEvent } from './helpers/api.js';
import {
  ADMIN,
  JSON_TYPE,
  PURCHASE_ID,
  eventually,
  expectApiError,
  openSse,
  retryAfter,
  send,
  sleep,
  splitResponses,
} from './helpers/http.js';
import { ADMIN_TOKEN, startOnsale, type Onsale } from './helpers/processes.js';

let main: Onsale;
let base: string;

beforeAll(async () => {
  main = await startOnsale();
  base = main.baseUrl;
});

afterAll(async () => {
  await main?.stop();
});

let buyers = 0;
/** A buyer id never used before in this file: the per-buyer rate limit never gets in the way. */
const newBuyer = (prefix = 'buyer') => `${prefix}-${++buyers}`;

const URL_SAFE_ID = /^[A-Za-z0-9_~.-]+$/;

async function postEvent(body: unknown, headers: Record<string, string> = ADMIN) {
  const res = await fetch(`${base}/api/events`, {
    method: 'POST',
    headers,
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as any };
}

async function stats(eventId: string, baseUrl = base) {
  const { status, body } = await getJson(`${baseUrl}/api/events/${eventId}/stats`, true);
  expect(status).toBe(200);
  return body;
}

async function eventList(baseUrl = base) {
  const { status, body } = await getJson(`${baseUrl}/api/events`);
  expect(status).toBe(200);
  return body;
}

/**
 * Asserts that `value` has at least these fields. api.md allows additive changes, so a success body may
 * grow; error bodies are checked exactly (expectApiError).
 */
function expectKeys(value: object, keys: string[]) {
  expect(Object.keys(value)).toEqual(expect.arrayContaining(keys));
}

function item(event: CreatedEvent, index: number, quantity: number) {
  return { ticketTypeId: event.ticketTypes[index]!.id, quantity };
}

/** Buys and waits for the final status: one purchase after another, each awaited. */
async function buyAndSettle(event: CreatedEvent, buyerId: string, items: unknown[]) {
  const res = await purchase(base, event.id, { buyerId, items });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  return waitFinal(base, res.body.purchaseId);
}

function expectStockAddsUp(s: any) {
  for (const t of s.ticketTypes) {
    expect(t.sold + t.held + t.available).toBe(t.capacity);
    expect(t.sold).toBeGreaterThanOrEqual(0);
    expect(t.held).toBeGreaterThanOrEqual(0);
    expect(t.available).toBeGreaterThanOrEqual(0);
  }
}

describe('POST /api/events', () => {
  it('creates an event with server-made ids and answers it as GET /api/events/:id does', async () => {
    const before = new Date().toISOString();
    const res = await postEvent({
      name: 'DJ Night',
      ticketTypes: [
        { name: 'General admission', priceCents: 5000, capacity: 500, maxPerBuyer: 4 },
        { name: 'VIP', priceCents: 0, capacity: 1 },
      ],
    });
    const after = new Date().toISOString();
    expect(res.status).toBe(201);
    const event = res.body;
    expectKeys(event, ['holdSeconds', 'id', 'name', 'salesOpenAt', 'ticketTypes']);
    expect(event.id).toMatch(URL_SAFE_ID);
    expect(event.name).toBe('DJ Night');
    // Defaults: holdSeconds 0, salesOpenAt now, maxPerBuyer 10.
    expect(event.holdSeconds).toBe(0);
    expect(event.salesOpenAt).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/);
    expect(Date.parse(event.salesOpenAt)).toBeGreaterThanOrEqual(Date.parse(before) - 1000);
    expect(Date.parse(event.salesOpenAt)).toBeLessThanOrEqual(Date.parse(after) + 1000);
    expect(event.ticketTypes).toHaveLength(2);
    const [ga, vip] = event.ticketTypes;
    for (const t of event.ticketTypes) {
      expectKeys(t, ['available', 'capacity', 'id', 'maxPerBuyer', 'name', 'priceCents']);
      expect(t.id).toMatch(URL_SAFE_ID);
    }
    expect(ga).toMatchObject({
      name: 'General admission',
      priceCents: 5000,
      capacity: 500,
      maxPerBuyer: 4,
      available: 500,
    });
    expect(vip).toMatchObject({ name: 'VIP', priceCents: 0, capacity: 1, maxPerBuyer: 10, available: 1 });
    expect(new Set([event.id, ga.id, vip.id]).size).toBe(3);

    const read = await getJson(`${base}/api/events/${event.id}`);
    expect(read.status).toBe(200);
    expect(read.body).toEqual(event);

    const list = await eventList();
    expect(list.events).toContainEqual(
      expect.objectContaining({ id: event.id, name: 'DJ Night', salesOpenAt: event.salesOpenAt }),
    );
  });

  it('keeps a given salesOpenAt as the same instant, in UTC', async () => {
    const res = await postEvent({
      name: 'Offset',
      salesOpenAt: '2020-06-01T12:30:00+02:00',
      holdSeconds: 0,
      ticketTypes: [{ name: 'GA', priceCents: 1, capacity: 1 }],
    });
    expect(res.status).toBe(201);
    expect(res.body.salesOpenAt).toMatch(/Z$/);
    expect(Date.parse(res.body.salesOpenAt)).toBe(Date.parse('2020-06-01T10:30:00Z'));
    expect(res.body.holdSeconds).toBe(0);
  });

  it('gives every event and ticket type its own id', async () => {
    const a = await createEvent(base, { name: 'A' });
    const b = await createEvent(base, { name: 'B' });
    expect(a.id).not.toBe(b.id);
    expect(a.ticketTypes[0]!.id).not.toBe(b.ticketTypes[0]!.id);
  });

  it('takes holdSeconds 0 or 30..86400, and refuses 1..29 and more with 400 naming the field', async () => {
    const held = await createEvent(base, { name: 'Held', holdSeconds: 30 });
    expect(held.holdSeconds).toBe(30);
    const before = await eventList();
    for (const holdSeconds of [1, 29, 86_401]) {
      const res = await postEvent({
        name: 'Held',
        holdSeconds,
        ticketTypes: [{ name: 'GA', priceCents: 1, capacity: 1 }],
      });
      expectApiError(res, 400, 'invalid_request');
      expect(res.body.error.message).toMatch(/hold/i);
    }
    expect(await eventList()).toEqual(before);
  });
});

describe('GET /api/events and GET /api/events/:id', () => {
  it('lists every event as { id, name, salesOpenAt }', async () => {
    const created = await createEvent(base, { name: 'Listed', salesOpenAt: '2031-01-02T03:04:05.000Z' });
    const list = await eventList();
    expectKeys(list, ['events']);
    expect(list.events.length).toBeGreaterThanOrEqual(1);
    for (const e of list.events) expectKeys(e, ['id', 'name', 'salesOpenAt']);
    expect(list.events).toContainEqual(
      expect.objectContaining({ id: created.id, name: 'Listed', salesOpenAt: '2031-01-02T03:04:05.000Z' }),
    );
  });

  it('answers 404 not_found for an unknown event', async () => {
    expectApiError(await getJson(`${base}/api/events/no-such-event`), 404, 'not_found');
    expectApiError(await getJson(`${base}/api/events/${randomUUID()}`), 404, 'not_found');
  });
});

describe('GET /api/events/:id/stats', () => {
  it('is admin only: 401 unauthorized without a valid bearer token', async () => {
    const event = await createEvent(base);
    const url = `${base}/api/events/${event.id}/stats`;
    const wrong: Array<Record<string, string>> = [
      {},
      { authorization: `Bearer ${'w'.repeat(ADMIN_TOKEN.length)}` },
      { authorization: 'Bearer x' },
      { authorization: `Bearer ${ADMIN_TOKEN}x` },
      { authorization: `Bearer ${ADMIN_TOKEN.slice(1)}` },
      { authorization: 'Bearer ' },
      { authorization: 'Bearer' },
      { authorization: ADMIN_TOKEN },
      { authorization: `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString('base64')}` },
      { authorization: `Basic ${ADMIN_TOKEN}` },
      { authorization: `Token ${ADMIN_TOKEN}` },
      { authorization: `Bearer ${ADMIN_TOKEN.toUpperCase()}` },
    ];
    for (const headers of wrong) {
      const res = await fetch(url, { headers });
      expectApiError({ status: res.status, body: await res.json() }, 401, 'unauthorized');
    }
    // Not even whether an event exists is told without the token.
    const unknown = await fetch(`${base}/api/events/no-such-event/stats`);
    expectApiError({ status: unknown.status, body: await unknown.json() }, 401, 'unauthorized');
    const tooLong = await fetch(`${base}/api/events/${'x'.repeat(80)}/stats`);
    expectApiError({ status: tooLong.status, body: await tooLong.json() }, 401, 'unauthorized');
  });

  it('answers exact stock and purchase counts; sold + held + available = capacity', async () => {
    const event = await createEvent(base, {
      ticketTypes: [
        { name: 'GA', priceCents: 100, capacity: 10, maxPerBuyer: 5 },
        { name: 'VIP', priceCents: 900, capacity: 2, maxPerBuyer: 2 },
      ],
    });
    const empty = await stats(event.id);
    expectKeys(empty, ['eventId', 'purchases', 'ticketTypes']);
    expect(empty.eventId).toBe(event.id);
    expect(empty.ticketTypes).toMatchObject([
      { id: event.ticketTypes[0]!.id, capacity: 10, sold: 0, held: 0, available: 10 },
      { id: event.ticketTypes[1]!.id, capacity: 2, sold: 0, held: 0, available: 2 },
    ]);
    expect(empty.purchases).toEqual({
      queued: 0,
      held: 0,
      confirmed: 0,
      rejected: 0,
      expired: 0,
      cancelled: 0,
      waitlisted: 0,
      refunded: 0,
    });

    await buyAndSettle(event, newBuyer(), [item(event, 0, 3), item(event, 1, 2)]);
    await buyAndSettle(event, newBuyer(), [item(event, 0, 4)]);
    await buyAndSettle(event, newBuyer(), [item(event, 1, 1)]); // sold out
    const s = await waitDrained(base, event.id);
    expectStockAddsUp(s);
    expect(s.ticketTypes.map((t: any) => [t.sold, t.available])).toEqual([
      [7, 3],
      [2, 0],
    ]);
    expect(s.purchases).toEqual({
      queued: 0,
      held: 0,
      confirmed: 2,
      rejected: 1,
      expired: 0,
      cancelled: 0,
      waitlisted: 0,
      refunded: 0,
    });
  });

  it('answers 404 not_found for an unknown event', async () => {
    expectApiError(await getJson(`${base}/api/events/no-such-event/stats`, true), 404, 'not_found');
  });
});

describe('POST /api/events/:id/purchases and GET /api/purchases/:id', () => {
  let big: CreatedEvent;
  beforeAll(async () => {
    big = await createEvent(base, {
      name: 'Big',
      ticketTypes: [
        { name: 'GA', priceCents: 1000, capacity: 100_000, maxPerBuyer: 10 },
        { name: 'VIP', priceCents: 9000, capacity: 100_000, maxPerBuyer: 4 },
      ],
    });
  });

  it('answers 202 { purchaseId, status: queued, statusUrl } and the purchase can be read at statusUrl', async () => {
    const buyerId = newBuyer();
    const res = await purchase(base, big.id, { buyerId, items: [item(big, 0, 2)] });
    expect(res.status).toBe(202);
    expectKeys(res.body, ['purchaseId', 'status', 'statusUrl']);
    expect(res.body.status).toBe('queued');
    expect(res.body.purchaseId).toMatch(PURCHASE_ID);
    expect(res.body.statusUrl).toBe(`/api/purchases/${res.body.purchaseId}`);

    const read = await getJson(`${base}${res.body.statusUrl}`);
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({ purchaseId: res.body.purchaseId, eventId: big.id, buyerId });
    expect(['queued', 'confirmed']).toContain(read.body.status);
  });

  it('makes purchase ids with 128 random bits that never repeat', async () => {
    const ids: string[] = [];
    for (let round = 0; round < 4; round++) {
      const answers = await Promise.all(
        Array.from({ length: 50 }, () =>
          purchase(base, big.id, { buyerId: newBuyer('many'), items: [item(big, 0, 1)] }),
        ),
      );
      for (const a of answers) {
        expect(a.status).toBe(202);
        ids.push(a.body.purchaseId);
      }
    }
    for (const id of ids) expect(id).toMatch(PURCHASE_ID);
    expect(new Set(ids).size).toBe(200);
    // Every one of them is recorded and gets its tickets, each with a code of its own.
    const finals = await Promise.all(ids.map((id) => waitFinal(base, id)));
    const codes = finals.flatMap((p) => p.tickets.map((t: any) => t.code));
    expect(finals.every((p) => p.status === 'confirmed')).toBe(true);
    expect(codes).toHaveLength(200);
    expect(new Set(codes).size).toBe(200);
  });

  it('moves a purchase to confirmed, with one ticket per unit and a unique code each', async () => {
    const buyerId = newBuyer();
    const items = [item(big, 0, 3), item(big, 1, 2)];
    const res = await purchase(base, big.id, { buyerId, items });
    expect(res.status).toBe(202);
    const p = await waitFinal(base, res.body.purchaseId);
    expectKeys(p, [
      'buyerId',
      'createdAt',
      'eventId',
      'holdExpiresAt',
      'items',
      'payment',
      'purchaseId',
      'reason',
      'refunded',
      'status',
      'tickets',
      'updatedAt',
    ]);
    expect(p).toMatchObject({
      purchaseId: res.body.purchaseId,
      eventId: big.id,
      buyerId,
      status: 'confirmed',
      reason: null,
      items,
      holdExpiresAt: null,
    });
    expect(Date.parse(p.createdAt)).not.toBeNaN();
    expect(Date.parse(p.updatedAt)).toBeGreaterThanOrEqual(Date.parse(p.createdAt));
    expect(p.tickets).toHaveLength(5);
    for (const t of p.tickets) {
      expectKeys(t, ['code', 'id', 'ticketTypeId']);
      expect(t.code).toBeTypeOf('string');
      expect(t.code.length).toBeGreaterThanOrEqual(16);
    }
    expect(p.tickets.filter((t: any) => t.ticketTypeId === big.ticketTypes[0]!.id)).toHaveLength(3);
    expect(p.tickets.filter((t: any) => t.ticketTypeId === big.ticketTypes[1]!.id)).toHaveLength(2);
    expect(new Set(p.tickets.map((t: any) => t.code)).size).toBe(5);
    expect(new Set(p.tickets.map((t: any) => t.id)).size).toBe(5);
    // A final purchase stays as it is.
    expect((await getJson(`${base}/api/purchases/${p.purchaseId}`)).body).toEqual(p);
  });

  it('serves purchases in order: later ones are rejected with sold_out or insufficient_inventory', async () => {
    const event = await createEvent(base, {
      ticketTypes: [{ name: 'GA', priceCents: 500, capacity: 3, maxPerBuyer: 3 }],
    });
    const first = await buyAndSettle(event, newBuyer(), [item(event, 0, 2)]);
    const second = await buyAndSettle(event, newBuyer(), [item(event, 0, 2)]);
    const third = await buyAndSettle(event, newBuyer(), [item(event, 0, 1)]);
    const fourth = await buyAndSettle(event, newBuyer(), [item(event, 0, 1)]);
    expect([first, second, third, fourth].map((p) => [p.status, p.reason])).toEqual([
      ['confirmed', null],
      ['rejected', 'insufficient_inventory'],
      ['confirmed', null],
      ['rejected', 'sold_out'],
    ]);
    expect(second.tickets).toEqual([]);
    expect(fourth.tickets).toEqual([]);
    const s = await waitDrained(base, event.id);
    expect(s.ticketTypes[0]).toMatchObject({ capacity: 3, sold: 3, held: 0, available: 0 });
    expect(s.purchases).toMatchObject({ queued: 0, confirmed: 2, rejected: 2 });
    // GET /api/events/:id may lag by a second, not more: it catches up.
    await eventually(async () => {
      const read = await getJson(`${base}/api/events/${event.id}`);
      expect(read.body.ticketTypes[0].available).toBe(0);
    });
  });

  it('rejects with limit_exceeded once a buyer would hold more than maxPerBuyer', async () => {
    const event = await createEvent(base, {
      ticketTypes: [{ name: 'GA', priceCents: 500, capacity: 100, maxPerBuyer: 2 }],
    });
    const buyer = newBuyer();
    const first = await buyAndSettle(event, buyer, [item(event, 0, 2)]);
    const again = await buyAndSettle(event, buyer, [item(event, 0, 1)]);
    const other = await buyAndSettle(event, newBuyer(), [item(event, 0, 2)]);
    expect(first.status).toBe('confirmed');
    expect(again).toMatchObject({ status: 'rejected', reason: 'limit_exceeded', tickets: [] });
    expect(other.status).toBe('confirmed');
    const s = await waitDrained(base, event.id);
    expect(s.ticketTypes[0]).toMatchObject({ sold: 4, available: 96 });
  });

  it('is all or nothing: when one item is short, no item is allocated', async () => {
    const event = await createEvent(base, {
      ticketTypes: [
        { name: 'GA', priceCents: 100, capacity: 10, maxPerBuyer: 10 },
        { name: 'VIP', priceCents: 900, capacity: 2, maxPerBuyer: 2 },
      ],
    });
    const a = await buyAndSettle(event, newBuyer(), [item(event, 1, 1)]);
    const b = await buyAndSettle(event, newBuyer(), [item(event, 0, 3), item(event, 1, 2)]);
    const c = await buyAndSettle(event, newBuyer(), [item(event, 1, 1)]);
    const d = await buyAndSettle(event, newBuyer(), [item(event, 0, 1), item(event, 1, 1)]);
    expect([a, b, c, d].map((p) => [p.status, p.reason])).toEqual([
      ['confirmed', null],
      ['rejected', 'insufficient_inventory'],
      ['confirmed', null],
      ['rejected', 'sold_out'],
    ]);
    expect(b.tickets).toEqual([]);
    expect(d.tickets).toEqual([]);
    const s = await waitDrained(base, event.id);
    expectStockAddsUp(s);
    // GA was never taken, although both rejected purchases asked for some.
    expect(s.ticketTypes[0]).toMatchObject({ capacity: 10, sold: 0, available: 10 });
    expect(s.ticketTypes[1]).toMatchObject({ capacity: 2, sold: 2, available: 0 });
    await eventually(async () => {
      const read = await getJson(`${base}/api/events/${event.id}`);
      expect(read.body.ticketTypes.map((t: any) => t.available)).toEqual([10, 0]);
    });
  });

  it('answers 404 not_found for an unknown event, ticket type or purchase, and queues nothing', async () => {
    const other = await createEvent(base, { name: 'Other' });
    const event = await createEvent(base, { name: 'Target' });
    const before = await stats(event.id);
    const unknownEvent = await purchase(base, 'no-such-event', {
      buyerId: newBuyer(),
      items: [item(event, 0, 1)],
    });
    expectApiError(unknownEvent, 404, 'not_found');
    const unknownType = await purchase(base, event.id, {
      buyerId: newBuyer(),
      items: [{ ticketTypeId: 'no-such-type', quantity: 1 }],
    });
    expectApiError(unknownType, 404, 'not_found');
    // A ticket type of another event is not one of this event's.
    const foreignType = await purchase(base, event.id, {
      buyerId: newBuyer(),
      items: [item(other, 0, 1)],
    });
    expectApiError(foreignType, 404, 'not_found');
    const mixed = await purchase(base, event.id, {
      buyerId: newBuyer(),
      items: [item(event, 0, 1), item(other, 0, 1)],
    });
    expectApiError(mixed, 404, 'not_found');

    expectApiError(await getJson(`${base}/api/purchases/${randomUUID()}`), 404, 'not_found');
    expectApiError(await getJson(`${base}/api/purchases/not-a-purchase`), 404, 'not_found');
    const sse = await fetch(`${base}/api/purchases/${randomUUID()}/events`);
    expect(sse.headers.get('content-type')).toMatch(/^application\/json/);
    expectApiError({ status: sse.status, body: await sse.json() }, 404, 'not_found');

    expect(await stats(event.id)).toEqual(before);
    expect((await stats(other.id)).purchases.queued).toBe(0);
  });

  it('answers 409 sales_not_open before salesOpenAt, and queues nothing', async () => {
    const opensAt = new Date(Date.now() + 3_600_000).toISOString();
    const event = await createEvent(base, { name: 'Later', salesOpenAt: opensAt });
    expect(event.salesOpenAt).toBe(opensAt);
    const variants: Array<Record<string, string>> = [{}, { 'idempotency-key': 'early-bird' }];
    for (const headers of variants) {
      const res = await purchase(
        base,
        event.id,
        { buyerId: newBuyer(), items: [item(event, 0, 1)] },
        headers,
      );
      expectApiError(res, 409, 'sales_not_open');
    }
    const s = await stats(event.id);
    expect(s.purchases).toEqual({
      queued: 0,
      held: 0,
      confirmed: 0,
      rejected: 0,
      expired: 0,
      cancelled: 0,
      waitlisted: 0,
      refunded: 0,
    });
    expect(s.ticketTypes[0]).toMatchObject({ sold: 0, available: 100 });

    // An event whose sale opened in the past sells.
    const past = await createEvent(base, { name: 'Earlier', salesOpenAt: '2020-01-01T00:00:00Z' });
    expect(past.salesOpenAt).toBe('2020-01-01T00:00:00.000Z');
    const ok = await buyAndSettle(past, newBuyer(), [item(past, 0, 1)]);
    expect(ok.status).toBe('confirmed');
  });
});

describe('Idempotency-Key', () => {
  let event: CreatedEvent;
  let otherEvent: CreatedEvent;
  beforeAll(async () => {
    event = await createEvent(base, { name: 'Idempotent' });
    otherEvent = await createEvent(base, { name: 'Idempotent too' });
  });

  it('answers the same purchaseId for the same key and body, and makes one purchase only', async () => {
    const buyerId = newBuyer();
    const body = { buyerId, items: [item(event, 0, 2)] };
    const key = { 'idempotency-key': `key-${randomUUID()}` };
    const first = await purchase(base, event.id, body, key);
    expect(first.status).toBe(202);
    const again = await purchase(base, event.id, body, key);
    expect([200, 202]).toContain(again.status);
    expect(again.body.purchaseId).toBe(first.body.purchaseId);
    expect(again.body.statusUrl).toBe(first.body.statusUrl);
    // The same JSON written differently is the same body.
    const reordered = `{ "items": [ { "quantity": 2, "ticketTypeId": "${event.ticketTypes[0]!.id}" } ],\n "buyerId": ${JSON.stringify(buyerId)} }`;
    const third = await purchase(base, event.id, reordered, key);
    expect([200, 202]).toContain(third.status);
    expect(third.body.purchaseId).toBe(first.body.purchaseId);

    const done = await waitFinal(base, first.body.purchaseId);
    expect(done.status).toBe('confirmed');
    // After the purchase is final, the key still answers the same purchase.
    const late = await purchase(base, event.id, body, key);
    expect([200, 202]).toContain(late.status);
    expect(late.body.purchaseId).toBe(first.body.purchaseId);

    const s = await waitDrained(base, event.id);
    expect(s.purchases.confirmed + s.purchases.rejected).toBe(1);
    expect(s.ticketTypes[0].sold).toBe(2);
  });

  it('answers 409 idempotency_conflict for the same key with a different body, and queues nothing', async () => {
    const buyerId = newBuyer();
    const key = { 'idempotency-key': `key-${randomUUID()}` };
    const first = await purchase(base, event.id, { buyerId, items: [item(event, 0, 1)] }, key);
    expect(first.status).toBe(202);
    await waitFinal(base, first.body.purchaseId);
    const before = await waitDrained(base, event.id);

    const conflict = await purchase(base, event.id, { buyerId, items: [item(event, 0, 2)] }, key);
    expectApiError(conflict, 409, 'idempotency_conflict');
    const original = await purchase(base, event.id, { buyerId, items: [item(event, 0, 1)] }, key);
    expect(original.body.purchaseId).toBe(first.body.purchaseId);
    expect(await stats(event.id)).toEqual(before);
  });

  it('is scoped to the event and the buyerId: another buyer or event gets a new purchase', async () => {
    const key = { 'idempotency-key': `shared-${randomUUID()}` };
    const a = await purchase(base, event.id, { buyerId: newBuyer(), items: [item(event, 0, 1)] }, key);
    const b = await purchase(base, event.id, { buyerId: newBuyer(), items: [item(event, 0, 1)] }, key);
    const buyerId = newBuyer();
    const c = await purchase(base, event.id, { buyerId, items: [item(event, 0, 1)] }, key);
    const d = await purchase(base, otherEvent.id, { buyerId, items: [item(otherEvent, 0, 1)] }, key);
    for (const r of [a, b, c, d]) expect(r.status).toBe(202);
    expect(new Set([a, b, c, d].map((r) => r.body.purchaseId)).size).toBe(4);
    for (const r of [a, b, c, d]) expect((await waitFinal(base, r.body.purchaseId)).status).toBe('confirmed');
  });

  it('makes one purchase of 20 identical requests sent at once with one key', async () => {
    const fresh = await createEvent(base, { name: 'Concurrent key' });
    const body = { buyerId: newBuyer(), items: [item(fresh, 0, 1)] };
    const key = { 'idempotency-key': `burst-${randomUUID()}` };
    const answers = await Promise.all(Array.from({ length: 20 }, () => purchase(base, fresh.id, body, key)));
    const ok = answers.filter((a) => a.status === 200 || a.status === 202);
    // The per-buyer rate limit may refuse some (429); nothing else is acceptable.
    for (const a of answers) expect([200, 202, 429]).toContain(a.status);
    for (const a of answers.filter((x) => x.status === 429)) expectApiError(a, 429, 'rate_limited');
    expect(ok.length).toBeGreaterThanOrEqual(2);
    expect(new Set(ok.map((a) => a.body.purchaseId)).size).toBe(1);
    const s = await waitDrained(base, fresh.id);
    expect(s.purchases.confirmed + s.purchases.rejected).toBe(1);
    expect(s.ticketTypes[0].sold).toBe(1);
  });
});

describe('GET /api/purchases/:id/events (server-sent events)', () => {
  it('sends the final status at once and ends the stream for a purchase already final', async () => {
    const event = await createEvent(base);
    const done = await buyAndSettle(event, newBuyer(), [item(event, 0, 1)]);
    const sse = await openSse(`${base}/api/purchases/${done.purchaseId}/events`);
    expect(sse.status).toBe(200);
    expect(sse.contentType).toMatch(/^text\/event-stream/);
    const first = await sse.next();
    expect(first?.event).toBe('status');
    expect(JSON.parse(first!.data)).toEqual(done);
    expect(await sse.next()).toBeNull();
  });
});

describe('operations endpoints', () => {
  it('GET /healthz answers 200 { status: ok }', async () => {
    const res = await getJson(`${base}/healthz`);
    expect(res).toEqual({ status: 200, body: { status: 'ok' } });
  });

  it('GET /readyz answers 200 while the database and queue answer', async () => {
    const res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(200);
  });

  it('GET /metrics asks for the admin token: per-event sales and the queue are not public', async () => {
    const tries: Array<Record<string, string>> = [
      {},
      { authorization: `Bearer ${ADMIN_TOKEN}x` },
      { authorization: ADMIN_TOKEN },
    ];
    for (const headers of tries) {
      const res = await fetch(`${base}/metrics`, { headers });
      expectApiError({ status: res.status, body: await res.json() }, 401, 'unauthorized');
    }
  });

  it('GET /metrics answers Prometheus text exposition', async () => {
    const res = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    const lines = text.split('\n').filter((l) => l.trim() !== '');
    const types = lines.filter((l) => l.startsWith('# TYPE '));
    expect(types.length).toBeGreaterThan(0);
    for (const line of types) {
      expect(line).toMatch(/^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped)$/);
    }
    const samples = lines.filter((l) => !l.startsWith('#'));
    expect(samples.length).toBeGreaterThan(0);
    for (const line of samples) {
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)( -?\d+)?$/.exec(line);
      expect(m, line).not.toBeNull();
      expect(['NaN', '+Inf', '-Inf'].includes(m![3]!) || !Number.isNaN(Number(m![3])), line).toBe(true);
    }
  });

  it('answers 404 not_found for unknown routes, in the error body', async () => {
    const event = await createEvent(base);
    const tries: Array<[string, string]> = [
      ['GET', '/api/nope'],
      ['GET', '/nope'],
      ['GET', `/api/events/${event.id}/nope`],
      ['DELETE', `/api/events/${event.id}`],
      ['PUT', '/api/events'],
      ['PATCH', `/api/events/${event.id}`],
      ['POST', '/healthz'],
      ['GET', '/api/v2/events'],
      ['GET', '/api/purchases'],
    ];
    for (const [method, path] of tries) {
      const res = await fetch(`${base}${path}`, { method });
      expectApiError({ status: res.status, body: await res.json() }, 404, 'not_found');
    }
  });
});

describe('admin authorization of POST /api/events', () => {
  it('answers 401 unauthorized without a valid token, before looking at the body, and creates nothing', async () => {
    const before = await eventList();
    const valid = { name: 'Sneaky', ticketTypes: [{ name: 'GA', priceCents: 1, capacity: 1 }] };
    const attempts: Array<[Record<string, string>, string]> = [
      [JSON_TYPE, JSON.stringify(valid)],
      [{ ...JSON_TYPE, authorization: 'Bearer wrong' }, JSON.stringify(valid)],
      [{ ...JSON_TYPE, authorization: `Bearer ${ADMIN_TOKEN}-and-more` }, JSON.stringify(valid)],
      [{ ...JSON_TYPE, authorization: `Basic ${Buffer.from(`a:${ADMIN_TOKEN}`).toString('base64')}` }, '{}'],
      [{ ...JSON_TYPE, authorization: 'Bearer ' }, JSON.stringify(valid)],
      // Invalid bodies do not make an unauthenticated request a 400, 413 or 415.
      [JSON_TYPE, '{"name": 5}'],
      [JSON_TYPE, '{not json'],
      [{ 'content-type': 'text/plain' }, 'hello'],
      [JSON_TYPE, JSON.stringify({ ...valid, pad: 'x'.repeat(20_000) })],
    ];
    for (const [headers, body] of attempts) {
      const res = await send(base, 'POST', '/api/events', { headers, body });
      expectApiError(res, 401, 'unauthorized');
    }
    expect(await eventList()).toEqual(before);
  });
});

describe('rate limits (429 rate_limited with Retry-After)', () => {
  let limited: Onsale;
  let lb: string;
  let address = 30;
  /** Each call is another client address on the loopback network, with a full address budget. */
  const fresh = () => `127.0.0.${address++}`;

  beforeAll(async () => {
    limited = await startOnsale({
      workers: 0,
      env: {
        ONSALE_BUYER_RATE: '2/10s',
        ONSALE_ADDRESS_RATE: '5/10s',
        ONSALE_RATE_LIMIT_EXEMPT: 'none',
      },
    });
    lb = limited.baseUrl;
  });

  afterAll(async () => {
    await limited?.stop();
  });

  async function create(name: string): Promise<CreatedEvent> {
    const res = await send(lb, 'POST', '/api/events', {
      headers: ADMIN,
      body: JSON.stringify({ name, ticketTypes: [{ name: 'GA', priceCents: 1, capacity: 100 }] }),
      localAddress: fresh(),
    });
    expect(res.status).toBe(201);
    return res.body;
  }

  const buy = (event: CreatedEvent, buyerId: string, localAddress = fresh()) =>
    send(lb, 'POST', `/api/events/${event.id}/purchases`, {
      headers: JSON_TYPE,
      body: JSON.stringify({ buyerId, items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }] }),
      localAddress,
    });

  const statsOf = async (event: CreatedEvent) => {
    const res = await send(lb, 'GET', `/api/events/${event.id}/stats`, {
      headers: ADMIN,
      localAddress: fresh(),
    });
    expect(res.status).toBe(200);
    return res.body;
  };

  it('limits each buyer of an event, whatever address they come from, and queues nothing when refusing', async () => {
    const e1 = await create('Limited 1');
    const e2 = await create('Limited 2');
    // The bucket starts full: two pass.
    expect((await buy(e1, 'alice')).status).toBe(202);
    expect((await buy(e1, 'alice')).status).toBe(202);
    let accepted = 2;
    let refused: Awaited<ReturnType<typeof buy>> | undefined;
    for (let i = 0; i < 5 && !refused; i++) {
      const res = await buy(e1, 'alice');
      if (res.status === 202) accepted += 1;
      else refused = res;
    }
    expect(refused).toBeDefined();
    expectApiError(refused!, 429, 'rate_limited');
    const wait = retryAfter(refused!.headers);
    expect(wait).toBeGreaterThanOrEqual(1);
    expect(wait).toBeLessThanOrEqual(10);

    // Another buyer of the same event, and the same buyer at another event, are not limited.
    expect((await buy(e1, 'bob')).status).toBe(202);
    expect((await buy(e2, 'alice')).status).toBe(202);
    expect((await statsOf(e1)).purchases.queued).toBe(accepted + 1);
    expect((await statsOf(e2)).purchases.queued).toBe(1);
  });

  it('limits each client address on /api/, not the operations endpoints, and ignores X-Forwarded-For', async () => {
    const event = await create('Address limited');
    const flooder = fresh();
    for (let i = 0; i < 5; i++) {
      expect((await send(lb, 'GET', '/api/events', { localAddress: flooder })).status).toBe(200);
    }
    let refused: Awaited<ReturnType<typeof send>> | undefined;
    for (let i = 0; i < 5 && !refused; i++) {
      const res = await send(lb, 'GET', `/api/events/${event.id}`, { localAddress: flooder });
      if (res.status === 429) refused = res;
      else expect(res.status).toBe(200);
    }
    expect(refused).toBeDefined();
    expectApiError(refused!, 429, 'rate_limited');
    expect(retryAfter(refused!.headers)).toBeGreaterThanOrEqual(1);

    const spoofed = await send(lb, 'GET', '/api/events', {
      headers: { 'x-forwarded-for': '203.0.113.7', forwarded: 'for=203.0.113.7' },
      localAddress: flooder,
    });
    expectApiError(spoofed, 429, 'rate_limited');
    const purchaseRefused = await buy(event, 'carol', flooder);
    expectApiError(purchaseRefused, 429, 'rate_limited');
    expect((await send(lb, 'GET', '/healthz', { localAddress: flooder })).status).toBe(200);
    expect((await send(lb, 'GET', '/readyz', { localAddress: flooder })).status).toBe(200);

    // Another address is served, and the refused purchase was never queued.
    expect((await send(lb, 'GET', '/api/events', { localAddress: fresh() })).status).toBe(200);
    expect((await statsOf(event)).purchases.queued).toBe(0);
    expect(limited.processes[0]!.output()).not.toMatch(/request failed/);
  });

  it('counts a percent-encoded path to /api/ like the plain one', async () => {
    const event = await create('Encoded paths');
    const client = fresh();
    // The router decodes /%61pi/ to /api/: the same endpoints, so the same budget.
    for (let i = 0; i < 5; i++) {
      const res = await send(lb, 'GET', `/%61pi/events/${event.id}`, { localAddress: client });
      expect(res.status).toBe(200);
      expect(res.body.id).toBe(event.id);
    }
    let refused: Awaited<ReturnType<typeof send>> | undefined;
    for (let i = 0; i < 5 && !refused; i++) {
      const res = await send(lb, 'GET', '/%61pi/events', { localAddress: client });
      if (res.status === 429) refused = res;
      else expect(res.status).toBe(200);
    }
    expect(refused).toBeDefined();
    expectApiError(refused!, 429, 'rate_limited');
    expectApiError(await buy(event, 'dave', client), 429, 'rate_limited');
    const encodedBuy = await send(lb, 'POST', `/%61pi/events/${event.id}/purchases`, {
      headers: JSON_TYPE,
      body: JSON.stringify({
        buyerId: 'erin',
        items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
      }),
      localAddress: client,
    });
    expectApiError(encodedBuy, 429, 'rate_limited');
    expect((await statsOf(event)).purchases.queued).toBe(0);
  });
});

describe('backpressure (503 overloaded), a status stream from queued to final, then draining (503 unavailable)', () => {
  let full: Onsale;
  let fb: string;
  let event: CreatedEvent;
  const accepted: string[] = [];

  beforeAll(async () => {
    // No worker: nothing leaves the queue until one is added.
    full = await startOnsale({ workers: 0, env: { ONSALE_MAX_QUEUE_DEPTH: '5' } });
    fb = full.baseUrl;
    event = await createEvent(fb, {
      name: 'Backpressure',
      ticketTypes: [{ name: 'GA', priceCents: 100, capacity: 1000, maxPerBuyer: 10 }],
    });
  });

  afterAll(async () => {
    await full?.stop();
  });

  const buy = (buyerId: string, headers: Record<string, string> = {}) =>
    purchase(
      fb,
      event.id,
      { buyerId, items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }] },
      headers,
    );

  it('shows a queued purchase as queued, and its stream starts with that status', async () => {
    const buyerId = newBuyer();
    const res = await buy(buyerId);
    expect(res.status).toBe(202);
    accepted.push(res.body.purchaseId);
    const read = await getJson(`${fb}/api/purchases/${res.body.purchaseId}`);
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({
      purchaseId: res.body.purchaseId,
      eventId: event.id,
      buyerId,
      status: 'queued',
      reason: null,
      items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
      tickets: [],
      holdExpiresAt: null,
    });
    expect(Date.parse(read.body.createdAt)).not.toBeNaN();
    expect(Date.parse(read.body.updatedAt)).not.toBeNaN();
    expect((await getJson(`${fb}/api/events/${event.id}/stats`, true)).body.purchases.queued).toBe(1);
  });

  it('refuses purchases with 503 overloaded and Retry-After once the queue is full, and queues nothing more', async () => {
    let refused: Awaited<ReturnType<typeof buy>> | undefined;
    for (let i = 0; i < 100 && !refused; i++) {
      const res = await buy(newBuyer('fill'));
      if (res.status === 202) accepted.push(res.body.purchaseId);
      else refused = res;
      await sleep(20);
    }
    expect(refused).toBeDefined();
    expectApiError(refused!, 503, 'overloaded');
    expect(retryAfter(refused!.headers)).toBeGreaterThanOrEqual(1);
    const depth = (await getJson(`${fb}/api/events/${event.id}/stats`, true)).body.purchases.queued;
    expect(depth).toBe(accepted.length);
    // Not refused before the queue reached its configured depth.
    expect(depth).toBeGreaterThanOrEqual(5);

    // Still refused after the depth is read again (every 250 ms), with or without an Idempotency-Key.
    await sleep(600);
    expectApiError(await buy(newBuyer('late')), 503, 'overloaded');
    const keyed = await buy('keyed-buyer', { 'idempotency-key': 'refused-once' });
    expectApiError(keyed, 503, 'overloaded');
    expect(retryAfter(keyed.headers)).toBeGreaterThanOrEqual(1);
    expect((await getJson(`${fb}/api/events/${event.id}/stats`, true)).body.purchases.queued).toBe(depth);
    // Backpressure is not unreadiness.
    expect((await fetch(`${fb}/readyz`)).status).toBe(200);
  });

  it('streams the final status once a worker allocates, ends the stream, and accepts again', async () => {
    const first = accepted[0]!;
    const sse = await openSse(`${fb}/api/purchases/${first}/events`);
    expect(sse.status).toBe(200);
    expect(sse.contentType).toMatch(/^text\/event-stream/);
    const now = await sse.next();
    expect(now?.event).toBe('status');
    expect(JSON.parse(now!.data)).toMatchObject({ purchaseId: first, status: 'queued', tickets: [] });

    full.addWorker();
    const seen: any[] = [];
    for (let e = await sse.next(); e !== null; e = await sse.next()) {
      expect(e.event).toBe('status');
      seen.push(JSON.parse(e.data));
    }
    // The stream ended by itself, after the final status.
    expect(seen.length).toBeGreaterThanOrEqual(1);
    const last = seen[seen.length - 1];
    expect(last).toMatchObject({ purchaseId: first, status: 'confirmed', reason: null });
    expect(last.tickets).toHaveLength(1);
    expect(last).toEqual(await getJson(`${fb}/api/purchases/${first}`).then((r) => r.body));

    // Nothing accepted was lost.
    for (const id of accepted) expect((await waitFinal(fb, id)).status).toBe('confirmed');
    await waitDrained(fb, event.id);
    // Once the queue drains, purchases are accepted again; the key refused earlier was never recorded, so
    // it makes a new purchase (202), not a replay of a lost one.
    const again = await eventually(
      async () => {
        const res = await buy('keyed-buyer', { 'idempotency-key': 'refused-once' });
        expect(res.status, JSON.stringify(res.body)).toBe(202);
        return res;
      },
      10_000,
      150,
    );
    expect(again.body.purchaseId).toMatch(PURCHASE_ID);
    expect(accepted).not.toContain(again.body.purchaseId);
    expect((await waitFinal(fb, again.body.purchaseId)).status).toBe('confirmed');
    const s = await waitDrained(fb, event.id);
    expect(s.purchases.confirmed).toBe(accepted.length + 1);
    expect(s.ticketTypes[0].sold).toBe(accepted.length + 1);
  });

  it('while draining, answers requests still arriving on an open connection with 503 unavailable and Retry-After', async () => {
    const web = full.processes[0]!;
    const { hostname, port } = new URL(fb);
    const body = JSON.stringify({
      buyerId: 'drained',
      items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
    });
    const head = (expect100: boolean) =>
      `POST /api/events/${event.id}/purchases HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${body.length}\r\n${expect100 ? 'Expect: 100-continue\r\n' : ''}\r\n`;
    const socket = connect({ host: hostname, port: Number(port) });
    const chunks: Buffer[] = [];
    let continued!: () => void;
    const continuing = new Promise<void>((resolve) => (continued = resolve));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.on('error', () => undefined);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      if (Buffer.concat(chunks).includes('100 Continue')) continued();
    });
    // "100 Continue" tells that the server has this request in hand: the connection is busy, not idle.
    socket.write(head(true));
    await continuing;
    web.child.kill('SIGTERM');
    // Once new connections are refused, the server is closing.
    await eventually(
      () =>
        new Promise<void>((resolve, reject) => {
          const probe = connect({ host: hostname, port: Number(port) });
          probe.on('connect', () => {
            probe.destroy();
            reject(new Error('still accepting connections'));
          });
          probe.on('error', () => resolve());
        }),
    );
    // The body of the first purchase, and a second one pipelined behind it, arrive while closing.
    socket.write(body + head(false) + body);
    await closed;
    const answers = splitResponses(Buffer.concat(chunks)).filter((r) => r.status >= 200);
    expect(answers).toHaveLength(2);
    for (const answer of answers) {
      expectApiError(answer, 503, 'unavailable');
      expect(retryAfter(answer.headers)).toBeGreaterThanOrEqual(1);
    }
    expect(await web.exited).toEqual({ code: 0, signal: null });
    // The web server logs every 500 as "request failed": there was none.
    expect(web.output()).not.toMatch(/request failed/);
  });
});

describe('after all of it', () => {
  it('the servers still run, and never answered a 500', async () => {
    expect((await getJson(`${base}/healthz`)).body).toEqual({ status: 'ok' });
    for (const p of main.processes) expect(p.child.exitCode).toBeNull();
    expect(main.processes[0]!.output()).not.toMatch(/request failed/);
  });
});
