/**
 * /readyz reflects whether the server can write, not only read: a SQLite database locked by another
 * process (BEGIN EXCLUSIVE) answers SELECT 1 but refuses every purchase.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEvent, purchase, type CreatedEvent } from './helpers/api.js';
import { expectApiError, send } from './helpers/http.js';
import { startOnsale, type Onsale } from './helpers/processes.js';

let onsale: Onsale;
let event: CreatedEvent;

beforeAll(async () => {
  onsale = await startOnsale({ workers: 0 });
  event = await createEvent(onsale.baseUrl);
}, 30_000);

afterAll(async () => {
  await onsale?.stop();
});

const buy = (buyerId: string) =>
  purchase(onsale.baseUrl, event.id, {
    buyerId,
    items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
  });

describe('/readyz with a locked database', () => {
  it('turns 503 once a write fails, and 200 again once writes succeed', async () => {
    expect((await send(onsale.baseUrl, 'GET', '/readyz')).status).toBe(200);
    const locker = new Database(join(onsale.dataDir, 'onsale.db'));
    try {
      locker.exec('BEGIN EXCLUSIVE');
      // Reads still work (WAL), so the old check saw nothing wrong; the purchase cannot be written.
      expect((await send(onsale.baseUrl, 'GET', `/api/events/${event.id}`)).status).toBe(200);
      const refused = await buy('locked-out');
      expectApiError(refused, 503, 'unavailable');
      const ready = await send(onsale.baseUrl, 'GET', '/readyz');
      expectApiError(ready, 503, 'unavailable');
      expect(ready.body.error.message).toContain('write');
    } finally {
      locker.exec('ROLLBACK');
      locker.close();
    }
    expect((await buy('back-again')).status).toBe(202);
    expect((await send(onsale.baseUrl, 'GET', '/readyz')).status).toBe(200);
  }, 30_000);
});
