import { requests, type RequestSpec } from '../client/index.js';
import type { FinalPurchase, ItemView, SentPurchase, StockView } from './invariants.js';

/** Sends a request of onsale/client's builders to the server at `baseUrl` with fetch. */
function send(baseUrl: string, spec: RequestSpec): Promise<Response> {
  return fetch(`${baseUrl}${spec.path}`, {
    method: spec.method,
    headers: spec.headers,
    ...(spec.body === undefined ? {} : { body: spec.body }),
  });
}

/** One buyer's request in a crowd: who, what, and optionally an Idempotency-Key. */
export interface Intent {
  buyerId: string;
  items: ItemView[];
  idempotencyKey?: string;
}

/** Sends `intents` to the purchase endpoint with at most `concurrency` requests in flight (sendPurchase). */
export async function sendCrowd(opts: {
  baseUrl: string;
  eventId: string;
  intents: readonly Intent[];
  concurrency: number;
  onAnswer?: (record: SentPurchase) => void;
}): Promise<SentPurchase[]> {
  const records: SentPurchase[] = [];
  let next = 0;
  async function lane(): Promise<void> {
    while (next < opts.intents.length) {
      const record = await sendPurchase(opts.baseUrl, opts.eventId, opts.intents[next++]!);
      records.push(record);
      opts.onAnswer?.(record);
    }
  }
  await Promise.all(Array.from({ length: opts.concurrency }, lane));
  return records;
}

/**
 * Sends one purchase to the event `eventId` of the server at `baseUrl` and records what the client saw. A
 * request that fails at the network level (a server killed mid-request) is recorded with status 0: it was
 * never acknowledged, so nothing is owed for it.
 */
export async function sendPurchase(baseUrl: string, eventId: string, intent: Intent): Promise<SentPurchase> {
  const sentAt = performance.now();
  let status: number;
  let purchaseId: string | undefined;
  let failure: string | undefined;
  try {
    const spec = requests.purchase(
      eventId,
      { buyerId: intent.buyerId, items: intent.items },
      intent.idempotencyKey ? { idempotencyKey: intent.idempotencyKey } : {},
    );
    const res = await send(baseUrl, spec);
    status = res.status;
    const text = await res.text();
    try {
      purchaseId = (JSON.parse(text) as { purchaseId?: string }).purchaseId;
    } catch {
      failure = `HTTP ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`;
      status = 0;
    }
  } catch (error) {
    status = 0;
    failure = error instanceof Error ? `${error.message}${causeOf(error)}` : String(error);
  }
  return {
    buyerId: intent.buyerId,
    items: intent.items,
    sentAt,
    answeredAt: performance.now(),
    status,
    ...(purchaseId ? { purchaseId } : {}),
    ...(intent.idempotencyKey ? { idempotencyKey: intent.idempotencyKey } : {}),
    ...(failure ? { failure } : {}),
  };
}

/** The cause a fetch error carries (the socket's error), as ": cause". */
function causeOf(error: Error): string {
  const cause = (error as { cause?: unknown }).cause;
  return cause instanceof Error ? `: ${cause.message}` : '';
}

/**
 * A GET that is tried again when the connection drops before an answer: a balancer may hand a kept-alive
 * connection to a server that is just being restarted. A read changes nothing, so asking again is safe; an
 * answer, whatever its status, is never asked again.
 */
async function readAgainOnReset(baseUrl: string, spec: RequestSpec, attempts = 3): Promise<Response> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await send(baseUrl, spec);
    } catch (error) {
      if (attempt >= attempts) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
    }
  }
}

/** Reads the final state of every accepted purchase and the event's stock, for checkInvariants. */
export async function observe(opts: {
  baseUrl: string;
  eventId: string;
  adminToken: string;
  sent: readonly SentPurchase[];
  concurrency?: number;
}): Promise<{ purchases: Map<string, FinalPurchase | null>; stock: StockView[]; stats: unknown }> {
  const ids = [...new Set(opts.sent.map((r) => r.purchaseId).filter((id): id is string => !!id))];
  const purchases = new Map<string, FinalPurchase | null>();
  let next = 0;
  async function lane(): Promise<void> {
    while (next < ids.length) {
      const id = ids[next++]!;
      const res = await readAgainOnReset(opts.baseUrl, requests.getPurchase(id));
      purchases.set(id, res.status === 200 ? ((await res.json()) as FinalPurchase) : null);
    }
  }
  await Promise.all(Array.from({ length: opts.concurrency ?? 32 }, lane));
  const { stock, stats } = await readStock(opts.baseUrl, opts.eventId, opts.adminToken);
  return { purchases, stock, stats };
}

/** The event's stock as checkInvariants wants it: admin stats, with each type's maxPerBuyer from the event. */
export async function readStock(
  baseUrl: string,
  eventId: string,
  adminToken: string,
): Promise<{ stock: StockView[]; stats: unknown }> {
  // A server restarting or briefly unavailable (503) is waited for, a minute at most, as the buyers are:
  // the whole run's records would be lost for want of this last read.
  const deadline = Date.now() + 60_000;
  let statsRes: Response;
  let eventRes: Response;
  for (;;) {
    try {
      [statsRes, eventRes] = await Promise.all([
        send(baseUrl, requests.eventStats(eventId, adminToken)),
        send(baseUrl, requests.getEvent(eventId)),
      ]);
      const transient = [statsRes.status, eventRes.status].some((s) => s === 502 || s === 503);
      if (!transient || Date.now() > deadline) break;
      await Promise.all([statsRes.body?.cancel(), eventRes.body?.cancel()]);
    } catch (error) {
      if (Date.now() > deadline) throw error;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  if (statsRes.status !== 200 || eventRes.status !== 200) {
    throw new Error(
      `could not read event ${eventId}: stats answered ${statsRes.status}, the event ${eventRes.status}`,
    );
  }
  const stats = (await statsRes.json()) as { ticketTypes: Array<Omit<StockView, 'maxPerBuyer'>> };
  const event = (await eventRes.json()) as { ticketTypes: Array<{ id: string; maxPerBuyer: number }> };
  const stock = stats.ticketTypes.map((t) => ({
    ...t,
    maxPerBuyer: event.ticketTypes.find((e) => e.id === t.id)?.maxPerBuyer ?? Infinity,
  }));
  return { stock, stats };
}

/** A deterministic pseudo-random generator (mulberry32), so a crowd can be replayed from its seed. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** How buyers arrive: all at the opening second, a ramp whose rate grows over the duration, or three waves. */
export const ARRIVALS = ['burst', 'ramp', 'waves'] as const;
export type Arrival = (typeof ARRIVALS)[number];

/** A request of the simulator's crowd: an Intent with its Idempotency-Key and when it is due. */
export interface PlannedRequest extends Intent {
  idempotencyKey: string;
  /** Milliseconds after the opening. */
  at: number;
}

/**
 * The simulator's crowd: `buyers` distinct buyers, each asking for one ticket type (sometimes two) with a
 * quantity of 1..`maxQuantity`; a fraction `repeat` of them come back with a second request (its own key), as
 * real buyers do in another tab, which is what the per-buyer limit is for. Sorted by due time.
 */
export function planCrowd(opts: {
  buyers: number;
  repeat: number;
  types: ReadonlyArray<{ id: string; maxPerBuyer: number }>;
  maxQuantity: number;
  arrival: Arrival;
  durationMs: number;
  seed: number;
  buyerPrefix: string;
  /** When set, buyer ids are email addresses at this domain. */
  buyerDomain?: string;
}): PlannedRequest[] {
  const random = rng(opts.seed);
  const waves = 3;
  const due = (i: number): number => {
    if (opts.arrival === 'burst') return 0;
    const u = i / opts.buyers;
    // A ramp: the arrival rate grows linearly, so the number arrived grows with the square of time.
    if (opts.arrival === 'ramp') return opts.durationMs * Math.sqrt(u);
    return (Math.floor(u * waves) * opts.durationMs) / waves;
  };
  const items = () => {
    const first = opts.types[Math.floor(random() * opts.types.length)]!;
    const picked = [first];
    if (random() < 0.2) {
      const second = opts.types[Math.floor(random() * opts.types.length)]!;
      if (second.id !== first.id) picked.push(second);
    }
    return picked.map((t) => ({
      ticketTypeId: t.id,
      quantity: 1 + Math.floor(random() * Math.min(opts.maxQuantity, t.maxPerBuyer)),
    }));
  };
  const plan: PlannedRequest[] = [];
  for (let i = 0; i < opts.buyers; i++) {
    const buyerId = `${opts.buyerPrefix}-${i}${opts.buyerDomain ? `@${opts.buyerDomain}` : ''}`;
    const at = due(i);
    plan.push({ buyerId, items: items(), idempotencyKey: `${buyerId}-1`, at });
    // The second try comes up to two seconds later (within the duration, if there is one).
    if (random() < opts.repeat) {
      const later = at + random() * Math.max(2000, opts.durationMs / 10);
      plan.push({ buyerId, items: items(), idempotencyKey: `${buyerId}-2`, at: later });
    }
  }
  return plan.sort((a, b) => a.at - b.at);
}
