import type { FinalPurchase, ItemView, SentPurchase, StockView } from './invariants.js';

/** One buyer's request in a crowd: who, what, and optionally an Idempotency-Key. */
export interface Intent {
  buyerId: string;
  items: ItemView[];
  idempotencyKey?: string;
}

/**
 * Sends `intents` to the purchase endpoint with at most `concurrency` requests in flight, recording what each
 * client saw. A request that fails at the network level (a server killed mid-request) is recorded with
 * status 0: it was never acknowledged, so nothing is owed for it.
 */
export async function sendCrowd(opts: {
  baseUrl: string;
  eventId: string;
  intents: readonly Intent[];
  concurrency: number;
  onAnswer?: (record: SentPurchase) => void;
}): Promise<SentPurchase[]> {
  const records: SentPurchase[] = [];
  let next = 0;
  const url = `${opts.baseUrl}/api/events/${opts.eventId}/purchases`;
  async function lane(): Promise<void> {
    while (next < opts.intents.length) {
      const intent = opts.intents[next++]!;
      const sentAt = performance.now();
      let status: number;
      let purchaseId: string | undefined;
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            ...(intent.idempotencyKey ? { 'idempotency-key': intent.idempotencyKey } : {}),
          },
          body: JSON.stringify({ buyerId: intent.buyerId, items: intent.items }),
        });
        status = res.status;
        const body = (await res.json()) as { purchaseId?: string };
        purchaseId = body.purchaseId;
      } catch {
        status = 0;
      }
      const record: SentPurchase = {
        buyerId: intent.buyerId,
        items: intent.items,
        sentAt,
        answeredAt: performance.now(),
        status,
        ...(purchaseId ? { purchaseId } : {}),
      };
      records.push(record);
      opts.onAnswer?.(record);
    }
  }
  await Promise.all(Array.from({ length: opts.concurrency }, lane));
  return records;
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
      const res = await fetch(`${opts.baseUrl}/api/purchases/${id}`);
      purchases.set(id, res.status === 200 ? ((await res.json()) as FinalPurchase) : null);
    }
  }
  await Promise.all(Array.from({ length: opts.concurrency ?? 32 }, lane));
  const auth = { headers: { authorization: `Bearer ${opts.adminToken}` } };
  const [statsRes, eventRes] = await Promise.all([
    fetch(`${opts.baseUrl}/api/events/${opts.eventId}/stats`, auth),
    fetch(`${opts.baseUrl}/api/events/${opts.eventId}`),
  ]);
  const stats = (await statsRes.json()) as { ticketTypes: Array<Omit<StockView, 'maxPerBuyer'>> };
  const event = (await eventRes.json()) as { ticketTypes: Array<{ id: string; maxPerBuyer: number }> };
  const stock = stats.ticketTypes.map((t) => ({
    ...t,
    maxPerBuyer: event.ticketTypes.find((e) => e.id === t.id)?.maxPerBuyer ?? Infinity,
  }));
  return { purchases, stock, stats };
}
