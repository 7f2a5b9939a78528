/**
 * GET /api/events/:eventId/export.csv: every allocated purchase of an event as CSV, for the admin only,
 * escaped so that a spreadsheet shows what buyers typed and never runs it; streamed page by page, so that
 * a 200,000-purchase export never holds the sale in memory. On SQLite and PostgreSQL.
 */
import { request, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPaymentProvider } from '../src/adapters/payments/index.js';
import { openQueue, openStorage, openWaitingRoom } from '../src/adapters/index.js';
import { loadConfig } from '../src/config.js';
import type { Storage } from '../src/ports/storage.js';
import { createLogger } from '../src/shared/logger.js';
import { buildApp } from '../src/web/app.js';
import { createEvent, purchase, waitFinal } from './helpers/api.js';
import { ADMIN_TOKEN, startOnsale, tempDir, until, type Onsale } from './helpers/processes.js';
import { describeEach, exclusion, freshPostgresDatabase } from './helpers/services.js';

/** RFC 4180 rows, as a spreadsheet reads them. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(cell);
      cell = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
      i++;
    } else cell += c;
  }
  if (cell !== '' || row.length > 0) {
    row.push(cell);
    rows.push(row);
  }
  return rows;
}

const engines = [
  { name: 'sqlite', excluded: '', database: async () => null },
  { name: 'postgres', excluded: exclusion('postgres'), database: freshPostgresDatabase },
];

describeEach(engines, 'the purchases export on $name', (engine) => {
  let onsale: Onsale;
  let drop: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    const db = await engine.database();
    drop = db?.drop;
    onsale = await startOnsale({ workers: 1, env: db ? { ONSALE_DATABASE_URL: db.url } : {} });
  });
  afterAll(async () => {
    await onsale?.stop();
    await drop?.();
  });

  it('lists every allocated purchase with buyer, status, tickets and amount, escaped and formula-safe', async () => {
    const event = await createEvent(onsale.baseUrl, {
      ticketTypes: [
        { name: 'Front, "VIP"', priceCents: 12_050, capacity: 3, maxPerBuyer: 3 },
        { name: 'GA', priceCents: 1000, capacity: 100, maxPerBuyer: 4 },
      ],
    });
    const [vip, ga] = event.ticketTypes.map((t) => t.id) as [string, string];
    const buyers = ['=HYPERLINK("http://evil")', '+1 555 0100', '-2+3', '@sum', 'a,"quoted" buyer', 'plain'];
    const ids = new Map<string, string>();
    for (const buyerId of buyers) {
      const res = await purchase(onsale.baseUrl, event.id, {
        buyerId,
        items: [{ ticketTypeId: buyerId === 'plain' ? vip : ga, quantity: buyerId === 'plain' ? 3 : 2 }],
      });
      expect(res.status).toBe(202);
      ids.set(res.body.purchaseId, buyerId);
    }
    // Sold out: rejected, exported with its reason and no amount.
    const late = await purchase(onsale.baseUrl, event.id, {
      buyerId: 'late',
      items: [{ ticketTypeId: vip, quantity: 1 }],
    });
    ids.set(late.body.purchaseId, 'late');
    const finals = new Map<string, any>();
    for (const id of ids.keys()) finals.set(id, await waitFinal(onsale.baseUrl, id));

    const res = await fetch(`${onsale.baseUrl}/api/events/${event.id}/export.csv`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    expect(res.headers.get('content-disposition')).toBe(
      `attachment; filename="event-${event.id}-purchases.csv"`,
    );
    const bytes = Buffer.from(await res.arrayBuffer());
    // A UTF-8 byte-order mark first, so that spreadsheets read the file as UTF-8.
    expect([...bytes.subarray(0, 3)]).toEqual([0xef, 0xbb, 0xbf]);
    const [header, ...rows] = parseCsv(bytes.subarray(3).toString('utf8'));
    expect(header).toEqual([
      'purchase_id',
      'buyer_id',
      'status',
      'reason',
      'accepted_at',
      'updated_at',
      'items',
      'tickets',
      'ticket_codes',
      'amount_cents',
      'amount',
    ]);
    expect(rows).toHaveLength(ids.size);
    const byId = new Map(rows.map((r) => [r[0]!, r]));
    for (const [id, buyerId] of ids) {
      const row = byId.get(id)!;
      const final = finals.get(id);
      // What a buyer typed that a spreadsheet would run gets a leading apostrophe; the rest is as typed.
      expect(row[1]).toBe(/^[=+\-@]/.test(buyerId) ? `'${buyerId}` : buyerId);
      expect(row[2]).toBe(final.status);
      expect(row[3]).toBe(final.reason ?? '');
      expect(row[4]).toBe(final.createdAt);
      expect(Number(row[7])).toBe(final.tickets.length);
      // Ticket codes are base64url and may start with '-': the same guard applies to them.
      const codes = final.tickets.map((t: { code: string }) => t.code).join(' ');
      expect(row[8]).toBe(codes.startsWith('-') ? `'${codes}` : codes);
    }
    const plain = [...ids].find(([, b]) => b === 'plain')![0];
    expect(byId.get(plain)!.slice(6)).toEqual([
      'Front, "VIP" × 3',
      '3',
      expect.any(String),
      '36150',
      '361.50',
    ]);
    expect(byId.get(late.body.purchaseId)!.slice(2, 4)).toEqual(['rejected', 'sold_out']);
    expect(byId.get(late.body.purchaseId)!.slice(9)).toEqual(['0', '0.00']);
    const formula = [...ids].find(([, b]) => b.startsWith('='))![0];
    expect(byId.get(formula)!.slice(9)).toEqual(['2000', '20.00']);
  });

  it('is for the admin only, and answers 404 as JSON for an unknown event', async () => {
    const event = await createEvent(onsale.baseUrl);
    const anonymous = await fetch(`${onsale.baseUrl}/api/events/${event.id}/export.csv`);
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as any).error.code).toBe('unauthorized');
    const missing = await fetch(`${onsale.baseUrl}/api/events/nope/export.csv`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as any).error.code).toBe('not_found');
  });
});

describe('a 200,000-purchase export', () => {
  const COUNT = 200_000;
  const dir = tempDir();
  let storage: Storage;
  let pagesRead = 0;
  let close: () => Promise<void>;
  let port: number;
  let eventId: string;

  beforeAll(async () => {
    const databaseUrl = `sqlite:${join(dir.path, 'onsale.db')}`;
    const real = await openStorage(databaseUrl);
    await real.migrate();
    const event = await real.createEvent({
      name: 'Stadium',
      salesOpenAt: new Date().toISOString(),
      holdSeconds: 0,
      ticketTypes: [{ name: 'Seat', priceCents: 4500, capacity: COUNT, maxPerBuyer: 1 }],
    });
    eventId = event.id;
    const acceptedAt = new Date().toISOString();
    for (let start = 0; start < COUNT; start += 10_000) {
      const batch = Array.from({ length: 10_000 }, (_, i) => ({
        purchaseId: `p${String(start + i).padStart(7, '0')}`,
        eventId,
        buyerId: `buyer-${start + i}`,
        canonicalBuyerId: `buyer-${start + i}`,
        items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
        acceptedAt,
      }));
      await real.applyBatch(eventId, batch);
    }
    // The real storage, its page reads counted.
    storage = new Proxy(real, {
      get(target, key) {
        const value = Reflect.get(target, key) as unknown;
        if (key === 'purchasesPage') {
          return (...args: Parameters<Storage['purchasesPage']>) => {
            pagesRead += 1;
            return target.purchasesPage(...args);
          };
        }
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    const config = loadConfig({}, { ONSALE_DATA_DIR: dir.path, ONSALE_DATABASE_URL: databaseUrl, PORT: '0' });
    const queue = await openQueue(databaseUrl);
    await queue.migrate();
    const room = await openWaitingRoom(databaseUrl);
    await room.migrate();
    const web = buildApp({
      config,
      storage,
      room,
      payments: await openPaymentProvider(config, storage),
      queue,
      adminToken: ADMIN_TOKEN,
      logger: createLogger('warn', 'web'),
    });
    await web.app.listen({ port: 0, host: '127.0.0.1' });
    port = (web.app.server.address() as { port: number }).port;
    close = async () => {
      await web.app.close();
      await Promise.all([real.close(), queue.close(), room.close()]);
    };
  }, 300_000);
  afterAll(async () => {
    await close?.();
    dir.remove();
  });

  it('reads storage a page at a time, only as fast as the client takes the CSV', async () => {
    let received = 0;
    let lines = 0;
    let last = '';
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      request(
        {
          port,
          host: '127.0.0.1',
          path: `/api/events/${eventId}/export.csv`,
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        },
        resolve,
      )
        .on('error', reject)
        .end();
    });
    expect(res.statusCode).toBe(200);
    res.pause();
    // The client reads nothing: the server stops once the socket's buffers are full, far short of the end.
    let seen = -1;
    await until(async () => {
      const settled = seen === pagesRead;
      seen = pagesRead;
      await new Promise((r) => setTimeout(r, 300));
      return settled && seen === pagesRead;
    }, 60_000);
    expect(pagesRead).toBeGreaterThan(0);
    expect(pagesRead).toBeLessThan(COUNT / 1000 / 4);
    // Then it reads everything, to the last line.
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      received += chunk.length;
      for (let i = chunk.indexOf('\n'); i !== -1; i = chunk.indexOf('\n', i + 1)) lines += 1;
      last = (last + chunk).slice(-200);
    });
    res.resume();
    await new Promise((r) => res.once('end', r));
    expect(lines).toBe(COUNT + 1);
    expect(last).toContain(`p${String(COUNT - 1).padStart(7, '0')},buyer-${COUNT - 1},confirmed`);
    expect(pagesRead).toBe(COUNT / 1000 + 1); // the last page read is the empty one
    expect(received).toBeGreaterThan(COUNT * 50);
  }, 300_000);
});
