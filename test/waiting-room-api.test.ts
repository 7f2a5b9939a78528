import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { solves } from '../src/domain/proof-of-work.js';
import { AdmissionSigner } from '../src/web/admission-token.js';
import { getJson, purchase, waitFinal } from './helpers/api.js';
import { samples } from './helpers/prometheus.js';
import { ADMIN, expectApiError, eventually, JSON_TYPE, send } from './helpers/http.js';
import { ADMIN_TOKEN, LOOPBACK_EXEMPT, startOnsale, type Onsale } from './helpers/processes.js';
import { sha256, solve } from './helpers/pow.js';
import { startPrivateRedis } from './helpers/redis.js';
import { describeEach, exclusion, uniqueName } from './helpers/services.js';

let onsale: Onsale;

/** The same tests with the lines in the database (SQLite) and in a Redis of the file's own (ONSALE_ROOM_URL). */
const ROOMS: Array<{ name: string; excluded: string; env: () => Promise<Record<string, string>> }> = [
  { name: 'in the database', excluded: '', env: async () => ({}) },
  {
    name: 'in Redis',
    excluded: exclusion('redis'),
    env: async () => {
      const redis = await startPrivateRedis();
      const prefix = uniqueName('onsale_room');
      stopRedis = redis.remove;
      redisLines = async () => {
        const client = new Redis(redis.url);
        try {
          return (await client.keys(`${prefix}:room:*:line`)).length;
        } finally {
          client.disconnect();
        }
      };
      return { ONSALE_ROOM_URL: `${redis.url}?prefix=${prefix}` };
    },
  },
];
let stopRedis: (() => Promise<void>) | null = null;
let redisLines: (() => Promise<number>) | null = null;

async function createRoomEvent(room: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const answer = await send(onsale.baseUrl, 'POST', '/api/events', {
    headers: ADMIN,
    body: JSON.stringify({
      name: 'Room night',
      ticketTypes: [{ name: 'GA', priceCents: 1000, capacity: 3, maxPerBuyer: 1 }],
      waitingRoom: room,
      ...extra,
    }),
  });
  expect(answer.status, answer.text).toBe(201);
  return answer.body as { id: string; ticketTypes: Array<{ id: string }>; waitingRoom: any };
}

const join = (eventId: string, buyerId: unknown) =>
  send(onsale.baseUrl, 'POST', `/api/events/${eventId}/queue`, {
    headers: JSON_TYPE,
    body: JSON.stringify({ buyerId }),
  });
const place = (placeId: string) => getJson(`${onsale.baseUrl}/api/queue/${placeId}`);
const waitState = (placeId: string, state: string) =>
  eventually(async () => {
    const { body } = await place(placeId);
    if (body.state !== state) throw new Error(`${placeId} is ${JSON.stringify(body)}, not ${state}`);
    return body;
  }, 20_000);

describeEach(ROOMS, 'waiting room over HTTP, lines $name', (rooms) => {
  beforeAll(async () => {
    onsale = await startOnsale({ workers: 1, env: { ...LOOPBACK_EXEMPT, ...(await rooms.env()) } });
  });
  afterAll(async () => {
    await onsale?.stop();
    await stopRedis?.();
    stopRedis = null;
  });

  let event: Awaited<ReturnType<typeof createRoomEvent>>;
  let other: Awaited<ReturnType<typeof createRoomEvent>>;
  const places: Record<string, string> = {};

  beforeAll(async () => {
    event = await createRoomEvent({ maxActiveBuyers: 2 });
    other = await createRoomEvent({});
  });

  it('creates events with a room, defaults filled, and refuses bad room settings', async () => {
    expect(event.waitingRoom).toMatchObject({
      maxActiveBuyers: 2,
      maxAdmittedPerMinute: null,
      sessionSeconds: 600,
    });
    expect((await getJson(`${onsale.baseUrl}/api/events/${event.id}`)).body.waitingRoom).toEqual(
      event.waitingRoom,
    );
    const bad = async (waitingRoom: unknown, extra: Record<string, unknown> = {}) =>
      send(onsale.baseUrl, 'POST', '/api/events', {
        headers: ADMIN,
        body: JSON.stringify({
          name: 'x',
          ticketTypes: [{ name: 'GA', priceCents: 1, capacity: 1 }],
          waitingRoom,
          ...extra,
        }),
      });
    expectApiError(await bad({ maxActiveBuyers: 0 }), 400, 'invalid_request');
    expectApiError(await bad({ sessionSeconds: 'long' }), 400, 'invalid_request');
    expectApiError(await bad({ surprise: 1 }), 400, 'invalid_request');
    expectApiError(await bad({ opensAt: 'soon' }), 400, 'invalid_request');
    expectApiError(
      await bad({ opensAt: '2031-01-01T00:00:00Z' }, { salesOpenAt: '2030-01-01T00:00:00Z' }),
      400,
      'invalid_request',
    );
  });

  it('gives one place per buyer: 201 then 200 with the same place, however spelled', async () => {
    const first = await join(event.id, 'Ann');
    expect(first.status, first.text).toBe(201);
    expect(first.headers['cache-control']).toBe('no-store');
    expect(Object.keys(first.body).sort()).toEqual(
      [
        'placeId',
        'eventId',
        'buyerId',
        'state',
        'position',
        'aheadOfYou',
        'etaSeconds',
        'admission',
        'refreshAfterSeconds',
      ].sort(),
    );
    expect(first.body).toMatchObject({ eventId: event.id, buyerId: 'Ann', refreshAfterSeconds: 5 });
    const again = await join(event.id, '  ANN ');
    expect(again.status).toBe(200);
    expect(again.body.placeId).toBe(first.body.placeId);
    places.ann = first.body.placeId;
    for (const buyer of ['bob', 'cat', 'dan']) {
      const answer = await join(event.id, buyer);
      expect(answer.status).toBe(201);
      places[buyer] = answer.body.placeId;
    }
    const o = await join(other.id, 'ann');
    expect(o.status).toBe(201);
    places.otherAnn = o.body.placeId;
  });

  it('refuses bad joins and unknown places with api.md errors', async () => {
    expectApiError(await join(event.id, ''), 400, 'invalid_request');
    expectApiError(await join(event.id, 'a\u0000b'), 400, 'invalid_request');
    expectApiError(
      await send(onsale.baseUrl, 'POST', `/api/events/${event.id}/queue`, { headers: JSON_TYPE, body: '{}' }),
      400,
      'invalid_request',
    );
    expectApiError(await join('no-such-event', 'ann'), 404, 'not_found');
    const plain = await send(onsale.baseUrl, 'POST', '/api/events', {
      headers: ADMIN,
      body: JSON.stringify({ name: 'no room', ticketTypes: [{ name: 'GA', priceCents: 1, capacity: 1 }] }),
    });
    expectApiError(await join(plain.body.id, 'ann'), 404, 'not_found');
    expectApiError(await place('no-such-place'), 404, 'not_found');
    const later = await createRoomEvent(
      { opensAt: new Date(Date.now() + 3_600_000).toISOString() },
      { salesOpenAt: new Date(Date.now() + 7_200_000).toISOString() },
    );
    expectApiError(await join(later.id, 'ann'), 409, 'queue_not_open');
  });

  it('keeps early arrivals in the pre-queue, with no position, until sales open', async () => {
    const early = await createRoomEvent({}, { salesOpenAt: new Date(Date.now() + 3_600_000).toISOString() });
    const answer = await join(early.id, 'eve');
    expect(answer.status).toBe(201);
    expect(answer.body).toMatchObject({
      state: 'prequeue',
      position: null,
      aheadOfYou: null,
      etaSeconds: null,
      admission: null,
    });
  });

  it('admits maxActiveBuyers from the front; the rest see exact positions', async () => {
    const ann = await waitState(places.ann!, 'admitted');
    const bob = await waitState(places.bob!, 'admitted');
    expect(ann.admission.token).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    expect(Date.parse(ann.admission.expiresAt)).toBeGreaterThan(Date.now() + 500_000);
    expect(bob.position).toBeNull();
    const cat = await eventually(async () => {
      const { body } = await place(places.cat!);
      if (body.position !== 1) throw new Error(JSON.stringify(body));
      return body;
    });
    expect(cat).toMatchObject({ state: 'waiting', position: 1, aheadOfYou: 0, admission: null });
    expect((await place(places.dan!)).body).toMatchObject({ state: 'waiting', position: 2, aheadOfYou: 1 });
  });

  it('refuses purchases without a valid admission token of this event and buyer (403 admission_required)', async () => {
    const items = [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }];
    const ann = (await place(places.ann!)).body.admission.token as string;
    const bob = (await place(places.bob!)).body.admission.token as string;
    const otherAnn = (await waitState(places.otherAnn!, 'admitted')).admission.token as string;
    const [payload, mac] = ann.split('.') as [string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    const resigned = (signer: AdmissionSigner, changes: Partial<Record<0 | 1 | 2 | 3, unknown>>) => {
      const c = [...claims];
      for (const [k, v] of Object.entries(changes)) c[Number(k)] = v;
      return signer.sign({ eventId: c[0], canonicalBuyerId: c[1], placeId: c[2], expiresAt: c[3] });
    };
    const ours = new AdmissionSigner(ADMIN_TOKEN);
    const refused: Record<string, Record<string, string>> = {
      'no header': {},
      'empty header': { 'onsale-admission': '' },
      garbage: { 'onsale-admission': 'not-a-token' },
      "another buyer's token": { 'onsale-admission': bob },
      "another event's token": { 'onsale-admission': otherAnn },
      'an altered token (buyer changed, MAC kept)': {
        'onsale-admission': `${Buffer.from(JSON.stringify([claims[0], 'bob', claims[2], claims[3]])).toString('base64url')}.${mac}`,
      },
      // Its first character changed to another (a fixed replacement may be what is there already).
      'an altered MAC': {
        'onsale-admission': `${payload}.${mac.startsWith('A') ? 'B' : 'A'}${mac.slice(1)}`,
      },
      'a forged token (another key)': {
        'onsale-admission': resigned(new AdmissionSigner('some-other-key-0123456789abcdefghij'), {}),
      },
      'an expired token': { 'onsale-admission': resigned(ours, { 3: Date.now() - 1000 }) },
    };
    for (const [label, headers] of Object.entries(refused)) {
      expectApiError(
        await purchase(onsale.baseUrl, event.id, { buyerId: 'ann', items }, headers),
        403,
        'admission_required',
        label,
      );
    }
    // Bob's own token is not Ann's: the buyer in the body must be the token's.
    expectApiError(
      await purchase(onsale.baseUrl, event.id, { buyerId: 'ann', items }, { 'onsale-admission': bob }),
      403,
      'admission_required',
    );
    // Nothing was accepted.
    const stats = await getJson(`${onsale.baseUrl}/api/events/${event.id}/stats`, true);
    expect(stats.body.purchases).toMatchObject({ queued: 0, confirmed: 0, rejected: 0 });

    const bought = await purchase(
      onsale.baseUrl,
      event.id,
      { buyerId: 'ANN', items },
      { 'onsale-admission': ann },
    );
    expect(bought.status, JSON.stringify(bought.body)).toBe(202);
    expect((await waitFinal(onsale.baseUrl, bought.body.purchaseId)).status).toBe('confirmed');
  });

  it('frees the slot of a buyer whose purchase is final: the next in line is admitted', async () => {
    const cat = await waitState(places.cat!, 'admitted');
    expect(cat.admission.token).toBeTruthy();
    // Every server shows a move SHOWN_AFTER_MS after it was made, so positions agree across servers.
    await eventually(async () => {
      const { body } = await place(places.dan!);
      expect(body).toMatchObject({ state: 'waiting', position: 1, aheadOfYou: 0 });
    });
  });

  it('shows the line to the admin, who may change its limits (admin token)', async () => {
    expectApiError(await send(onsale.baseUrl, 'GET', `/api/events/${event.id}/queue`), 401, 'unauthorized');
    expectApiError(
      await send(onsale.baseUrl, 'PATCH', `/api/events/${event.id}/queue`, {
        headers: JSON_TYPE,
        body: JSON.stringify({ maxActiveBuyers: 10 }),
      }),
      401,
      'unauthorized',
    );
    const stats = await getJson(`${onsale.baseUrl}/api/events/${event.id}/queue`, true);
    expect(stats.status).toBe(200);
    expect(stats.body).toMatchObject({
      eventId: event.id,
      opened: true,
      waiting: 1,
      admitted: 3,
      active: 2,
      maxActiveBuyers: 2,
    });
    const patch = (body: unknown) =>
      send(onsale.baseUrl, 'PATCH', `/api/events/${event.id}/queue`, {
        headers: ADMIN,
        body: JSON.stringify(body),
      });
    expectApiError(await patch({}), 400, 'invalid_request');
    expectApiError(await patch({ maxActiveBuyers: -1 }), 400, 'invalid_request');
    expectApiError(await patch({ other: 1 }), 400, 'invalid_request');
    const changed = await patch({ maxActiveBuyers: 10, maxAdmittedPerMinute: 100 });
    expect(changed.status, changed.text).toBe(200);
    expect(changed.body).toMatchObject({ maxActiveBuyers: 10, maxAdmittedPerMinute: 100 });
    await waitState(places.dan!, 'admitted');
  });

  it('tells the whole line sold_out once nothing is left', async () => {
    const items = [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }];
    for (const buyer of ['cat', 'dan']) {
      const token = (await place(places[buyer]!)).body.admission.token;
      const bought = await purchase(
        onsale.baseUrl,
        event.id,
        { buyerId: buyer, items },
        { 'onsale-admission': token },
      );
      expect(bought.status).toBe(202);
      expect((await waitFinal(onsale.baseUrl, bought.body.purchaseId)).status).toBe('confirmed');
    }
    const late = await join(event.id, 'fay');
    await waitState(late.body.placeId, 'sold_out');
    // The admin's view is the line's counters of up to 400 ms ago: maybe read before fay's join committed.
    await eventually(async () => {
      const stats = await getJson(`${onsale.baseUrl}/api/events/${event.id}/queue`, true);
      expect(stats.body).toMatchObject({ soldOut: true, waiting: 0, soldOutPlaces: 1 });
    });
  });

  it('exports the lines in /metrics: places per state (each at 0 until used), active buyers, joins', async () => {
    const res = await fetch(`${onsale.baseUrl}/metrics`, { headers: { authorization: ADMIN.authorization } });
    const m = samples(await res.text());
    const at = (state: string) => m.get(`onsale_room_places{event="${event.id}",state="${state}"}`);
    expect([at('prequeue'), at('waiting'), at('admitted'), at('expired'), at('sold_out')]).toEqual([
      0, 0, 4, 0, 1,
    ]);
    expect(m.get(`onsale_room_active_buyers{event="${event.id}"}`)).toBeTypeOf('number');
    expect(m.get('onsale_room_joins_total{result="created"}')).toBeGreaterThanOrEqual(6);
    expect(m.get('onsale_room_joins_total{result="existing"}')).toBeGreaterThanOrEqual(1);
  });

  it('asks for a proof of work when the room sets powDifficulty: solved, for this event and buyer, once', async () => {
    const powEvent = await createRoomEvent({ powDifficulty: 8 });
    expect(powEvent.waitingRoom).toMatchObject({ powDifficulty: 8 });
    expect(event.waitingRoom).toMatchObject({ powDifficulty: 0 });
    const joinWith = (buyerId: string, proofOfWork?: unknown) =>
      send(onsale.baseUrl, 'POST', `/api/events/${powEvent.id}/queue`, {
        headers: JSON_TYPE,
        body: JSON.stringify({ buyerId, proofOfWork }),
      });
    const challengeFor = async (buyerId: string) => {
      const answer = await send(onsale.baseUrl, 'POST', `/api/events/${powEvent.id}/queue/challenge`, {
        headers: JSON_TYPE,
        body: JSON.stringify({ buyerId }),
      });
      expect(answer.status, answer.text).toBe(200);
      return answer.body as { challenge: string; difficulty: number; expiresAt: string };
    };
    const refused = async (answer: Awaited<ReturnType<typeof joinWith>>, why: RegExp) => {
      expectApiError(answer, 403, 'proof_of_work_required');
      expect((answer.body as { error: { message: string } }).error.message).toMatch(why);
    };
    await refused(await joinWith('eve'), /asks for a proof of work/);
    const given = await challengeFor('EVE');
    expect(given.difficulty).toBe(8);
    expect(Date.parse(given.expiresAt)).toBeGreaterThan(Date.now());
    const proof = { challenge: given.challenge, solution: solve(given.challenge, 8) };
    await refused(await joinWith('frank', proof), /another buyer/);
    const wrong = ['0', '1', '2', '3'].find((s) => !solves(given.challenge, s, 8, sha256))!;
    await refused(await joinWith('eve', { ...proof, solution: wrong }), /does not solve/);
    await refused(await joinWith('eve', { ...proof, challenge: `${proof.challenge}x` }), /not handed out/);
    expectApiError(await joinWith('eve', { challenge: proof.challenge }), 400, 'invalid_request');
    const first = await joinWith('eve', proof);
    expect(first.status, first.text).toBe(201);
    const again = await joinWith('eve', proof);
    // A challenge is used once per web server; another one may take it again, and only gives back the place.
    if (again.status === 200) expect(again.body.placeId).toBe(first.body.placeId);
    else await refused(again, /used already/);
    // The organizer changes it during the sale: 0 asks for none.
    const changed = await send(onsale.baseUrl, 'PATCH', `/api/events/${powEvent.id}/queue`, {
      headers: ADMIN,
      body: JSON.stringify({ powDifficulty: 0 }),
    });
    expect(changed.body).toMatchObject({ powDifficulty: 0 });
    await eventually(async () => expect((await joinWith('gus')).status).toBe(201));
  });

  it.runIf(rooms.name === 'in Redis')('keeps the lines in Redis, one per event joined', async () => {
    expect(await redisLines!()).toBeGreaterThanOrEqual(2);
  });
});
