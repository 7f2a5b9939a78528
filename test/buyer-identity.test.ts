/**
 * Buyer identity, black-box: real `onsale serve` + `onsale worker` on SQLite and on PostgreSQL. Spellings
 * of one buyer id that canonicalize the same (case, white space at the ends, fullwidth forms, composed or
 * decomposed accents) are one buyer for the per-buyer limit, the per-buyer rate limit and Idempotency-Key;
 * ids that are blank or hold invisible characters are refused; an event may take email addresses only.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getJson, purchase, waitDrained, waitFinal } from './helpers/api.js';
import { ADMIN, expectApiError, send } from './helpers/http.js';
import { ADMIN_TOKEN, runCli, startOnsale, tempDir, type Onsale } from './helpers/processes.js';
import { describeEach, exclusion, freshPostgresDatabase } from './helpers/services.js';

interface Event {
  id: string;
  buyerIdKind: string;
  ticketTypes: Array<{ id: string }>;
}

const engines = [
  { name: 'SQLite', excluded: '', database: async () => ({ env: {}, drop: async () => {} }) },
  {
    name: 'PostgreSQL',
    excluded: exclusion('postgres'),
    database: async () => {
      const db = await freshPostgresDatabase();
      return { env: { ONSALE_DATABASE_URL: db.url }, drop: db.drop };
    },
  },
];

describeEach(engines, 'buyer identity on $name', ({ database }) => {
  let onsale: Onsale;
  let drop: () => Promise<void>;
  let base: string;

  beforeAll(async () => {
    const db = await database();
    drop = db.drop;
    onsale = await startOnsale({ env: db.env });
    base = onsale.baseUrl;
  });

  afterAll(async () => {
    await onsale?.stop();
    await drop?.();
  });

  async function newEvent(extra: Record<string, unknown> = {}, maxPerBuyer = 2): Promise<Event> {
    const res = await send(base, 'POST', '/api/events', {
      headers: ADMIN,
      body: JSON.stringify({
        name: 'Identity night',
        ticketTypes: [{ name: 'GA', priceCents: 100, capacity: 100, maxPerBuyer }],
        ...extra,
      }),
    });
    expect(res.status, res.text).toBe(201);
    return res.body as Event;
  }

  const buy = (event: Event, buyerId: string, quantity = 2, headers: Record<string, string> = {}) =>
    purchase(
      base,
      event.id,
      { buyerId, items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity }] },
      headers,
    );

  it('counts every spelling of one buyer against one limit (the 18-ticket reproduction sells 4: 2 each)', async () => {
    const event = await newEvent();
    const alice = [
      'alice@example.com',
      'Alice@Example.com',
      'ALICE@EXAMPLE.COM',
      ' alice@example.com',
      'alice@example.com ',
      'ａｌｉｃｅ@example.com',
      'ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ',
    ];
    const jose = ['jos\u00e9@example.com', 'jose\u0301@example.com'];
    const answers = await Promise.all([...alice, ...jose].map((id) => buy(event, id)));
    for (const a of answers) expect(a.status, JSON.stringify(a.body)).toBe(202);
    const stats = await waitDrained(base, event.id);
    expect(stats.ticketTypes[0].sold).toBe(4);
    const finals = await Promise.all(answers.map((a) => waitFinal(base, a.body.purchaseId)));
    const confirmed = (ids: string[]) =>
      finals.filter((f) => ids.includes(f.buyerId) && f.status === 'confirmed').length;
    expect(confirmed(alice)).toBe(1);
    expect(confirmed(jose)).toBe(1);
    for (const f of finals.filter((f) => f.status !== 'confirmed')) expect(f.reason).toBe('limit_exceeded');
    // Each purchase shows the id as it was typed.
    expect(finals.map((f) => f.buyerId)).toEqual([...alice, ...jose]);
  });

  it('refuses blank ids and ids with control or invisible characters with 400, changing nothing', async () => {
    const event = await newEvent();
    const before = await waitDrained(base, event.id);
    const bad = [
      '   ',
      '\u3000',
      '\u0000',
      '\u202eevil',
      'a\r\nb',
      'tab\there',
      'zero\u200bwidth',
      'line\u2028sep',
      'bom\ufeff',
      '\u2066isolate\u2069',
      'a\u200eb',
    ];
    for (const buyerId of bad) {
      const res = await buy(event, buyerId, 1);
      expectApiError(res, 400, 'invalid_request', JSON.stringify(buyerId));
      expect(res.body.error.message).toContain('buyerId');
    }
    expect(await waitDrained(base, event.id)).toEqual(before);
    expect((await getJson(`${base}/api/events/${event.id}/purchases`, true)).body.purchases).toEqual([]);
  });

  it('keeps buyerIdKind on the event: any by default, email on request, anything else refused', async () => {
    const plain = await newEvent();
    expect(plain.buyerIdKind).toBe('any');
    const emails = await newEvent({ buyerIdKind: 'email' });
    expect(emails.buyerIdKind).toBe('email');
    expect((await getJson(`${base}/api/events/${emails.id}`)).body.buyerIdKind).toBe('email');
    for (const kind of ['phone', '', 'EMAIL', 1, null]) {
      const res = await send(base, 'POST', '/api/events', {
        headers: ADMIN,
        body: JSON.stringify({
          name: 'Bad kind',
          buyerIdKind: kind,
          ticketTypes: [{ name: 'GA', priceCents: 1, capacity: 1 }],
        }),
      });
      expectApiError(res, 400, 'invalid_request', JSON.stringify(kind));
      expect(res.body.error.message).toContain('buyerIdKind');
    }
  });

  it('an email event refuses what is not an email, and keeps what the buyer typed for display', async () => {
    const event = await newEvent({ buyerIdKind: 'email' });
    for (const buyerId of [
      'not-an-email',
      'a@b',
      '@example.com',
      'a@@example.com',
      'a b@example.com',
      'a@.com',
    ]) {
      const res = await buy(event, buyerId, 1);
      expectApiError(res, 400, 'invalid_request', buyerId);
      expect(res.body.error.message).toContain('buyerId');
    }
    // Any id goes on an event that did not ask for emails.
    expect((await buy(await newEvent(), 'not-an-email', 1)).status).toBe(202);

    const typed = ' Bob+Tix@Example.COM ';
    const accepted = await buy(event, typed, 1);
    expect(accepted.status, JSON.stringify(accepted.body)).toBe(202);
    const done = await waitFinal(base, accepted.body.purchaseId);
    expect(done).toMatchObject({ status: 'confirmed', buyerId: typed });
    // The +tag is part of the address: another tag is another buyer.
    expect(
      (await waitFinal(base, (await buy(event, 'bob+other@example.com', 2)).body.purchaseId)).status,
    ).toBe('confirmed');

    // The admin search finds it by any spelling that canonicalizes the same, and shows it as typed.
    for (const q of ['bob+tix@example.com', 'BOB+TIX@EXAMPLE.COM', typed, 'ｂｏｂ+tix@example.com']) {
      const found = await getJson(
        `${base}/api/events/${event.id}/purchases?q=${encodeURIComponent(q)}`,
        true,
      );
      expect(found.status).toBe(200);
      expect(
        found.body.purchases.map((p: any) => [p.purchaseId, p.buyerId]),
        q,
      ).toEqual([[accepted.body.purchaseId, typed]]);
    }
  });

  it('an Idempotency-Key sent with two spellings of one buyer returns the same purchase', async () => {
    const event = await newEvent({}, 4);
    const key = { 'idempotency-key': 'same-buyer-1' };
    const first = await buy(event, 'Carol@Example.com', 1, key);
    expect(first.status).toBe(202);
    const again = await buy(event, '  carol@example.com', 1, key);
    expect([200, 202]).toContain(again.status);
    expect(again.body.purchaseId).toBe(first.body.purchaseId);
    // Same buyer, same key, another body: a conflict.
    expectApiError(await buy(event, 'CAROL@example.com', 2, key), 409, 'idempotency_conflict');
    // The same key for another buyer is another purchase.
    const other = await buy(event, 'dan@example.com', 1, key);
    expect(other.status).toBe(202);
    expect(other.body.purchaseId).not.toBe(first.body.purchaseId);
    await waitDrained(base, event.id);
    const carol = await getJson(`${base}/api/events/${event.id}/purchases?q=carol%40example.com`, true);
    expect(carol.body.purchases.map((p: any) => p.purchaseId)).toEqual([first.body.purchaseId]);
  });

  it('rate-limits a buyer by the canonical id, whatever the spelling', async () => {
    const event = await newEvent({}, 1);
    // The default limit is 10 requests per buyer and event in 10 s, per web server.
    const spellings = Array.from({ length: 14 }, (_, i) =>
      `${' '.repeat(i % 3)}ERIN@example.com`.slice(0, 64),
    );
    const answers = await Promise.all(spellings.map((id, i) => buy(event, i % 2 ? id.toLowerCase() : id, 1)));
    const limited = answers.filter((a) => a.status === 429);
    expect(limited.length).toBeGreaterThanOrEqual(4);
    for (const a of limited) expectApiError(a, 429, 'rate_limited');
  });

  it('the buyer page asks for an email with type=email when the event takes emails only', async () => {
    const emails = await newEvent({ buyerIdKind: 'email' });
    const plain = await newEvent();
    const page = async (id: string) => (await fetch(`${base}/events/${id}`)).text();
    expect(await page(emails.id)).toMatch(/<input\s+id="email"\s+name="buyerId"\s+type="email"/);
    expect(await page(plain.id)).toMatch(/<input\s+id="email"\s+name="buyerId"\s+type="text"/);
  });
});

/** What the schema before buyer identity held: one event and two purchases by two spellings of one buyer. */
const OLD_DATA = `
INSERT INTO events (id, name, sales_open_at, hold_seconds, created_at)
  VALUES ('old-event', 'Old night', '2026-01-01T00:00:00.000Z', 0, '2026-01-01T00:00:00.000Z');
INSERT INTO ticket_types (id, event_id, position, name, price_cents, capacity, max_per_buyer, sold, held)
  VALUES ('old-ga', 'old-event', 0, 'GA', 100, 10, 2, 2, 0);
INSERT INTO purchases (id, event_id, buyer_id, status, reason, items, created_at, updated_at) VALUES
  ('old-p1', 'old-event', 'Old@Example.com', 'confirmed', NULL, '[{"ticketTypeId":"old-ga","quantity":1}]',
   '2026-01-01T00:00:01.000Z', '2026-01-01T00:00:01.000Z'),
  ('old-p2', 'old-event', 'old@example.com ', 'confirmed', NULL, '[{"ticketTypeId":"old-ga","quantity":1}]',
   '2026-01-01T00:00:02.000Z', '2026-01-01T00:00:02.000Z');
INSERT INTO buyer_tickets (event_id, buyer_id, ticket_type_id, quantity) VALUES
  ('old-event', 'Old@Example.com', 'old-ga', 1), ('old-event', 'old@example.com ', 'old-ga', 1);
`;

/**
 * An Idempotency-Key of old-p1 recorded under the id as typed. Its request hash is the one a body with the
 * canonical id makes (a body hashed with another spelling answers 409 after the upgrade, never a second
 * purchase): what is tested is that the key is found under the canonical id.
 */
const OLD_KEY = `
INSERT INTO idempotency_keys (event_id, buyer_id, key, request_hash, purchase_id, created_at) VALUES
  ('old-event', 'Old@Example.com', 'old-key',
   '${createHash('sha256')
     .update(JSON.stringify(['old@example.com', [['old-ga', 1]]]))
     .digest('base64url')}',
   'old-p1', '2026-01-01T00:00:01.000Z');
`;

/** Migrations 0001 and 0002 of the storage and the table queue: the schema before buyer identity. */
const oldMigrations = (engine: 'sqlite' | 'postgres') =>
  (['storage', 'queue'] as const).flatMap((component) =>
    ['0001', '0002'].map((version) => {
      const dir = new URL(`../src/adapters/${engine}/migrations/${component}/`, import.meta.url);
      const name = readdirSync(dir).find((f) => f.startsWith(`${version}_`))!;
      return { component, version: Number(version), name, sql: readFileSync(new URL(name, dir), 'utf8') };
    }),
  );

const upgrades = [
  {
    name: 'SQLite',
    excluded: '',
    database: async () => {
      const dir = tempDir();
      const file = join(dir.path, 'old.db');
      const db = new Database(file);
      db.exec(
        'CREATE TABLE schema_migrations (component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (component, version))',
      );
      for (const m of oldMigrations('sqlite')) {
        db.exec(m.sql);
        db.prepare('INSERT INTO schema_migrations VALUES (?, ?, ?, ?)').run(
          m.component,
          m.version,
          m.name,
          'x',
        );
      }
      db.exec(OLD_DATA);
      db.exec(OLD_KEY);
      db.close();
      return { env: { ONSALE_DATABASE_URL: `sqlite:${file}` }, drop: async () => dir.remove() };
    },
  },
  {
    name: 'PostgreSQL',
    excluded: exclusion('postgres'),
    database: async () => {
      const db = await freshPostgresDatabase();
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      await client.query(
        'CREATE TABLE schema_migrations (component text NOT NULL, version integer NOT NULL, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))',
      );
      for (const m of oldMigrations('postgres')) {
        await client.query(m.sql);
        await client.query('INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)', [
          m.component,
          m.version,
          m.name,
        ]);
      }
      await client.query(OLD_DATA);
      await client.query(OLD_KEY);
      await client.end();
      return { env: { ONSALE_DATABASE_URL: db.url }, drop: db.drop };
    },
  },
];

describeEach(upgrades, 'a $name database made before buyer identity', ({ database }) => {
  it('upgrades: events take any id, old purchases are found by any spelling, old totals count', async () => {
    const db = await database();
    const onsale = await startOnsale({ env: db.env });
    try {
      const base = onsale.baseUrl;
      const event = (await getJson(`${base}/api/events/old-event`)).body;
      expect(event.buyerIdKind).toBe('any');
      // The key recorded under the id as typed is found under another spelling of the same buyer.
      const retry = await purchase(
        base,
        'old-event',
        { buyerId: ' OLD@example.com', items: [{ ticketTypeId: 'old-ga', quantity: 1 }] },
        { 'idempotency-key': 'old-key' },
      );
      expect(retry.status, JSON.stringify(retry.body)).toBe(200);
      expect(retry.body.purchaseId).toBe('old-p1');
      const found = await getJson(`${base}/api/events/old-event/purchases?q=OLD%40example.com`, true);
      expect(found.body.purchases.map((p: any) => [p.purchaseId, p.buyerId])).toEqual([
        ['old-p2', 'old@example.com '],
        ['old-p1', 'Old@Example.com'],
      ]);
      // The two spellings' totals were added together: this buyer has their 2 already.
      const more = await purchase(base, 'old-event', {
        buyerId: 'old@EXAMPLE.com',
        items: [{ ticketTypeId: 'old-ga', quantity: 1 }],
      });
      expect(more.status).toBe(202);
      expect(await waitFinal(base, more.body.purchaseId)).toMatchObject({
        status: 'rejected',
        reason: 'limit_exceeded',
      });
      const other = await purchase(base, 'old-event', {
        buyerId: 'new@example.com',
        items: [{ ticketTypeId: 'old-ga', quantity: 2 }],
      });
      expect((await waitFinal(base, other.body.purchaseId)).status).toBe('confirmed');
    } finally {
      await onsale.stop();
      await db.drop();
    }
  });
});

describe('onsale simulate against an event that takes emails only', () => {
  it('sends email addresses, which are all accepted', async () => {
    const onsale = await startOnsale();
    const dir = tempDir('onsale-identity-simulate-');
    try {
      const created = await send(onsale.baseUrl, 'POST', '/api/events', {
        headers: ADMIN,
        body: JSON.stringify({
          name: 'Emails only',
          buyerIdKind: 'email',
          ticketTypes: [{ name: 'GA', priceCents: 1, capacity: 40, maxPerBuyer: 2 }],
        }),
      });
      expect(created.status).toBe(201);
      const json = join(dir.path, 'report.json');
      const run = runCli(
        [
          'simulate',
          '--url',
          onsale.baseUrl,
          '--event',
          created.body.id,
          '--buyers',
          '60',
          '--report-json',
          json,
        ],
        { ONSALE_ADMIN_TOKEN: ADMIN_TOKEN },
      );
      expect((await run.exited).code, run.output()).toBe(0);
      const report = JSON.parse(readFileSync(json, 'utf8'));
      expect(report.totals.accepted, run.output()).toBe(report.totals.requests);
      expect(report.totals.confirmed).toBeGreaterThan(0);
      const listed = await getJson(`${onsale.baseUrl}/api/events/${created.body.id}/purchases`, true);
      for (const p of listed.body.purchases) expect(p.buyerId).toMatch(/^sim-.*@example\.com$/);
    } finally {
      await onsale.stop();
      dir.remove();
    }
  }, 120_000);
});
