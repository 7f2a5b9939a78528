import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import { openStorage } from '../../src/adapters/index.js';
import {
  ANSWER_TIMEOUT_MS,
  fetchSender,
  playRole,
  politely,
  type Role,
  type Send,
} from '../../src/simulate/checkout.js';
import { checkInvariants, type FinalPurchase, type SentPurchase } from '../../src/simulate/invariants.js';
import { getJson } from './api.js';
import { postJson } from './checkout.js';
import { until } from './processes.js';

const ROLES: Role[] = [
  'pay',
  'pay',
  'pay',
  'pay',
  'decline_then_pay',
  'three_d_secure',
  'cancel',
  'abandon',
  'abandon',
];

const FINAL = ['confirmed', 'rejected', 'expired', 'cancelled'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A request that a killed web server or a database outage may refuse or drop: tried again (with the same
 * Idempotency-Key) until answered. An answer that does not come in ANSWER_TIMEOUT_MS counts as dropped.
 */
async function persist<T extends { status: number }>(
  send: (signal: AbortSignal) => Promise<T>,
  refused: () => void = () => undefined,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await send(AbortSignal.timeout(ANSWER_TIMEOUT_MS));
      if (res.status !== 503 && res.status !== 429) return res;
    } catch (error) {
      if (attempt > 200) throw error;
    }
    refused();
    await sleep(100);
  }
}

export interface CheckoutFlood {
  sent: SentPurchase[];
  roles: Map<string, Role>;
  /** When each held purchase's hold began, as the buyer saw it (holdExpiresAt less the hold's length). */
  heldSince: Map<string, number>;
  /** Requests refused (503, 429) or dropped, and sent again. */
  refused: number;
}

/**
 * `buyers` buyers, one every `spacingMs`, each buying 1 or 2 tickets of one type (70 buyer ids, so some
 * reach the per-buyer limit), following the purchase until it is held and then acting out a role: pay,
 * decline then pay, 3-D Secure approved, cancel, or abandon (the hold expires). With `abandonBefore`, a
 * buyer whose hold began later cancels instead of abandoning, so that the holds the waitlist hands on late
 * do not make the sale last another whole hold.
 */
export async function sendCheckoutFlood(options: {
  baseUrl: string;
  eventId: string;
  ticketTypeId: string;
  holdSeconds: number;
  buyers: number;
  spacingMs: number;
  abandonBefore?: number;
  onAnswer?: (answered: number) => void;
}): Promise<CheckoutFlood> {
  const { baseUrl, ticketTypeId } = options;
  const flood: CheckoutFlood = { sent: [], roles: new Map(), heldSince: new Map(), refused: 0 };
  const retry = <T extends { status: number }>(send: (signal: AbortSignal) => Promise<T>) =>
    persist(send, () => (flood.refused += 1));
  // The roles are played as the simulator plays them, each refusal counted and the request sent again.
  const plain = fetchSender(baseUrl);
  const counted: Send = async (spec) => {
    const answer = await plain(spec);
    if (answer.status === 0 || answer.status === 429 || answer.status === 503) flood.refused += 1;
    return answer;
  };
  const buyerAgent = { send: politely(counted), origin: baseUrl };

  async function buyer(i: number): Promise<void> {
    let role = ROLES[i % ROLES.length]!;
    const buyerId = `buyer-${i % 70}`;
    const quantity = 1 + (i % 2);
    const key = randomUUID();
    const sentAt = performance.now();
    const res = await retry((signal) =>
      postJson(
        `${baseUrl}/api/events/${options.eventId}/purchases`,
        { buyerId, items: [{ ticketTypeId, quantity }] },
        { 'idempotency-key': key },
        signal,
      ),
    );
    flood.sent.push({
      buyerId,
      items: [{ ticketTypeId, quantity }],
      sentAt,
      answeredAt: performance.now(),
      status: res.status,
      purchaseId: res.body?.purchaseId,
      idempotencyKey: key,
    });
    options.onAnswer?.(flood.sent.length);
    if (res.status !== 202 && res.status !== 200) return;
    const id = res.body.purchaseId as string;
    // Follow the purchase: queued, perhaps waitlisted, until held (then act) or final.
    for (;;) {
      const now = await retry((signal) => getJson(`${baseUrl}/api/purchases/${id}`, false, signal));
      if (now.body.status === 'held') {
        const since = Date.parse(now.body.holdExpiresAt) - options.holdSeconds * 1000;
        flood.heldSince.set(id, since);
        if (role === 'abandon' && options.abandonBefore !== undefined && since > options.abandonBefore)
          role = 'cancel';
        break;
      }
      if (FINAL.includes(now.body.status)) {
        flood.roles.set(id, role);
        return;
      }
      await sleep(200);
    }
    flood.roles.set(id, role);
    await playRole(buyerAgent, id, role);
  }

  await Promise.all(
    Array.from({ length: options.buyers }, (_, i) => sleep(i * options.spacingMs).then(() => buyer(i))),
  );
  return flood;
}

type Final = FinalPurchase & { payment: { status: string } | null; refunded: boolean };

/**
 * Waits until every accepted purchase of the flood is final (and no payment still processing), then checks
 * the checkout's promises: every invariant of api.md, nothing left held or waitlisted, the tickets sold
 * those of the confirmed purchases, some expired and some cancelled, and the money by the test provider's
 * own books (its state in the database): every charge a confirmed purchase or refunded, none twice, no
 * abandoned or cancelled purchase confirmed. Returns the final purchases and the event's stats.
 */
export async function expectCheckoutEnded(options: {
  baseUrl: string;
  eventId: string;
  databaseUrl: string;
  maxPerBuyer: number;
  flood: CheckoutFlood;
  timeoutMs: number;
}): Promise<{ finals: Map<string, Final>; stats: any }> {
  const { baseUrl, flood } = options;
  const ids = flood.sent.filter((s) => s.purchaseId).map((s) => s.purchaseId!);
  const finals = new Map<string, Final>();
  const allFinal = async () => {
    for (const id of ids) {
      if (finals.has(id)) continue;
      const res = await persist((signal) => getJson(`${baseUrl}/api/purchases/${id}`, false, signal));
      const settled = res.body.payment?.status !== 'processing';
      // A hold reached by the waitlist after its buyer stopped following: abandoned, it expires.
      if (FINAL.includes(res.body.status) && settled) finals.set(id, res.body);
    }
    return finals.size === ids.length;
  };
  await until(allFinal, options.timeoutMs).catch(async (error: unknown) => {
    const stuck = await Promise.all(
      ids
        .filter((id) => !finals.has(id))
        .map(async (id) => (await getJson(`${baseUrl}/api/purchases/${id}`)).body),
    );
    throw new Error(`${stuck.length} purchases never final: ${JSON.stringify(stuck.slice(0, 5))}`, {
      cause: error,
    });
  });

  const stats = (await getJson(`${baseUrl}/api/events/${options.eventId}/stats`, true)).body;
  const stock = stats.ticketTypes.map((t: any) => ({ ...t, maxPerBuyer: options.maxPerBuyer }));
  expect(checkInvariants({ sent: flood.sent, purchases: finals, stock })).toEqual([]);
  expect(stats.ticketTypes[0].held).toBe(0);
  expect(stats.purchases.held + stats.purchases.waitlisted + stats.purchases.queued).toBe(0);
  const all = [...finals.values()];
  const confirmedTickets = all
    .filter((p) => p.status === 'confirmed')
    .reduce((n, p) => n + p.tickets.length, 0);
  expect(stats.ticketTypes[0].sold).toBe(confirmedTickets);
  expect(all.some((p) => p.status === 'expired')).toBe(true);
  expect(all.some((p) => p.status === 'cancelled')).toBe(true);

  const storage = await openStorage(options.databaseUrl);
  try {
    for (const p of all) {
      const state = await storage.providerState('test', `payment:${p.purchaseId}`);
      const books = state ? (JSON.parse(state.value) as { charges: number; refundId: string | null }) : null;
      const charged = books?.charges ?? 0;
      expect(charged, p.purchaseId).toBeLessThanOrEqual(1);
      if (p.status === 'confirmed') {
        expect(charged, `${p.purchaseId} confirmed unpaid`).toBe(1);
        expect(books!.refundId).toBeNull();
        expect(p.refunded).toBe(false);
      } else if (charged === 1) {
        expect(books!.refundId, `${p.purchaseId} ${p.status} charged, not refunded`).not.toBeNull();
        expect(p.refunded).toBe(true);
      }
      const role = flood.roles.get(p.purchaseId);
      if (role === 'abandon' || role === 'cancel') {
        expect(p.status === 'confirmed', `${p.purchaseId} ${role}`).toBe(false);
      }
    }
    expect(stats.purchases.refunded).toBe(all.filter((p) => p.refunded).length);
  } finally {
    await storage.close();
  }
  return { finals, stats };
}
