import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A small in-memory server speaking the part of api.md the simulator uses, with one deliberate fault, so
 * that the simulator's invariant checks can be shown to catch it:
 * - `honest`: no fault (the control: the checks pass against it);
 * - `oversell`: allocates without looking at the stock;
 * - `out_of_order`: waits for a quiet moment, then serves the newest purchases first;
 * - `drop`: answers 202 to one purchase and forgets it;
 * - `no_limit`: ignores maxPerBuyer.
 */
export type Fault = 'honest' | 'oversell' | 'out_of_order' | 'drop' | 'no_limit';

interface Type {
  id: string;
  name: string;
  priceCents: number;
  capacity: number;
  maxPerBuyer: number;
  sold: number;
}
interface Purchase {
  purchaseId: string;
  eventId: string;
  buyerId: string;
  status: string;
  reason: string | null;
  items: Array<{ ticketTypeId: string; quantity: number }>;
  tickets: Array<{ id: string; ticketTypeId: string; code: string }>;
}

export async function startBrokenShop(
  fault: Fault,
  adminToken: string,
): Promise<{ url: string; close: () => Promise<void> }> {
  const events = new Map<string, { id: string; name: string; salesOpenAt: string; types: Type[] }>();
  const purchases = new Map<string, Purchase>();
  const keys = new Map<string, string>();
  const perBuyer = new Map<string, number>();
  let pending: Purchase[] = [];
  let accepted = 0;
  let lastArrival = Date.now();

  function allocate(): void {
    // The out-of-order shop serves only after 200 ms without arrivals, newest first.
    if (fault === 'out_of_order' && Date.now() - lastArrival < 200) return;
    const batch = fault === 'out_of_order' ? pending.reverse() : pending;
    pending = [];
    for (const p of batch) {
      const types = events.get(p.eventId)!.types;
      const lacking = p.items.find((i) => {
        const t = types.find((x) => x.id === i.ticketTypeId)!;
        return fault !== 'oversell' && t.sold + i.quantity > t.capacity;
      });
      const over = p.items.find(
        (i) =>
          fault !== 'no_limit' &&
          (perBuyer.get(`${p.buyerId}/${i.ticketTypeId}`) ?? 0) + i.quantity >
            types.find((x) => x.id === i.ticketTypeId)!.maxPerBuyer,
      );
      if (lacking || over) {
        Object.assign(p, { status: 'rejected', reason: lacking ? 'sold_out' : 'limit_exceeded' });
        continue;
      }
      for (const i of p.items) {
        types.find((x) => x.id === i.ticketTypeId)!.sold += i.quantity;
        const key = `${p.buyerId}/${i.ticketTypeId}`;
        perBuyer.set(key, (perBuyer.get(key) ?? 0) + i.quantity);
        for (let n = 0; n < i.quantity; n++)
          p.tickets.push({ id: randomUUID(), ticketTypeId: i.ticketTypeId, code: randomUUID() });
      }
      p.status = 'confirmed';
    }
  }
  const timer = setInterval(allocate, 50);

  const send = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const eventView = (e: NonNullable<ReturnType<typeof events.get>>) => ({
    id: e.id,
    name: e.name,
    salesOpenAt: e.salesOpenAt,
    holdSeconds: 0,
    ticketTypes: e.types.map(({ sold, ...t }) => ({ ...t, available: Math.max(0, t.capacity - sold) })),
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let raw = '';
    for await (const chunk of req) raw += String(chunk);
    const path = (req.url ?? '').split('?')[0]!;
    const admin = req.headers.authorization === `Bearer ${adminToken}`;
    let m: RegExpExecArray | null;
    if (req.method === 'POST' && path === '/api/events') {
      if (!admin) return send(res, 401, { error: { code: 'unauthorized', message: 'no' } });
      const body = JSON.parse(raw) as { name: string; ticketTypes: Array<Omit<Type, 'id' | 'sold'>> };
      const event = {
        id: randomUUID(),
        name: body.name,
        salesOpenAt: new Date().toISOString(),
        types: body.ticketTypes.map((t) => ({
          ...t,
          maxPerBuyer: t.maxPerBuyer ?? 10,
          id: randomUUID(),
          sold: 0,
        })),
      };
      events.set(event.id, event);
      return send(res, 201, eventView(event));
    }
    if ((m = /^\/api\/events\/([^/]+)(\/stats|\/purchases)?$/.exec(path))) {
      const event = events.get(m[1]!);
      if (!event) return send(res, 404, { error: { code: 'not_found', message: 'no such event' } });
      if (req.method === 'GET' && !m[2]) return send(res, 200, eventView(event));
      if (req.method === 'GET' && m[2] === '/stats') {
        const mine = [...purchases.values()].filter((p) => p.eventId === event.id);
        const count = (s: string) => mine.filter((p) => p.status === s).length;
        return send(res, 200, {
          eventId: event.id,
          ticketTypes: event.types.map((t) => ({
            id: t.id,
            capacity: t.capacity,
            sold: t.sold,
            held: 0,
            available: t.capacity - t.sold,
          })),
          purchases: { queued: count('queued'), confirmed: count('confirmed'), rejected: count('rejected') },
        });
      }
      if (req.method === 'POST' && m[2] === '/purchases') {
        const body = JSON.parse(raw) as Pick<Purchase, 'buyerId' | 'items'>;
        const key = `${event.id}/${body.buyerId}/${String(req.headers['idempotency-key'])}`;
        const known = keys.get(key);
        if (known)
          return send(res, 200, {
            purchaseId: known,
            status: 'queued',
            statusUrl: `/api/purchases/${known}`,
          });
        const p: Purchase = {
          purchaseId: randomUUID(),
          eventId: event.id,
          buyerId: body.buyerId,
          status: 'queued',
          reason: null,
          items: body.items,
          tickets: [],
        };
        keys.set(key, p.purchaseId);
        lastArrival = Date.now();
        // The dropping shop forgets its third purchase, after answering 202.
        if (!(fault === 'drop' && ++accepted === 3)) {
          purchases.set(p.purchaseId, p);
          pending.push(p);
        }
        return send(res, 202, {
          purchaseId: p.purchaseId,
          status: 'queued',
          statusUrl: `/api/purchases/${p.purchaseId}`,
        });
      }
    }
    if (req.method === 'GET' && (m = /^\/api\/purchases\/([^/]+)$/.exec(path))) {
      const p = purchases.get(m[1]!);
      if (!p) return send(res, 404, { error: { code: 'not_found', message: 'no such purchase' } });
      return send(res, 200, p);
    }
    send(res, 404, { error: { code: 'not_found', message: 'no such route' } });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) =>
      send(res, 500, { error: { code: 'bug', message: String(error) } }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      clearInterval(timer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
