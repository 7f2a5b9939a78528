import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEvent, getJson, purchase, type CreatedEvent } from './helpers/api.js';
import {
  cancel,
  CHECKOUT_ENV,
  deliverWebhook,
  pay,
  postJson,
  signedWebhook,
  threeDSecure,
  waitAllocated,
  waitPurchase,
} from './helpers/checkout.js';
import { LOOPBACK_EXEMPT, startOnsale, type Onsale } from './helpers/processes.js';

/** Holds and payment through the HTTP API of a real server (SQLite, one web server, one worker). */
describe('checkout over HTTP', () => {
  let onsale: Onsale;
  let base: string;

  beforeAll(async () => {
    onsale = await startOnsale({ env: { ...CHECKOUT_ENV, ...LOOPBACK_EXEMPT, ONSALE_BUYER_RATE: 'off' } });
    base = onsale.baseUrl;
  }, 60_000);
  afterAll(async () => onsale?.stop());

  async function heldEvent(capacity = 20, holdSeconds = 300): Promise<CreatedEvent> {
    return createEvent(base, {
      name: 'Paid night',
      holdSeconds,
      ticketTypes: [{ name: 'GA', priceCents: 2500, capacity, maxPerBuyer: 4 }],
    });
  }

  async function buy(event: CreatedEvent, quantity = 2, buyerId = `b-${randomUUID()}`): Promise<any> {
    const res = await purchase(base, event.id, {
      buyerId,
      items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity }],
    });
    expect(res.status).toBe(202);
    return waitAllocated(base, res.body.purchaseId);
  }

  const stats = async (eventId: string) => (await getJson(`${base}/api/events/${eventId}/stats`, true)).body;

  it('holds, then confirms with tickets on tok_visa, and answers a second payment the same without charging', async () => {
    const event = await heldEvent();
    const held = await buy(event);
    expect(held.status).toBe('held');
    expect(held.tickets).toEqual([]);
    expect(held.payment).toBeNull();
    expect(held.refunded).toBe(false);
    expect(Date.parse(held.holdExpiresAt) - Date.parse(held.createdAt)).toBeGreaterThan(290_000);
    expect((await stats(event.id)).ticketTypes[0]).toMatchObject({ sold: 0, held: 2, available: 18 });

    const paid = await pay(base, held.purchaseId, 'tok_visa');
    expect(paid.status).toBe(200);
    expect(paid.body.status).toBe('confirmed');
    expect(paid.body.tickets).toHaveLength(2);
    expect(paid.body.payment).toEqual({ status: 'succeeded', nextActionUrl: null });
    const again = await pay(base, held.purchaseId, 'tok_chargeDeclined');
    expect(again.status).toBe(200);
    expect(again.body.tickets).toEqual(paid.body.tickets);
    const s = await stats(event.id);
    expect(s.ticketTypes[0]).toMatchObject({ sold: 2, held: 0, available: 18 });
    expect(s.purchases).toMatchObject({ confirmed: 1, held: 0, refunded: 0, waitlisted: 0 });
  });

  it('answers a declined card with 402 and nothing charged, and takes another card after', async () => {
    const event = await heldEvent();
    const held = await buy(event);
    const declined = await pay(base, held.purchaseId, 'tok_chargeDeclined');
    expect(declined.status).toBe(402);
    expect(declined.body.error.code).toBe('payment_declined');
    const after = (await getJson(`${base}/api/purchases/${held.purchaseId}`)).body;
    expect(after.status).toBe('held');
    expect(after.payment.status).toBe('declined');
    // A token the test provider does not know is declined the same way, not a 500.
    expect((await pay(base, held.purchaseId, 'tok_unknown')).status).toBe(402);
    const paid = await pay(base, held.purchaseId, 'tok_visa');
    expect([paid.status, paid.body.status]).toEqual([200, 'confirmed']);

    // The admin's view of its payment history: every attempt recorded before its answer.
    const url = `${base}/api/purchases/${held.purchaseId}/payments`;
    expect((await getJson(url)).status).toBe(401);
    const history = (await getJson(url, true)).body;
    expect(history.history.map((h: any) => h.kind)).toEqual([
      'attempt',
      'declined',
      'attempt',
      'declined',
      'attempt',
      'succeeded',
    ]);
  });

  it('takes 3-D Secure through its page and a signed webhook', async () => {
    const event = await heldEvent();
    const held = await buy(event);
    const started = await pay(base, held.purchaseId, 'tok_threeDSecure');
    expect(started.status).toBe(202);
    expect(started.body.status).toBe('held');
    expect(started.body.payment.status).toBe('requires_action');
    const url = started.body.payment.nextActionUrl as string;
    expect(url).toBe(`/payments/test/3ds/${held.purchaseId}`);
    const page = await fetch(`${base}${url}`);
    const text = await page.text();
    expect(page.status).toBe(200);
    expect(text).toContain('Approve');
    expect(text).toContain('Fail');
    expect(text).toMatch(/test mode/i);

    expect(await threeDSecure(base, held.purchaseId, 'approve')).toBe(303);
    const confirmed = (await getJson(`${base}/api/purchases/${held.purchaseId}`)).body;
    expect(confirmed.status).toBe('confirmed');
    expect(confirmed.tickets).toHaveLength(2);

    // Failing 3-D Secure leaves the hold, payable with another card.
    const other = await buy(event);
    await pay(base, other.purchaseId, 'tok_threeDSecure');
    expect(await threeDSecure(base, other.purchaseId, 'fail')).toBe(303);
    const failed = (await getJson(`${base}/api/purchases/${other.purchaseId}`)).body;
    expect([failed.status, failed.payment.status]).toEqual(['held', 'failed']);
    expect((await pay(base, other.purchaseId, 'tok_visa')).status).toBe(200);
  });

  it('cancels once, gives the tickets back, and refuses what cannot be paid or cancelled', async () => {
    const event = await heldEvent();
    const held = await buy(event);
    const first = await cancel(base, held.purchaseId);
    expect([first.status, first.body.status]).toEqual([200, 'cancelled']);
    const second = await cancel(base, held.purchaseId);
    expect([second.status, second.body.status]).toEqual([200, 'cancelled']);
    expect((await stats(event.id)).ticketTypes[0]).toMatchObject({ held: 0, available: 20 });
    const payCancelled = await pay(base, held.purchaseId, 'tok_visa');
    expect([payCancelled.status, payCancelled.body.error.code]).toEqual([409, 'not_payable']);

    const confirmed = await buy(event);
    await pay(base, confirmed.purchaseId, 'tok_visa');
    const late = await cancel(base, confirmed.purchaseId);
    expect([late.status, late.body.error.code]).toEqual([409, 'not_cancellable']);
  });

  it('waitlists what held tickets could serve and serves it, in order, when they come back', async () => {
    const event = await heldEvent(4);
    const a = await buy(event, 4);
    const w1 = await buy(event, 3);
    const w2 = await buy(event, 2);
    expect([a.status, w1.status, w2.status]).toEqual(['held', 'waitlisted', 'waitlisted']);
    expect((await pay(base, w1.purchaseId, 'tok_visa')).body.error.code).toBe('not_payable');
    expect((await stats(event.id)).purchases).toMatchObject({ held: 1, waitlisted: 2 });
    await cancel(base, a.purchaseId);
    expect((await getJson(`${base}/api/purchases/${w1.purchaseId}`)).body.status).toBe('held');
    expect((await getJson(`${base}/api/purchases/${w2.purchaseId}`)).body.status).toBe('waitlisted');
    // w1 pays: 1 ticket is left unsold, so w2 (2) can never be served: rejected now.
    await pay(base, w1.purchaseId, 'tok_visa');
    const rejected = (await getJson(`${base}/api/purchases/${w2.purchaseId}`)).body;
    expect([rejected.status, rejected.reason]).toEqual(['rejected', 'insufficient_inventory']);
    // A waitlisted purchase may be cancelled too.
    const b = await buy(event, 1);
    const c = await buy(event, 1);
    expect([b.status, c.status]).toEqual(['held', 'waitlisted']);
    expect((await cancel(base, c.purchaseId)).body.status).toBe('cancelled');
  });

  it('refuses hostile payment, cancel and webhook requests with 4xx and changes nothing', async () => {
    const event = await heldEvent();
    const held = await buy(event);
    const url = `${base}/api/purchases/${held.purchaseId}/payment`;
    for (const body of [
      {},
      { paymentToken: '' },
      { paymentToken: 42 },
      { paymentToken: 'tok_visa', x: 1 },
      '{',
    ]) {
      const res = await postJson(url, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
    expect((await pay(base, held.purchaseId, 'tok visa with spaces')).status).toBe(400);
    expect((await pay(base, held.purchaseId, 'x'.repeat(300))).status).toBe(400);
    expect((await pay(base, held.purchaseId, 'tok_visa', { 'idempotency-key': '\u00e9' })).status).toBe(400);
    expect((await pay(base, 'no-such-purchase', 'tok_visa')).status).toBe(404);
    expect((await cancel(base, 'no-such-purchase')).status).toBe(404);
    expect((await postJson(`${base}/api/purchases/${held.purchaseId}/cancel`, { reason: 'x' })).status).toBe(
      400,
    );
    const still = (await getJson(`${base}/api/purchases/${held.purchaseId}`)).body;
    expect([still.status, still.payment]).toEqual(['held', null]);

    // Webhooks: a bad, missing, stale or other-secret signature is a 400 and does nothing.
    const hook = signedWebhook({
      id: `evt_${randomUUID()}`,
      type: 'payment_intent.succeeded',
      purchaseId: held.purchaseId,
    });
    const stale = signedWebhook(
      { id: `evt_${randomUUID()}`, type: 'payment_intent.succeeded', purchaseId: held.purchaseId },
      { t: Math.floor(Date.now() / 1000) - 400 },
    );
    const otherSecret = signedWebhook(
      { id: `evt_${randomUUID()}`, type: 'payment_intent.succeeded', purchaseId: held.purchaseId },
      { secret: 'whsec_someone_else_entirely_0123456789abcdef' },
    );
    for (const bad of [
      { body: hook.body },
      { body: hook.body, signature: 'garbage' },
      // The signature's first hex digit changed (to another digit: one in 16 already is 0).
      {
        body: hook.body,
        signature: hook.signature.replace(/v1=(.)/, (_, d) => `v1=${d === '0' ? '1' : '0'}`),
      },
      { body: hook.body.replace('succeeded', 'succeeded '), signature: hook.signature },
      stale,
      otherSecret,
    ]) {
      const res = await deliverWebhook(base, bad);
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
    expect((await deliverWebhook(base, hook, 'paypal')).status).toBe(404);
    expect((await getJson(`${base}/api/purchases/${held.purchaseId}`)).body.status).toBe('held');

    // Signed correctly, about an unknown purchase: acknowledged, nothing done.
    const unknown = signedWebhook({
      id: `evt_${randomUUID()}`,
      type: 'payment_intent.succeeded',
      purchaseId: 'nope',
    });
    const res = await deliverWebhook(base, unknown);
    expect([res.status, res.body.effect]).toEqual([200, 'unknown_purchase']);
  });

  it('takes a webhook delivered twice once', async () => {
    const event = await heldEvent();
    const held = await buy(event);
    await pay(base, held.purchaseId, 'tok_threeDSecure');
    const hook = signedWebhook({
      id: `evt_${randomUUID()}`,
      type: 'payment_intent.succeeded',
      purchaseId: held.purchaseId,
    });
    const first = await deliverWebhook(base, hook);
    const second = await deliverWebhook(base, hook);
    expect([first.body.effect, second.body.effect]).toEqual(['applied', 'duplicate']);
    const confirmed = (await getJson(`${base}/api/purchases/${held.purchaseId}`)).body;
    expect(confirmed.status).toBe('confirmed');
    // A failure delivered late, out of order, changes nothing.
    const late = signedWebhook({
      id: `evt_${randomUUID()}`,
      type: 'payment_intent.payment_failed',
      purchaseId: held.purchaseId,
    });
    expect((await deliverWebhook(base, late)).status).toBe(200);
    const after = (await getJson(`${base}/api/purchases/${held.purchaseId}`)).body;
    expect([after.status, after.payment.status, after.tickets]).toEqual([
      'confirmed',
      'succeeded',
      confirmed.tickets,
    ]);
  });

  it('lets a cancel and a payment race: each purchase ends one way, and money matches', async () => {
    const event = await heldEvent(20);
    const bought = await Promise.all(Array.from({ length: 8 }, () => buy(event, 1)));
    const results = await Promise.all(
      bought.map(async (p) => {
        const [paid, cancelled] = await Promise.all([
          pay(base, p.purchaseId, 'tok_visa'),
          cancel(base, p.purchaseId),
        ]);
        const final = await waitPurchase(
          base,
          p.purchaseId,
          (x) => x.status !== 'held' && x.payment?.status !== 'processing',
        );
        return { paid, cancelled, final };
      }),
    );
    for (const { paid, cancelled, final } of results) {
      if (final.status === 'confirmed') {
        expect(paid.status).toBe(200);
        expect(cancelled.status).toBe(409);
      } else {
        expect(final.status).toBe('cancelled');
        expect(cancelled.status).toBe(200);
        expect(paid.status).toBe(409);
        // Charged after the cancel won: refunded at once.
        if (final.payment?.status === 'succeeded') expect(final.refunded).toBe(true);
      }
    }
    const s = await stats(event.id);
    const confirmed = results.filter((r) => r.final.status === 'confirmed').length;
    expect(s.ticketTypes[0]).toMatchObject({ sold: confirmed, held: 0, available: 20 - confirmed });
  });

  it('expires unpaid holds within 2 s, serves the waitlist, and refunds a payment that comes after', async () => {
    const event = await heldEvent(3, 30);
    const abandoned = await buy(event, 2);
    const threeDS = await buy(event, 1);
    const waiting = await buy(event, 2);
    expect([abandoned.status, threeDS.status, waiting.status]).toEqual(['held', 'held', 'waitlisted']);
    expect((await pay(base, threeDS.purchaseId, 'tok_threeDSecure')).status).toBe(202);

    const expired = await waitPurchase(base, abandoned.purchaseId, (p) => p.status === 'expired', 45_000);
    expect(Date.parse(expired.updatedAt) - Date.parse(expired.holdExpiresAt)).toBeLessThanOrEqual(2_000);
    expect((await pay(base, abandoned.purchaseId, 'tok_visa')).body.error.code).toBe('hold_expired');
    const served = await waitPurchase(base, waiting.purchaseId, (p) => p.status === 'held');
    expect(Date.parse(served.holdExpiresAt)).toBeGreaterThan(Date.now() + 20_000);

    // The buyer approves 3-D Secure after the hold ran out: the charge is refunded, the purchase stays expired.
    await waitPurchase(base, threeDS.purchaseId, (p) => p.status === 'expired', 10_000);
    expect(await threeDSecure(base, threeDS.purchaseId, 'approve')).toBe(303);
    const refunded = await waitPurchase(base, threeDS.purchaseId, (p) => p.refunded === true, 20_000);
    expect(refunded.status).toBe('expired');
    expect(refunded.tickets).toEqual([]);
    const s = await stats(event.id);
    expect(s.purchases).toMatchObject({ expired: 2, held: 1, refunded: 1 });
    expect(s.ticketTypes[0]).toMatchObject({ sold: 0, held: 2, available: 1 });
  }, 90_000);
});
