import { ADMIN_TOKEN } from './processes.js';

interface EventInput {
  name?: string;
  salesOpenAt?: string;
  holdSeconds?: number;
  ticketTypes?: Array<{ name: string; priceCents: number; capacity: number; maxPerBuyer?: number }>;
}

export interface CreatedEvent {
  id: string;
  name: string;
  salesOpenAt: string;
  holdSeconds: number;
  ticketTypes: Array<{ id: string; name: string; capacity: number; maxPerBuyer: number; available: number }>;
}

export async function createEvent(baseUrl: string, input: EventInput = {}): Promise<CreatedEvent> {
  const res = await fetch(`${baseUrl}/api/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` },
    body: JSON.stringify({
      name: input.name ?? 'Test night',
      ...(input.salesOpenAt ? { salesOpenAt: input.salesOpenAt } : {}),
      ...(input.holdSeconds !== undefined ? { holdSeconds: input.holdSeconds } : {}),
      ticketTypes: input.ticketTypes ?? [{ name: 'GA', priceCents: 1000, capacity: 100, maxPerBuyer: 4 }],
    }),
  });
  if (res.status !== 201) throw new Error(`createEvent: ${res.status} ${await res.text()}`);
  return (await res.json()) as CreatedEvent;
}

export async function purchase(
  baseUrl: string,
  eventId: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(`${baseUrl}/api/events/${eventId}/purchases`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json(), headers: res.headers };
}

export async function getJson(
  url: string,
  admin = false,
  signal?: AbortSignal,
): Promise<{ status: number; body: any }> {
  const res = await fetch(url, {
    ...(admin ? { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } } : {}),
    ...(signal ? { signal } : {}),
  });
  return { status: res.status, body: await res.json() };
}

/** Polls the purchase until its status is final (or throws after `timeoutMs`). */
export async function waitFinal(baseUrl: string, purchaseId: string, timeoutMs = 30_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { status, body } = await getJson(`${baseUrl}/api/purchases/${purchaseId}`);
    if (status === 200 && !['queued', 'held'].includes(body.status)) return body;
    if (Date.now() > deadline) throw new Error(`purchase ${purchaseId} not final: ${JSON.stringify(body)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Polls admin stats until nothing of the event is queued. */
export async function waitDrained(baseUrl: string, eventId: string, timeoutMs = 60_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { status, body } = await getJson(`${baseUrl}/api/events/${eventId}/stats`, true);
    if (status === 200 && body.purchases.queued === 0) return body;
    if (Date.now() > deadline)
      throw new Error(`event ${eventId} still has queued purchases: ${JSON.stringify(body)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
