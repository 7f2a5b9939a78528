import type { PurchaseItem } from '../../src/domain/types.js';
import { rng, type Intent } from '../../src/simulate/crowd.js';
import type { SentPurchase } from '../../src/simulate/invariants.js';
import { purchase } from './api.js';

/**
 * A crowd of `count` purchase requests from `buyers` buyers (so many buyers come back), each asking for one
 * or two ticket types, with quantities up to the type's limit. No buyer sends more than `perBuyer` requests,
 * so an honest crowd stays under the default per-buyer rate limit.
 */
export function makeCrowd(opts: {
  count: number;
  buyers: number;
  types: Array<{ id: string; maxPerBuyer: number }>;
  seed: number;
  perBuyer?: number;
  buyerPrefix?: string;
}): Intent[] {
  const random = rng(opts.seed);
  const sent = new Map<number, number>();
  const intents: Intent[] = [];
  const perBuyer = opts.perBuyer ?? 5;
  while (intents.length < opts.count) {
    const b = Math.floor(random() * opts.buyers);
    if ((sent.get(b) ?? 0) >= perBuyer) continue;
    sent.set(b, (sent.get(b) ?? 0) + 1);
    const first = opts.types[Math.floor(random() * opts.types.length)]!;
    const picked = [first];
    if (random() < 0.3) {
      const second = opts.types[Math.floor(random() * opts.types.length)]!;
      if (second.id !== first.id) picked.push(second);
    }
    intents.push({
      buyerId: `${opts.buyerPrefix ?? 'buyer'}-${b}@example.com`,
      items: picked.map((t) => ({
        ticketTypeId: t.id,
        quantity: 1 + Math.floor(random() * Math.min(4, t.maxPerBuyer)),
      })),
    });
  }
  return intents;
}

/** One purchase sent while a server is down: its answer's status, Retry-After, and how long it took. */
export interface ProbeAnswer {
  status: number;
  retryAfter: string | null;
  ms: number;
}

/**
 * Sends `count` purchases (`probe-0`, `probe-1`, …) one after the other, as a fault test does while a server
 * is down, and adds each to `sent` so that the invariants count them too.
 */
export async function probePurchases(
  baseUrl: string,
  eventId: string,
  items: PurchaseItem[],
  count: number,
  sent: SentPurchase[],
): Promise<ProbeAnswer[]> {
  const answers: ProbeAnswer[] = [];
  for (let i = 0; i < count; i++) {
    const sentAt = performance.now();
    const answer = await purchase(baseUrl, eventId, { buyerId: `probe-${i}`, items });
    const answeredAt = performance.now();
    answers.push({
      status: answer.status,
      retryAfter: answer.headers.get('retry-after'),
      ms: answeredAt - sentAt,
    });
    sent.push({
      buyerId: `probe-${i}`,
      items,
      sentAt,
      answeredAt,
      status: answer.status,
      ...(typeof answer.body?.purchaseId === 'string' ? { purchaseId: answer.body.purchaseId } : {}),
    });
  }
  return answers;
}
