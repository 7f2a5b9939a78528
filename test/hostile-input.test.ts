/**
 * Hostile and malformed input against a real `onsale serve` + `onsale worker`: every 400, 413 and 415 of
 * api.md's error table, odd bytes and odd paths, strings that must come back verbatim. After each family of
 * bad requests nothing stored has changed, and no answer is ever a 500.
 */
import { connect as netConnect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEvent, getJson, waitDrained, waitFinal, type CreatedEvent } from './helpers/api.js';
import {
  ADMIN,
  JSON_TYPE,
  eventually,
  expectApiError,
  openSse,
  send,
  sendRaw,
  type HttpAnswer,
} from './helpers/http.js';
import { startOnsale, type Onsale } from './helpers/processes.js';

let onsale: Onsale;
let base: string;
/** The event bad purchases are aimed at: GA (maxPerBuyer 4) and VIP (maxPerBuyer 2). */
let victim: CreatedEvent;
let other: CreatedEvent;
let ga: string;
let vip: string;

beforeAll(async () => {
  onsale = await startOnsale();
  base = onsale.baseUrl;
  victim = await createEvent(base, {
    name: 'Victim',
    ticketTypes: [
      { name: 'GA', priceCents: 1000, capacity: 1000, maxPerBuyer: 4 },
      { name: 'VIP', priceCents: 9000, capacity: 10, maxPerBuyer: 2 },
    ],
  });
  other = await createEvent(base, { name: 'Other' });
  ga = victim.ticketTypes[0]!.id;
  vip = victim.ticketTypes[1]!.id;
  // Some real state to protect: one confirmed purchase.
  const first = await postPurchase(victim.id, {
    buyerId: 'first',
    items: [{ ticketTypeId: ga, quantity: 2 }],
  });
  expect(first.status).toBe(202);
  await waitFinal(base, first.body.purchaseId);
});

afterAll(async () => {
  await onsale?.stop();
});

function postPurchase(
  eventId: string,
  body: unknown,
  headers: Record<string, string> = JSON_TYPE,
): Promise<HttpAnswer> {
  return send(base, 'POST', `/api/events/${eventId}/purchases`, {
    headers,
    body: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
  });
}

function postEvent(body: unknown, headers: Record<string, string> = ADMIN): Promise<HttpAnswer> {
  return send(base, 'POST', '/api/events', {
    headers,
    body: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
  });
}

/** What bad input must never change: the event list, both events' stats and the victim as the public sees it. */
async function snapshot() {
  const victimStats = await waitDrained(base, victim.id);
  const otherStats = await waitDrained(base, other.id);
  const events = await getJson(`${base}/api/events`);
  // GET /api/events/:id may lag up to a second behind earlier purchases: read it once it has caught up.
  const victimEvent = await eventually(async () => {
    const read = await getJson(`${base}/api/events/${victim.id}`);
    expect(read.body.ticketTypes.map((t: any) => t.available)).toEqual(
      victimStats.ticketTypes.map((t: any) => t.available),
    );
    return read.body;
  });
  return { events: events.body, victimStats, otherStats, victimEvent };
}

/** Runs `bad` and asserts that stored state is exactly as before. */
async function changesNothing(bad: () => Promise<void>) {
  const before = await snapshot();
  await bad();
  expect(await snapshot()).toEqual(before);
}

const validEvent = () => ({
  name: 'Show',
  ticketTypes: [{ name: 'GA', priceCents: 100, capacity: 10, maxPerBuyer: 4 }],
});
const validPurchase = (buyerId = 'someone') => ({ buyerId, items: [{ ticketTypeId: ga, quantity: 1 }] });

/** A deep copy of `value` with `edit` applied: the way each bad case below is made from a valid body. */
function variant<T>(value: T, edit: (copy: any) => void): any {
  const copy = structuredClone(value);
  edit(copy);
  return copy;
}

const ticketTypes = (n: number) =>
  Array.from({ length: n }, (_, i) => ({ name: `T${i}`, priceCents: 100, capacity: 10 }));

/** Bodies of POST /api/events that fail validation, by what is wrong with them. */
const BAD_EVENTS: Array<[string, unknown]> = [
  // wrong types
  ['name is a number', variant(validEvent(), (b) => (b.name = 5))],
  ['name is null', variant(validEvent(), (b) => (b.name = null))],
  ['name is an array', variant(validEvent(), (b) => (b.name = ['Show']))],
  ['ticketTypes is an object', variant(validEvent(), (b) => (b.ticketTypes = { 0: b.ticketTypes[0] }))],
  ['ticketTypes is a string', variant(validEvent(), (b) => (b.ticketTypes = 'GA'))],
  ['a ticket type is a string', variant(validEvent(), (b) => (b.ticketTypes = ['GA']))],
  ['a ticket type is null', variant(validEvent(), (b) => (b.ticketTypes = [null]))],
  ['priceCents is a string', variant(validEvent(), (b) => (b.ticketTypes[0].priceCents = '100'))],
  ['priceCents is fractional', variant(validEvent(), (b) => (b.ticketTypes[0].priceCents = 1.5))],
  ['capacity is a string', variant(validEvent(), (b) => (b.ticketTypes[0].capacity = '10'))],
  ['capacity is fractional', variant(validEvent(), (b) => (b.ticketTypes[0].capacity = 10.5))],
  ['capacity is true', variant(validEvent(), (b) => (b.ticketTypes[0].capacity = true))],
  ['maxPerBuyer is a string', variant(validEvent(), (b) => (b.ticketTypes[0].maxPerBuyer = '4'))],
  ['maxPerBuyer is null', variant(validEvent(), (b) => (b.ticketTypes[0].maxPerBuyer = null))],
  ['salesOpenAt is a number', variant(validEvent(), (b) => (b.salesOpenAt = 1767225600000))],
  ['salesOpenAt is null', variant(validEvent(), (b) => (b.salesOpenAt = null))],
  ['salesOpenAt is empty', variant(validEvent(), (b) => (b.salesOpenAt = ''))],
  ['salesOpenAt is prose', variant(validEvent(), (b) => (b.salesOpenAt = 'tomorrow at ten'))],
  ['salesOpenAt has month 13', variant(validEvent(), (b) => (b.salesOpenAt = '2030-13-01T10:00:00Z'))],
  ['salesOpenAt is February 30', variant(validEvent(), (b) => (b.salesOpenAt = '2030-02-30T10:00:00Z'))],
  ['salesOpenAt has no time', variant(validEvent(), (b) => (b.salesOpenAt = '2030-01-01'))],
  ['salesOpenAt has no zone', variant(validEvent(), (b) => (b.salesOpenAt = '2030-01-01T10:00:00'))],
  ['holdSeconds is a string', variant(validEvent(), (b) => (b.holdSeconds = '0'))],
  ['holdSeconds is negative', variant(validEvent(), (b) => (b.holdSeconds = -1))],
  ['holdSeconds is fractional', variant(validEvent(), (b) => (b.holdSeconds = 0.5))],
  ['holdSeconds 1..29 (a hold is 0 or at least 30 s)', variant(validEvent(), (b) => (b.holdSeconds = 29))],
  ['holdSeconds over a day', variant(validEvent(), (b) => (b.holdSeconds = 86_401))],
  // missing fields
  ['no name', variant(validEvent(), (b) => delete b.name)],
  ['no ticketTypes', variant(validEvent(), (b) => delete b.ticketTypes)],
  ['a ticket type without name', variant(validEvent(), (b) => delete b.ticketTypes[0].name)],
  ['a ticket type without priceCents', variant(validEvent(), (b) => delete b.ticketTypes[0].priceCents)],
  ['a ticket type without capacity', variant(validEvent(), (b) => delete b.ticketTypes[0].capacity)],
  ['empty object', {}],
  // out of range
  ['name of 0 characters', variant(validEvent(), (b) => (b.name = ''))],
  ['name of 201 characters', variant(validEvent(), (b) => (b.name = 'n'.repeat(201)))],
  ['name of 201 emoji', variant(validEvent(), (b) => (b.name = '🎫'.repeat(201)))],
  ['ticket type name of 0 characters', variant(validEvent(), (b) => (b.ticketTypes[0].name = ''))],
  [
    'ticket type name of 201 characters',
    variant(validEvent(), (b) => (b.ticketTypes[0].name = 't'.repeat(201))),
  ],
  ['0 ticket types', variant(validEvent(), (b) => (b.ticketTypes = []))],
  ['51 ticket types', variant(validEvent(), (b) => (b.ticketTypes = ticketTypes(51)))],
  ['capacity 0', variant(validEvent(), (b) => (b.ticketTypes[0].capacity = 0))],
  ['capacity -1', variant(validEvent(), (b) => (b.ticketTypes[0].capacity = -1))],
  ['capacity 10,000,001', variant(validEvent(), (b) => (b.ticketTypes[0].capacity = 10_000_001))],
  ['priceCents -1', variant(validEvent(), (b) => (b.ticketTypes[0].priceCents = -1))],
  ['maxPerBuyer 0', variant(validEvent(), (b) => (b.ticketTypes[0].maxPerBuyer = 0))],
  ['maxPerBuyer 101', variant(validEvent(), (b) => (b.ticketTypes[0].maxPerBuyer = 101))],
  ['maxPerBuyer -1', variant(validEvent(), (b) => (b.ticketTypes[0].maxPerBuyer = -1))],
  // unknown fields, at every level: ids and stock are the server's
  ['an id of the event', variant(validEvent(), (b) => (b.id = 'mine'))],
  ['an unknown top-level field', variant(validEvent(), (b) => (b.venue = 'Arena'))],
  ['an id of a ticket type', variant(validEvent(), (b) => (b.ticketTypes[0].id = 'mine'))],
  ['sold on a ticket type', variant(validEvent(), (b) => (b.ticketTypes[0].sold = 5))],
  ['available on a ticket type', variant(validEvent(), (b) => (b.ticketTypes[0].available = 5))],
  ['an unknown ticket type field', variant(validEvent(), (b) => (b.ticketTypes[0].currency = 'EUR'))],
];

/** Raw texts of POST /api/events that are not a valid body whatever the fields. */
const BAD_EVENT_TEXTS: Array<[string, string]> = [
  ['capacity 1e400 (Infinity)', '{"name":"x","ticketTypes":[{"name":"a","priceCents":1,"capacity":1e400}]}'],
  ['priceCents -1e400', '{"name":"x","ticketTypes":[{"name":"a","priceCents":-1e400,"capacity":1}]}'],
  [
    '__proto__ key',
    '{"name":"x","ticketTypes":[{"name":"a","priceCents":1,"capacity":1}],"__proto__":{"a":1}}',
  ],
  [
    'constructor.prototype key',
    '{"name":"x","ticketTypes":[{"name":"a","priceCents":1,"capacity":1,"constructor":{"prototype":{"a":1}}}]}',
  ],
  [
    'a lone high surrogate in the name',
    '{"name":"a\\ud800b","ticketTypes":[{"name":"a","priceCents":1,"capacity":1}]}',
  ],
  [
    'a lone low surrogate in a ticket type name',
    '{"name":"x","ticketTypes":[{"name":"\\udfff","priceCents":1,"capacity":1}]}',
  ],
  ['5,000 nested arrays', '['.repeat(5000) + ']'.repeat(5000)],
  ['5,000 nested arrays as ticketTypes', `{"name":"x","ticketTypes":${'['.repeat(5000)}${']'.repeat(5000)}}`],
  ['2,500 nested objects', '{"a":'.repeat(2500) + '1' + '}'.repeat(2500)],
];

/** Bodies of POST /api/events/:id/purchases that fail validation (all against the victim). */
function badPurchases(): Array<[string, unknown]> {
  const v = validPurchase('bad-buyer');
  return [
    // wrong types
    ['buyerId is a number', variant(v, (b) => (b.buyerId = 5))],
    ['buyerId is null', variant(v, (b) => (b.buyerId = null))],
    ['buyerId is an object', variant(v, (b) => (b.buyerId = { id: 'x' }))],
    ['items is an object', variant(v, (b) => (b.items = b.items[0]))],
    ['items is a string', variant(v, (b) => (b.items = ga))],
    ['an item is a string', variant(v, (b) => (b.items = [ga]))],
    ['an item is null', variant(v, (b) => (b.items = [null]))],
    ['ticketTypeId is a number', variant(v, (b) => (b.items[0].ticketTypeId = 1))],
    ['ticketTypeId is null', variant(v, (b) => (b.items[0].ticketTypeId = null))],
    ['quantity is "2"', variant(v, (b) => (b.items[0].quantity = '2'))],
    ['quantity is 1.5', variant(v, (b) => (b.items[0].quantity = 1.5))],
    ['quantity is null', variant(v, (b) => (b.items[0].quantity = null))],
    ['quantity is true', variant(v, (b) => (b.items[0].quantity = true))],
    ['quantity is [1]', variant(v, (b) => (b.items[0].quantity = [1]))],
    // missing fields
    ['no buyerId', variant(v, (b) => delete b.buyerId)],
    ['no items', variant(v, (b) => delete b.items)],
    ['an item without ticketTypeId', variant(v, (b) => delete b.items[0].ticketTypeId)],
    ['an item without quantity', variant(v, (b) => delete b.items[0].quantity)],
    ['empty object', {}],
    // out of range
    ['buyerId of 0 characters', variant(v, (b) => (b.buyerId = ''))],
    ['buyerId of 129 characters', variant(v, (b) => (b.buyerId = 'b'.repeat(129)))],
    ['buyerId of 129 emoji', variant(v, (b) => (b.buyerId = '😀'.repeat(129)))],
    ['0 items', variant(v, (b) => (b.items = []))],
    [
      '51 items',
      variant(
        v,
        (b) => (b.items = Array.from({ length: 51 }, (_, i) => ({ ticketTypeId: `t${i}`, quantity: 1 }))),
      ),
    ],
    ['quantity 0', variant(v, (b) => (b.items[0].quantity = 0))],
    ['quantity -1', variant(v, (b) => (b.items[0].quantity = -1))],
    ['quantity above maxPerBuyer (5 > 4)', variant(v, (b) => (b.items[0].quantity = 5))],
    [
      'quantity above maxPerBuyer of the second type (3 > 2)',
      variant(v, (b) => (b.items = [{ ticketTypeId: vip, quantity: 3 }])),
    ],
    ['quantity 101', variant(v, (b) => (b.items[0].quantity = 101))],
    ['ticketTypeId empty', variant(v, (b) => (b.items[0].ticketTypeId = ''))],
    // duplicates and unknown fields
    ['the same ticketTypeId twice', variant(v, (b) => b.items.push({ ticketTypeId: ga, quantity: 1 }))],
    ['an unknown top-level field', variant(v, (b) => (b.priceCents = 0))],
    ['an eventId in the body', variant(v, (b) => (b.eventId = other.id))],
    ['a status in the body', variant(v, (b) => (b.status = 'confirmed'))],
    ['an unknown item field', variant(v, (b) => (b.items[0].priceCents = 0))],
    ['an id on an item', variant(v, (b) => (b.items[0].id = 'x'))],
  ];
}

/** Raw texts of purchase bodies: malformed JSON, JSON that is not an object, hostile structure. */
function badPurchaseTexts(): Array<[string, string | Buffer]> {
  const items = `[{"ticketTypeId":"${ga}","quantity":1}]`;
  const withBuyer = (rawBuyer: Buffer) =>
    Buffer.concat([Buffer.from('{"buyerId":"a'), rawBuyer, Buffer.from(`b","items":${items}}`)]);
  return [
    ['empty body', ''],
    ['only spaces', '   '],
    ['an unclosed object', '{'],
    ['a missing value', `{"buyerId":,"items":${items}}`],
    ['a trailing comma', `{"buyerId":"a","items":${items},}`],
    ['single quotes', `{'buyerId':'a','items':${items}}`],
    ['unquoted keys', `{buyerId:"a",items:${items}}`],
    ['a comment', `/* hi */ {"buyerId":"a","items":${items}}`],
    ['NaN', 'NaN'],
    ['two values', `{"buyerId":"a","items":${items}} {}`],
    ['a bad escape', `{"buyerId":"a\\x41","items":${items}}`],
    ['a raw control character in a string', `{"buyerId":"a\tb","items":${items}}`],
    ['an array', `[{"buyerId":"a","items":${items}}]`],
    ['an empty array', '[]'],
    ['a string', '"buyerId"'],
    ['null', 'null'],
    ['a number', '42'],
    ['true', 'true'],
    ['quantity 1e400 (Infinity)', `{"buyerId":"a","items":[{"ticketTypeId":"${ga}","quantity":1e400}]}`],
    ['__proto__ key', `{"buyerId":"a","items":${items},"__proto__":{"isAdmin":true}}`],
    [
      '__proto__ key in an item',
      `{"buyerId":"a","items":[{"ticketTypeId":"${ga}","quantity":1,"__proto__":{}}]}`,
    ],
    ['constructor.prototype key', `{"buyerId":"a","items":${items},"constructor":{"prototype":{"x":1}}}`],
    ['a lone high surrogate in buyerId', `{"buyerId":"\\ud800","items":${items}}`],
    ['a lone low surrogate in buyerId', `{"buyerId":"x\\udc00y","items":${items}}`],
    ['a reversed surrogate pair in buyerId', `{"buyerId":"\\ude00\\ud83d","items":${items}}`],
    ['5,000 nested arrays', '['.repeat(5000) + ']'.repeat(5000)],
    ['5,000 nested arrays as items', `{"buyerId":"a","items":${'['.repeat(5000)}${']'.repeat(5000)}}`],
    ['5,000 nested arrays as buyerId', `{"buyerId":${'['.repeat(5000)}${']'.repeat(5000)},"items":${items}}`],
    ['2,500 nested objects', '{"a":'.repeat(2500) + '1' + '}'.repeat(2500)],
    ['__proto__ under 4,000 arrays', '['.repeat(4000) + '{"__proto__":{}}' + ']'.repeat(4000)],
    // Bytes that are not UTF-8: bodies are JSON in UTF-8 (api.md), and strings are kept verbatim, so a
    // string that cannot be read as sent is refused rather than stored with replacement characters.
    ['the byte 0xFF in buyerId', withBuyer(Buffer.from([0xff]))],
    ['a UTF-8-encoded surrogate (CESU) in buyerId', withBuyer(Buffer.from([0xed, 0xa0, 0x80]))],
    ['an overlong encoding of "/" in buyerId', withBuyer(Buffer.from([0xc0, 0xaf]))],
    ['a truncated sequence in buyerId', withBuyer(Buffer.from([0xe2, 0x82]))],
    ['Latin-1 "é" in buyerId', withBuyer(Buffer.from([0xe9]))],
  ];
}

describe('400 invalid_request, and nothing changes', () => {
  it('refuses every malformed POST /api/events body', async () => {
    await changesNothing(async () => {
      for (const [label, body] of BAD_EVENTS)
        expectApiError(await postEvent(body), 400, 'invalid_request', label);
      for (const [label, text] of BAD_EVENT_TEXTS) {
        expectApiError(await postEvent(text), 400, 'invalid_request', label);
      }
    });
  });

  it('accepts the boundaries of POST /api/events exactly', async () => {
    const at = (edit: (b: any) => void) => postEvent(variant(validEvent(), edit));
    const accepted = [
      await at((b) => (b.name = 'x')),
      await at((b) => (b.name = 'n'.repeat(200))),
      await at((b) => (b.name = '🎫'.repeat(200))),
      await at((b) => (b.ticketTypes = ticketTypes(50))),
      await at((b) => Object.assign(b.ticketTypes[0], { capacity: 1, priceCents: 0, maxPerBuyer: 1 })),
      await at((b) => Object.assign(b.ticketTypes[0], { capacity: 10_000_000, maxPerBuyer: 100 })),
      await at((b) => (b.holdSeconds = 0)),
      await at((b) => (b.holdSeconds = 30)),
      await at((b) => (b.holdSeconds = 86_400)),
    ];
    for (const res of accepted) expect(res.status, res.text).toBe(201);
    expect(accepted[2]!.body.name).toBe('🎫'.repeat(200));
    expect(accepted[3]!.body.ticketTypes).toHaveLength(50);
    expect(accepted[5]!.body.ticketTypes[0]).toMatchObject({ capacity: 10_000_000, available: 10_000_000 });
  });

  it('refuses every malformed purchase, and queues nothing', async () => {
    await changesNothing(async () => {
      for (const [label, body] of badPurchases()) {
        expectApiError(await postPurchase(victim.id, body), 400, 'invalid_request', label);
      }
      for (const [label, text] of badPurchaseTexts()) {
        expectApiError(await postPurchase(victim.id, text), 400, 'invalid_request', label);
      }
    });
  });

  it('refuses an invalid Idempotency-Key (empty, 129 characters, not printable ASCII), and queues nothing', async () => {
    const body = JSON.stringify(validPurchase('keyed'));
    const path = `/api/events/${victim.id}/purchases`;
    const raw = (key: Buffer) =>
      Buffer.concat([
        Buffer.from(
          `POST ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n` +
            `Content-Length: ${Buffer.byteLength(body)}\r\nIdempotency-Key: `,
        ),
        key,
        Buffer.from(`\r\n\r\n${body}`),
      ]);
    await changesNothing(async () => {
      for (const [label, key] of [
        ['empty', ''],
        ['129 characters', 'k'.repeat(129)],
        ['a tab inside', 'a\tb'],
      ]) {
        const res = await postPurchase(victim.id, body, { ...JSON_TYPE, 'idempotency-key': key! });
        expectApiError(res, 400, 'invalid_request', label);
        expect(res.body.error.message).toMatch(/Idempotency-Key/);
      }
      for (const [label, key] of [
        ['Latin-1 é', Buffer.from([0x61, 0xe9, 0x62])],
        ['UTF-8 é', Buffer.from('aéb')],
        ['DEL', Buffer.from([0x61, 0x7f, 0x62])],
        ['NUL', Buffer.from([0x61, 0x00, 0x62])],
        ['a control character', Buffer.from([0x61, 0x01, 0x62])],
      ] as const) {
        expectApiError(await sendRaw(base, raw(key)), 400, 'invalid_request', label);
      }
    });
    // The boundaries are accepted: 128 characters, and every printable ASCII character.
    for (const key of ['k'.repeat(128), '!"#$%&\'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~ x', 'x']) {
      const res = await postPurchase(victim.id, validPurchase(`keyed-${key.length}`), {
        ...JSON_TYPE,
        'idempotency-key': key,
      });
      expect(res.status, res.text).toBe(202);
    }
  });

  it('accepts the boundaries of a purchase exactly', async () => {
    const wide = await createEvent(base, { name: 'Wide', ticketTypes: ticketTypes(50) });
    const all = wide.ticketTypes.map((t) => ({ ticketTypeId: t.id, quantity: 1 }));
    const answers = [
      await postPurchase(wide.id, { buyerId: 'x', items: all }),
      await postPurchase(victim.id, { buyerId: 'b'.repeat(128), items: [{ ticketTypeId: ga, quantity: 4 }] }),
      await postPurchase(victim.id, {
        buyerId: '😀'.repeat(128),
        items: [{ ticketTypeId: vip, quantity: 2 }],
      }),
    ];
    for (const res of answers) expect(res.status, res.text).toBe(202);
    const settled = await Promise.all(answers.map((a) => waitFinal(base, a.body.purchaseId)));
    expect(settled.map((p) => p.status)).toEqual(['confirmed', 'confirmed', 'confirmed']);
    expect(settled[0].tickets).toHaveLength(50);
    expect(settled[2].buyerId).toBe('😀'.repeat(128));
  });
});

describe('413 payload_too_large and 415 unsupported_media_type', () => {
  it('refuses a body over 16 KiB with 413, and accepts one of exactly 16 KiB', async () => {
    const json = JSON.stringify(validPurchase('padded'));
    const padded = (size: number) => json.slice(0, -1) + ' '.repeat(size - json.length) + '}';
    await changesNothing(async () => {
      expectApiError(await postPurchase(victim.id, padded(16 * 1024 + 1)), 413, 'payload_too_large');
      expectApiError(await postPurchase(victim.id, padded(1024 * 1024)), 413, 'payload_too_large');
      // Without Content-Length (chunked), the server counts as it reads.
      const chunked = await send(base, 'POST', `/api/events/${victim.id}/purchases`, {
        headers: JSON_TYPE,
        body: padded(20 * 1024),
        chunked: true,
      });
      expectApiError(chunked, 413, 'payload_too_large');
      const event = JSON.stringify({ ...validEvent(), name: 'Big' });
      expectApiError(
        await postEvent(event.slice(0, -1) + ' '.repeat(17_000) + '}'),
        413,
        'payload_too_large',
      );
    });
    const exact = await postPurchase(victim.id, padded(16 * 1024));
    expect(exact.status, exact.text).toBe(202);
  });

  it('after a 413 sent before the body, reads on what the client still sends instead of resetting it', async () => {
    // The client announces 1 MiB, reads its 413, then goes on sending for a while, as a client writing its
    // body while the answer arrives does. Closing with those bytes unread would make the server's kernel
    // answer them with a reset, which can destroy the 413 before a client reads it.
    const url = new URL(base);
    // Half-open: the client goes on writing after the server's FIN, as a client sending its body does.
    const socket = netConnect({ host: url.hostname, port: Number(url.port), allowHalfOpen: true });
    const received: Buffer[] = [];
    let failure: Error | null = null;
    let ended = false;
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.on('error', (error) => (failure = error));
    socket.on('end', () => (ended = true));
    socket.write(
      `POST /api/events/${victim.id}/purchases HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${1024 * 1024}\r\n\r\n`,
    );
    await eventually(async () =>
      expect(Buffer.concat(received).toString('latin1')).toMatch(/^HTTP\/1\.1 413 /),
    );
    const answer = Buffer.concat(received).toString('latin1');
    expect(answer).toMatch(/\r\nconnection: close\r\n/i);
    expect(answer).toContain('"payload_too_large"');
    const chunk = Buffer.alloc(16 * 1024, 0x20);
    for (let i = 0; i < 20 && !failure; i++) {
      socket.write(chunk);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(failure, 'the server reset the connection while the client was still sending').toBeNull();
    // The server's side is closed (FIN) once the answer is written; the client closes its own.
    expect(ended).toBe(true);
    socket.end();
    if (!socket.closed) await new Promise((resolve) => socket.once('close', resolve));
    expect(failure).toBeNull();
  });

  it('refuses a body that is not application/json with 415', async () => {
    const purchaseBody = JSON.stringify(validPurchase('typed'));
    const eventBody = JSON.stringify(validEvent());
    const types: Array<string | null> = [
      'text/plain',
      'text/plain; charset=utf-8',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/xml',
      'application/octet-stream',
      'application/vnd.api+json',
      'text/json',
      null,
    ];
    await changesNothing(async () => {
      for (const type of types) {
        const headers: Record<string, string> = type === null ? {} : { 'content-type': type };
        const label = type ?? 'no content-type';
        expectApiError(
          await postPurchase(victim.id, purchaseBody, headers),
          415,
          'unsupported_media_type',
          label,
        );
        const adminHeaders = { authorization: ADMIN.authorization, ...headers };
        expectApiError(await postEvent(eventBody, adminHeaders), 415, 'unsupported_media_type', label);
      }
      const form = await postPurchase(victim.id, `buyerId=a&items=${ga}`, {
        'content-type': 'application/x-www-form-urlencoded',
      });
      expectApiError(form, 415, 'unsupported_media_type');
    });
    // The media type is case-insensitive and may carry a charset.
    for (const type of ['application/json; charset=utf-8', 'Application/JSON']) {
      const res = await postPurchase(victim.id, validPurchase(`typed-${type.length}`), {
        'content-type': type,
      });
      expect(res.status, res.text).toBe(202);
    }
  });
});

describe('404 not_found for odd ids in the path', () => {
  const odd = [
    '%00',
    'null',
    'undefined',
    '__proto__',
    'constructor',
    '0',
    '-1',
    '%20',
    '*',
    '%25',
    '%27%3B%20DROP%20TABLE%20events%3B%20--',
    '1%20OR%201%3D1',
    '..%2F..%2Fetc%2Fpasswd',
    '%2E%2E',
    '%3Cscript%3Ealert(1)%3C%2Fscript%3E',
    'a%3Bb',
    '%F0%9F%8E%AB',
    '%E2%80%AE',
    '%EF%BB%BF',
  ];

  it('answers 404 on every endpoint with an id, and changes nothing', async () => {
    await changesNothing(async () => {
      for (const id of odd) {
        expectApiError(await send(base, 'GET', `/api/events/${id}`), 404, 'not_found', id);
        expectApiError(
          await send(base, 'GET', `/api/events/${id}/stats`, { headers: ADMIN }),
          404,
          'not_found',
          id,
        );
        const buy = await send(base, 'POST', `/api/events/${id}/purchases`, {
          headers: JSON_TYPE,
          body: JSON.stringify(validPurchase('odd')),
        });
        expectApiError(buy, 404, 'not_found', id);
        const unknownType = await postPurchase(victim.id, {
          buyerId: 'odd',
          items: [{ ticketTypeId: decodeURIComponent(id), quantity: 1 }],
        });
        expectApiError(unknownType, 404, 'not_found', id);
        expectApiError(await send(base, 'GET', `/api/purchases/${id}`), 404, 'not_found', id);
        expectApiError(await send(base, 'GET', `/api/purchases/${id}/events`), 404, 'not_found', id);
      }
    });
  });

  it('answers 400 invalid_request, in the error body, for a malformed or over-long path parameter', async () => {
    await changesNothing(async () => {
      for (const path of [
        '/api/events/%ZZ',
        '/api/events/%E0%A4%A',
        '/api/purchases/%',
        `/api/events/${'e'.repeat(65)}`,
        `/api/events/${'e'.repeat(101)}`,
        `/api/events/${'e'.repeat(2000)}/stats`,
        `/api/purchases/${'p'.repeat(101)}`,
        `/api/purchases/${'p'.repeat(101)}/events`,
      ]) {
        expectApiError(
          await send(base, 'GET', path, { headers: ADMIN }),
          400,
          'invalid_request',
          path.slice(0, 40),
        );
      }
      const long = await send(base, 'POST', `/api/events/${'e'.repeat(200)}/purchases`, {
        headers: JSON_TYPE,
        body: JSON.stringify(validPurchase('long')),
      });
      expectApiError(long, 400, 'invalid_request');
    });
  });
});

describe('malformed HTTP', () => {
  it('answers requests the HTTP parser refuses with the error body, and changes nothing', async () => {
    const path = `/api/events/${victim.id}/purchases`;
    const body = JSON.stringify(validPurchase('smuggler'));
    await changesNothing(async () => {
      const cases: Array<[string, string, number, string]> = [
        ['garbage', 'GARBAGE\r\n\r\n', 400, 'invalid_request'],
        ['a bad request line', 'GET /healthz HTTP/9.9 extra\r\n\r\n', 400, 'invalid_request'],
        [
          'a control character in a header',
          'GET /api/events HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n',
          400,
          'invalid_request',
        ],
        [
          'a space in a header name',
          'GET /api/events HTTP/1.1\r\nHost: x\r\nBad Name: a\r\n\r\n',
          400,
          'invalid_request',
        ],
        [
          'Content-Length with Transfer-Encoding',
          `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
          400,
          'invalid_request',
        ],
        [
          'two different Content-Lengths',
          `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nContent-Length: 2\r\n\r\n${body}`,
          400,
          'invalid_request',
        ],
        [
          'a bad chunk size',
          `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n${body}\r\n0\r\n\r\n`,
          400,
          'invalid_request',
        ],
        [
          'headers over the size limit',
          `GET /api/events HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
          431,
          'headers_too_large',
        ],
      ];
      for (const [label, bytes, status, code] of cases) {
        const res = await sendRaw(base, bytes);
        expectApiError(res, status, code, label);
        expect(res.headers['content-type'], label).toMatch(/^application\/json/);
      }
    });
  });
});

describe('strings are kept verbatim', () => {
  const strings = [
    '🎫🎉 ticket 👩‍👩‍👧‍👦 family',
    'مرحبا بالعالم — שלום',
    '\u202eevil\u202c override',
    'Z\u0335\u0321a\u0327\u0301l\u0360g\u0489o combining',
    'e\u0301',
    '\u00e9',
    'zero\u200bwidth\u200djoiner\u200cnon\u2060word\ufeffbom',
    'nul\u0000byte\u0000',
    "'; DROP TABLE purchases; --",
    'Robert"); DELETE FROM events WHERE ("1"="1',
    '<script>alert("x")</script>&amp;<img src=x onerror=alert(1)>',
    '"quoted" \\back\\slash / \b\f\n\r\t',
    '\u0001\u001f\u007f\u0080\u009f controls',
    '__proto__',
    'constructor',
    '  spaced  ',
    '\ud83d\ude00 astral 𝕌𝕟𝕚𝕔𝕠𝕕𝕖 \u{10ffff}',
    '\ufffd\ufffe\uffff',
    '%s %d {0} ${x} {{x}}',
    '../../etc/passwd',
  ];

  it('reads back event and ticket type names byte for byte', async () => {
    for (const name of strings) {
      const created = await postEvent({
        name,
        ticketTypes: strings.map((s) => ({ name: s, priceCents: 1, capacity: 1 })),
      });
      expect(created.status, created.text).toBe(201);
      expect(created.body.name).toBe(name);
      const read = await getJson(`${base}/api/events/${created.body.id}`);
      expect(Buffer.from(read.body.name, 'utf8').equals(Buffer.from(name, 'utf8'))).toBe(true);
      expect(read.body.ticketTypes.map((t: any) => t.name)).toEqual(strings);
      const listed = (await getJson(`${base}/api/events`)).body.events.find(
        (e: any) => e.id === created.body.id,
      );
      expect(listed.name).toBe(name);
    }
  });

  it('reads back buyerIds byte for byte, queued and final, and refuses invisible and control characters', async () => {
    const event = await createEvent(base, {
      name: 'Verbatim buyers',
      ticketTypes: [{ name: 'GA', priceCents: 1, capacity: 1000, maxPerBuyer: 10 }],
    });
    // Controls, format characters (bidi, zero-width, BOM) and line separators are refused as buyer ids; the
    // zero-width joiner only where it does not join emoji (it does in the family of the first string).
    const invisible = /(?!\u200d)[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;
    const refused = strings.filter((s) => invisible.test(s));
    const kept = strings.filter((s) => !invisible.test(s));
    expect(refused).toHaveLength(5);
    await changesNothing(async () => {
      for (const buyerId of refused) {
        const res = await postPurchase(event.id, {
          buyerId,
          items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
        });
        expectApiError(res, 400, 'invalid_request', JSON.stringify(buyerId));
        expect(res.body.error.message).toContain('buyerId');
      }
    });
    const ids: string[] = [];
    for (const buyerId of kept) {
      const res = await postPurchase(event.id, {
        buyerId,
        items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
      });
      expect(res.status, res.text).toBe(202);
      ids.push(res.body.purchaseId);
      const read = await getJson(`${base}/api/purchases/${res.body.purchaseId}`);
      expect(read.body.buyerId).toBe(buyerId);
    }
    for (const [i, id] of ids.entries()) {
      const done = await waitFinal(base, id);
      // Shown as typed, though "é" composed and "é" decomposed count as one buyer (of 2 tickets here).
      expect(Buffer.from(done.buyerId, 'utf8').equals(Buffer.from(kept[i]!, 'utf8'))).toBe(true);
      expect(done.status).toBe('confirmed');
    }
    const decomposed = kept.indexOf('e\u0301');
    const sse = await openSse(`${base}/api/purchases/${ids[decomposed]}/events`);
    expect(JSON.parse((await sse.next())!.data).buyerId).toBe('e\u0301');
    await sse.close();
  });

  it('accepts an escaped surrogate pair and refuses lone surrogates, however they are escaped', async () => {
    const items = `[{"ticketTypeId":"${ga}","quantity":1}]`;
    const pair = await postPurchase(victim.id, `{"buyerId":"smile \\ud83d\\ude00","items":${items}}`);
    expect(pair.status, pair.text).toBe(202);
    expect((await getJson(`${base}/api/purchases/${pair.body.purchaseId}`)).body.buyerId).toBe('smile 😀');
    await changesNothing(async () => {
      for (const lone of ['\\ud800', '\\uDBFF', '\\udc00', 'a\\ud83d', '\\ude00\\ud83d', '\\ud83d\\ud83d']) {
        const res = await postPurchase(victim.id, `{"buyerId":"${lone}","items":${items}}`);
        expectApiError(res, 400, 'invalid_request', lone);
        const event = await postEvent(
          `{"name":"${lone}","ticketTypes":[{"name":"a","priceCents":1,"capacity":1}]}`,
        );
        expectApiError(event, 400, 'invalid_request', lone);
      }
    });
  });
});

describe('after all of it', () => {
  it('the server still runs, and never answered a 500', async () => {
    expect((await getJson(`${base}/healthz`)).body).toEqual({ status: 'ok' });
    for (const p of onsale.processes) expect(p.child.exitCode).toBeNull();
    // The web server logs every 500 as "request failed".
    expect(onsale.processes[0]!.output()).not.toMatch(/request failed|internal_error/);
  });
});
