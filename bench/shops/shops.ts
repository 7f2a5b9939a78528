import { randomBytes, randomUUID } from 'node:crypto';
import type pg from 'pg';

/**
 * What the open-source ticket shops do, rebuilt small, as the baselines of the whole sale: each sells in one
 * synchronous PostgreSQL transaction per purchase and answers 200 with the tickets, or 409 with the reason.
 * They speak enough of api.md for `onsale simulate` to drive them (create an event, buy, read the stats).
 */

export interface Item {
  ticketTypeId: string;
  quantity: number;
}

export interface EventInput {
  name: string;
  ticketTypes: Array<{ name: string; priceCents: number; capacity: number; maxPerBuyer?: number }>;
}

/** A purchase's outcome: the final purchase (200), or a refusal with api.md's rejection reason (409). */
type Outcome =
  | {
      status: 'confirmed';
      purchaseId: string;
      tickets: Array<{ id: string; ticketTypeId: string; code: string }>;
    }
  | { status: 'rejected'; reason: 'sold_out' | 'insufficient_inventory' | 'limit_exceeded' };

export interface Shop {
  /** Creates what the shop needs for an event (alf.io pre-creates one row per ticket). */
  createTickets: (client: pg.PoolClient, ticketTypeId: string, capacity: number) => Promise<void>;
  /** Sells one purchase in one transaction (the caller has begun it and commits it, or rolls back on refusal). */
  sell: (client: pg.PoolClient, eventId: string, buyerId: string, items: Item[]) => Promise<Outcome>;
  /** Tickets sold per ticket type of the event. */
  soldSql: string;
}

export const SHOP_KINDS = ['advisory-lock', 'skip-locked'] as const;
export type ShopKind = (typeof SHOP_KINDS)[number];

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS events (id text PRIMARY KEY, name text NOT NULL, sales_open_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS ticket_types (
  id text PRIMARY KEY, event_id text NOT NULL REFERENCES events (id), position int NOT NULL, name text NOT NULL,
  price_cents int NOT NULL, capacity int NOT NULL, max_per_buyer int NOT NULL, sold int NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS purchases (
  id text PRIMARY KEY, event_id text NOT NULL, buyer_id text NOT NULL, idempotency_key text,
  items jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  UNIQUE (event_id, buyer_id, idempotency_key)
);
CREATE TABLE IF NOT EXISTS tickets (
  id bigserial PRIMARY KEY, ticket_type_id text NOT NULL, purchase_id text, buyer_id text, code text NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS tickets_buyer ON tickets (buyer_id, ticket_type_id);
CREATE INDEX IF NOT EXISTS tickets_free ON tickets (ticket_type_id, id) WHERE purchase_id IS NULL;
`;

const code = () => randomBytes(12).toString('base64url');

/** The types asked for, with their stock and the buyer's tickets of each so far. */
async function readTypes(client: pg.PoolClient, eventId: string, buyerId: string, items: Item[]) {
  const { rows } = await client.query<{
    id: string;
    capacity: number;
    sold: number;
    max_per_buyer: number;
    mine: string;
  }>(
    `SELECT t.id, t.capacity, t.sold, t.max_per_buyer,
            (SELECT count(*) FROM tickets k WHERE k.buyer_id = $2 AND k.ticket_type_id = t.id) AS mine
       FROM ticket_types t WHERE t.event_id = $1 AND t.id = ANY($3)`,
    [eventId, buyerId, items.map((i) => i.ticketTypeId)],
  );
  return new Map(rows.map((r) => [r.id, { ...r, mine: Number(r.mine) }]));
}

async function record(
  client: pg.PoolClient,
  eventId: string,
  buyerId: string,
  items: Item[],
): Promise<string> {
  const purchaseId = randomUUID();
  await client.query('INSERT INTO purchases (id, event_id, buyer_id, items) VALUES ($1, $2, $3, $4)', [
    purchaseId,
    eventId,
    buyerId,
    JSON.stringify(items),
  ]);
  return purchaseId;
}

/**
 * Hi.Events and older pretix: the whole purchase under a per-event advisory lock (pg_advisory_xact_lock), so
 * purchases of one event run one at a time; check the stock and the buyer's tickets, then insert the tickets
 * and bump the counters. Correct, and as fast as one transaction after another on one lock.
 */
const advisoryLock: Shop = {
  createTickets: async () => undefined,
  soldSql: 'SELECT id, sold FROM ticket_types WHERE event_id = $1',
  sell: async (client, eventId, buyerId, items) => {
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [eventId]);
    const types = await readTypes(client, eventId, buyerId, items);
    for (const i of items) {
      const t = types.get(i.ticketTypeId)!;
      if (t.mine + i.quantity > t.max_per_buyer) return { status: 'rejected', reason: 'limit_exceeded' };
    }
    for (const i of items) {
      const t = types.get(i.ticketTypeId)!;
      if (t.sold + i.quantity > t.capacity)
        return { status: 'rejected', reason: t.sold >= t.capacity ? 'sold_out' : 'insufficient_inventory' };
    }
    const purchaseId = await record(client, eventId, buyerId, items);
    const tickets: Array<{ id: string; ticketTypeId: string; code: string }> = [];
    for (const i of items) {
      await client.query('UPDATE ticket_types SET sold = sold + $2 WHERE id = $1', [
        i.ticketTypeId,
        i.quantity,
      ]);
      const codes = Array.from({ length: i.quantity }, code);
      const { rows } = await client.query<{ id: string }>(
        `INSERT INTO tickets (ticket_type_id, purchase_id, buyer_id, code)
         SELECT $1, $2, $3, unnest($4::text[]) RETURNING id`,
        [i.ticketTypeId, purchaseId, buyerId, codes],
      );
      rows.forEach((r, k) =>
        tickets.push({ id: String(r.id), ticketTypeId: i.ticketTypeId, code: codes[k]! }),
      );
    }
    return { status: 'confirmed', purchaseId, tickets };
  },
};

/**
 * alf.io: one row per ticket made when the event is, and a purchase claims free rows with
 * `SELECT … FOR UPDATE SKIP LOCKED LIMIT n`, so purchases run side by side without waiting on each other's
 * rows. The per-buyer check reads without a lock, as alf.io's does: two purchases of one buyer at the same
 * moment can both pass it (the bench reports whether that happened).
 */
const skipLocked: Shop = {
  createTickets: async (client, ticketTypeId, capacity) => {
    await client.query(
      `INSERT INTO tickets (ticket_type_id, code)
       SELECT $1, md5(random()::text || clock_timestamp()::text || g::text) FROM generate_series(1, $2) g`,
      [ticketTypeId, capacity],
    );
  },
  soldSql: `SELECT t.id, (SELECT count(*) FROM tickets k WHERE k.ticket_type_id = t.id AND k.purchase_id IS NOT NULL)::int AS sold
              FROM ticket_types t WHERE t.event_id = $1`,
  sell: async (client, eventId, buyerId, items) => {
    const types = await readTypes(client, eventId, buyerId, items);
    for (const i of items) {
      const t = types.get(i.ticketTypeId)!;
      if (t.mine + i.quantity > t.max_per_buyer) return { status: 'rejected', reason: 'limit_exceeded' };
    }
    const claimed: Array<{ item: Item; rows: Array<{ id: string; code: string }> }> = [];
    for (const i of items) {
      const { rows } = await client.query<{ id: string; code: string }>(
        `SELECT id, code FROM tickets WHERE ticket_type_id = $1 AND purchase_id IS NULL
          ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED`,
        [i.ticketTypeId, i.quantity],
      );
      if (rows.length < i.quantity)
        return { status: 'rejected', reason: rows.length === 0 ? 'sold_out' : 'insufficient_inventory' };
      claimed.push({ item: i, rows });
    }
    const purchaseId = await record(client, eventId, buyerId, items);
    const ids = claimed.flatMap((c) => c.rows.map((r) => r.id));
    await client.query('UPDATE tickets SET purchase_id = $1, buyer_id = $2 WHERE id = ANY($3)', [
      purchaseId,
      buyerId,
      ids,
    ]);
    return {
      status: 'confirmed',
      purchaseId,
      tickets: claimed.flatMap((c) =>
        c.rows.map((r) => ({ id: String(r.id), ticketTypeId: c.item.ticketTypeId, code: r.code })),
      ),
    };
  },
};

export const SHOPS: Record<ShopKind, Shop> = { 'advisory-lock': advisoryLock, 'skip-locked': skipLocked };
