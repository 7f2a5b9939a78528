/**
 * GET /api/events/:eventId/purchases, the admin page's list and search of purchases, black-box: real
 * `onsale serve` and `onsale worker` processes on a temp SQLite folder (the storage contract covers PostgreSQL).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEvent, getJson, purchase, waitDrained, type CreatedEvent } from './helpers/api.js';
import { expectApiError } from './helpers/http.js';
import { startOnsale, type Onsale } from './helpers/processes.js';

let onsale: Onsale;
let event: CreatedEvent;
const bought: Record<string, string> = {};

beforeAll(async () => {
  // No worker at first: purchases stay queued until one is added.
  onsale = await startOnsale({ workers: 0 });
  event = await createEvent(onsale.baseUrl, {
    ticketTypes: [{ name: 'GA', priceCents: 1000, capacity: 2, maxPerBuyer: 4 }],
  });
  for (const buyer of ['ann', 'bob', 'ann-again']) {
    const answer = await purchase(onsale.baseUrl, event.id, {
      buyerId: buyer === 'ann-again' ? 'ann' : buyer,
      items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
    });
    expect(answer.status).toBe(202);
    bought[buyer] = answer.body.purchaseId;
  }
});

afterAll(async () => onsale?.stop());

const list = (query = '', admin = true) =>
  getJson(`${onsale.baseUrl}/api/events/${event.id}/purchases${query}`, admin);

describe('admin list of purchases', () => {
  it('refuses without the admin token and validates its query', async () => {
    expectApiError(await list('', false), 401, 'unauthorized');
    for (const bad of ['?limit=0', '?limit=101', '?limit=abc', '?limit=1&limit=2', '?q=', '?other=1']) {
      expectApiError(await list(bad), 400, 'invalid_request', bad);
    }
    expectApiError(await getJson(`${onsale.baseUrl}/api/events/nope/purchases`, true), 404, 'not_found');
  });

  it('finds a queued purchase by its id before it is allocated', async () => {
    expect((await list()).body).toEqual({ purchases: [] });
    const found = await list(`?q=${bought.bob}`);
    expect(found.status).toBe(200);
    expect(found.body.purchases).toHaveLength(1);
    expect(found.body.purchases[0]).toMatchObject({
      purchaseId: bought.bob,
      buyerId: 'bob',
      status: 'queued',
    });
  });

  it('lists allocated purchases newest first, bounded, and searches by buyer', async () => {
    onsale.addWorker();
    await waitDrained(onsale.baseUrl, event.id);
    const all = await list();
    expect(all.status).toBe(200);
    expect(all.body.purchases.map((p: any) => p.purchaseId)).toEqual([
      bought['ann-again'],
      bought.bob,
      bought.ann,
    ]);
    expect(all.body.purchases.map((p: any) => p.status)).toEqual(['rejected', 'confirmed', 'confirmed']);
    expect(all.body.purchases[1].tickets).toHaveLength(1);
    expect((await list('?limit=1')).body.purchases.map((p: any) => p.purchaseId)).toEqual([
      bought['ann-again'],
    ]);
    const ann = await list('?q=ann');
    expect(ann.body.purchases.map((p: any) => p.purchaseId)).toEqual([bought['ann-again'], bought.ann]);
    expect((await list('?q=nobody')).body).toEqual({ purchases: [] });
  });
});
