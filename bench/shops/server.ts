/**
 * A baseline shop of the bench as an HTTP server (plain node:http, like the PHP and Java shops it stands for,
 * a process per CPU sharing the port through node:cluster, as `onsale start` runs its web servers):
 *   node build/bench/shops/server.js KIND PORT DATABASE_URL ADMIN_TOKEN [PROCESSES]
 * KIND is advisory-lock or skip-locked (shops.ts). The database should be empty; the schema is created at start.
 */
import cluster from 'node:cluster';
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import pg from 'pg';
import { SCHEMA, SHOP_KINDS, SHOPS, type EventInput, type Item, type Shop, type ShopKind } from './shops.js';

/** Connections per process: the PostgreSQL server is shared, and one lock serialises the sale anyway. */
const POOL_SIZE = 8;

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  let raw = '';
  for await (const chunk of req) raw += String(chunk);
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    throw new HttpError(400, 'invalid_request', 'malformed JSON');
  }
}

async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

async function eventView(pool: pg.Pool, shop: Shop, eventId: string) {
  const { rows: events } = await pool.query<{ id: string; name: string; sales_open_at: Date }>(
    'SELECT id, name, sales_open_at FROM events WHERE id = $1',
    [eventId],
  );
  if (events.length === 0) throw new HttpError(404, 'not_found', 'no such event');
  const { rows: types } = await pool.query<{
    id: string;
    name: string;
    price_cents: number;
    capacity: number;
    max_per_buyer: number;
  }>(
    'SELECT id, name, price_cents, capacity, max_per_buyer FROM ticket_types WHERE event_id = $1 ORDER BY position',
    [eventId],
  );
  const { rows: sold } = await pool.query<{ id: string; sold: number }>(shop.soldSql, [eventId]);
  const soldOf = (id: string) => Number(sold.find((s) => s.id === id)?.sold ?? 0);
  return {
    id: events[0]!.id,
    name: events[0]!.name,
    salesOpenAt: events[0]!.sales_open_at.toISOString(),
    holdSeconds: 0,
    ticketTypes: types.map((t) => ({
      id: t.id,
      name: t.name,
      priceCents: t.price_cents,
      capacity: t.capacity,
      maxPerBuyer: t.max_per_buyer,
      available: t.capacity - soldOf(t.id),
      sold: soldOf(t.id),
    })),
  };
}

async function route(
  pool: pg.Pool,
  shop: Shop,
  adminToken: string,
  req: IncomingMessage,
  res: ServerResponse,
) {
  const path = (req.url ?? '/').split('?')[0]!;
  const admin = req.headers.authorization === `Bearer ${adminToken}`;
  let m: RegExpExecArray | null;
  if (req.method === 'GET' && path === '/healthz') return send(res, 200, { status: 'ok' });
  if (req.method === 'POST' && path === '/api/events') {
    if (!admin) throw new HttpError(401, 'unauthorized', 'admin token required');
    const input = (await readJson(req)) as EventInput;
    if (!input?.name || !Array.isArray(input.ticketTypes) || input.ticketTypes.length === 0)
      throw new HttpError(400, 'invalid_request', 'name and ticketTypes are required');
    const eventId = randomUUID();
    await inTransaction(pool, async (client) => {
      await client.query('INSERT INTO events (id, name) VALUES ($1, $2)', [eventId, input.name]);
      for (const [position, t] of input.ticketTypes.entries()) {
        const id = randomUUID();
        await client.query(
          `INSERT INTO ticket_types (id, event_id, position, name, price_cents, capacity, max_per_buyer)
           VALUES ($1, $2, $3, $4, $5, $6, $7)`,
          [id, eventId, position, t.name, t.priceCents, t.capacity, t.maxPerBuyer ?? 10],
        );
        await shop.createTickets(client, id, t.capacity);
      }
    });
    const { ticketTypes, ...event } = await eventView(pool, shop, eventId);
    return send(res, 201, { ...event, ticketTypes: ticketTypes.map(({ sold: _sold, ...t }) => t) });
  }
  if ((m = /^\/api\/events\/([^/]+)(\/stats|\/purchases)?$/.exec(path))) {
    const eventId = decodeURIComponent(m[1]!);
    if (req.method === 'GET' && !m[2]) {
      const { ticketTypes, ...event } = await eventView(pool, shop, eventId);
      return send(res, 200, { ...event, ticketTypes: ticketTypes.map(({ sold: _sold, ...t }) => t) });
    }
    if (req.method === 'GET' && m[2] === '/stats') {
      if (!admin) throw new HttpError(401, 'unauthorized', 'admin token required');
      const event = await eventView(pool, shop, eventId);
      const { rows } = await pool.query<{ n: string }>(
        'SELECT count(*) AS n FROM purchases WHERE event_id = $1',
        [eventId],
      );
      return send(res, 200, {
        eventId,
        ticketTypes: event.ticketTypes.map((t) => ({
          id: t.id,
          capacity: t.capacity,
          sold: t.sold,
          held: 0,
          available: t.available,
        })),
        purchases: { queued: 0, held: 0, confirmed: Number(rows[0]!.n) },
      });
    }
    if (req.method === 'POST' && m[2] === '/purchases') {
      const body = (await readJson(req)) as { buyerId?: unknown; items?: unknown };
      const items = body?.items as Item[] | undefined;
      if (
        typeof body?.buyerId !== 'string' ||
        !Array.isArray(items) ||
        items.length === 0 ||
        items.some(
          (i) => typeof i?.ticketTypeId !== 'string' || !Number.isInteger(i.quantity) || i.quantity < 1,
        )
      )
        throw new HttpError(400, 'invalid_request', 'buyerId and items are required');
      const buyerId = body.buyerId;
      // A refusal rolls the transaction back: nothing of it stays.
      const outcome = await inTransaction(pool, async (client) => {
        const o = await shop.sell(client, eventId, buyerId, items);
        if (o.status === 'rejected') throw o;
        return o;
      }).catch((error: unknown) => {
        if ((error as { status?: string }).status === 'rejected')
          return error as { status: 'rejected'; reason: string };
        throw error;
      });
      if (outcome.status === 'rejected')
        throw new HttpError(409, outcome.reason, `the purchase was refused: ${outcome.reason}`);
      return send(res, 200, {
        purchaseId: outcome.purchaseId,
        eventId,
        buyerId,
        status: 'confirmed',
        reason: null,
        items,
        tickets: outcome.tickets,
      });
    }
  }
  throw new HttpError(404, 'not_found', 'no such route');
}

async function serve(kind: ShopKind, port: number, databaseUrl: string, adminToken: string): Promise<void> {
  process.title = `onsale-bench-shop-${kind}`;
  const pool = new pg.Pool({ connectionString: databaseUrl, max: POOL_SIZE });
  const shop = SHOPS[kind];
  const server = createServer((req, res) => {
    route(pool, shop, adminToken, req, res).catch((error: unknown) => {
      if (error instanceof HttpError)
        send(res, error.status, { error: { code: error.code, message: error.message } });
      else send(res, 500, { error: { code: 'internal', message: String(error) } });
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const stop = () => server.close(() => void pool.end().then(() => process.exit(0)));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

async function main(): Promise<void> {
  const [kind, portText, databaseUrl, adminToken, processesText] = process.argv.slice(2);
  const port = Number(portText);
  const processes = Number(processesText ?? '1');
  if (
    !(SHOP_KINDS as readonly string[]).includes(kind ?? '') ||
    !Number.isInteger(port) ||
    !databaseUrl ||
    !adminToken ||
    !Number.isInteger(processes) ||
    processes < 1
  ) {
    process.stderr.write(
      `usage: server.js ${SHOP_KINDS.join('|')} PORT DATABASE_URL ADMIN_TOKEN [PROCESSES]\n`,
    );
    process.exit(2);
  }
  if (cluster.isPrimary) {
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    await client.query(SCHEMA);
    await client.end();
    if (processes === 1) return serve(kind as ShopKind, port, databaseUrl, adminToken);
    process.title = `onsale-bench-shop-${kind}`;
    for (let i = 0; i < processes; i++) cluster.fork();
    const stop = () => {
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
      setTimeout(() => process.exit(0), 2000).unref();
      cluster.on('exit', () => {
        if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
      });
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    return;
  }
  await serve(kind as ShopKind, port, databaseUrl, adminToken);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
