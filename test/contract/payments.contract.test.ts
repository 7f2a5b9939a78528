/**
 * What every payment provider promises (src/ports/payments.ts), run against each one in
 * test/helpers/payment-providers.ts: one payment per purchase, a repeated attempt answered from its first
 * result, nothing charged on a decline, one refund however often asked, signed webhooks only.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, assert, beforeAll, expect, it } from 'vitest';
import { WebhookSignatureError, type ChargeRequest } from '../../src/ports/payments.js';
import { newPurchaseId } from '../../src/shared/ids.js';
import { paymentProviders, type PaymentHarness } from '../helpers/payment-providers.js';
import { describeEach } from '../helpers/services.js';

describeEach(paymentProviders, 'Payments contract: $name', (factory) => {
  let h: PaymentHarness;
  beforeAll(async () => {
    h = await factory.open();
  });
  afterAll(() => h.close());

  function request(token: string, overrides: Partial<ChargeRequest> = {}): ChargeRequest {
    return {
      purchaseId: newPurchaseId(),
      amountCents: 2500,
      currency: 'eur',
      paymentToken: token,
      attemptKey: randomBytes(8).toString('hex'),
      returnUrl: 'http://127.0.0.1:1/p/return',
      ...overrides,
    };
  }

  it('a good token is charged once; retrieve says so; a purchase never charged retrieves null', async () => {
    const req = request(h.tokens.succeed);
    const result = await h.provider.charge(req);
    expect(result).toEqual({ status: 'succeeded', paymentId: expect.any(String) });
    expect(await h.provider.retrieve(req.purchaseId)).toEqual(result);
    expect(await h.chargesFor(req.purchaseId)).toBe(1);
    expect(await h.provider.retrieve(newPurchaseId())).toBeNull();
  });

  it('the same attemptKey repeats the first answer and charges once, even at the same moment', async () => {
    const req = request(h.tokens.succeed);
    const [a, b] = await Promise.all([h.provider.charge(req), h.provider.charge(req)]);
    const c = await h.provider.charge(req);
    expect(a.status).toBe('succeeded');
    expect(b).toEqual(a);
    expect(c).toEqual(a);
    expect(await h.chargesFor(req.purchaseId)).toBe(1);
  });

  it('paying a paid purchase again, with any token, answers succeeded and charges nothing more', async () => {
    const req = request(h.tokens.succeed);
    const paid = await h.provider.charge(req);
    for (const token of [h.tokens.succeed, h.tokens.decline]) {
      expect(await h.provider.charge({ ...req, paymentToken: token, attemptKey: `again-${token}` })).toEqual(
        paid,
      );
    }
    expect(await h.chargesFor(req.purchaseId)).toBe(1);
  });

  it('a decline charges nothing, and a new attemptKey can then pay the same payment', async () => {
    const req = request(h.tokens.decline);
    const declined = await h.provider.charge(req);
    assert(declined.status === 'declined');
    expect(declined.message).not.toBe('');
    expect(await h.chargesFor(req.purchaseId)).toBe(0);
    expect(await h.provider.charge(req)).toEqual(declined);
    expect(await h.chargesFor(req.purchaseId)).toBe(0);
    const paid = await h.provider.charge({
      ...req,
      paymentToken: h.tokens.succeed,
      attemptKey: 'second-card',
    });
    expect(paid.status).toBe('succeeded');
    if (declined.paymentId !== null) expect(paid.paymentId).toBe(declined.paymentId);
    expect(await h.chargesFor(req.purchaseId)).toBe(1);
  });

  it('a 3-D Secure token requires action at a URL, and charges nothing yet', async () => {
    const req = request(h.tokens.threeDS);
    const result = await h.provider.charge(req);
    assert(result.status === 'requires_action');
    // Absolute (Stripe's page) or a path on onsale's own site (the test provider's page), where the buyer
    // is sent from onsale's pages: either way an http(s) address once resolved against onsale's address.
    expect(['http:', 'https:']).toContain(new URL(result.nextActionUrl, req.returnUrl).protocol);
    expect(await h.provider.charge(req)).toEqual(result);
    expect(await h.chargesFor(req.purchaseId)).toBe(0);
  });

  it('refunding twice refunds once', async () => {
    const req = request(h.tokens.succeed);
    await h.provider.charge(req);
    const [first, second] = await Promise.all([
      h.provider.refund(req.purchaseId),
      h.provider.refund(req.purchaseId),
    ]);
    expect(second).toEqual(first);
    expect(await h.provider.refund(req.purchaseId)).toEqual(first);
    expect(await h.refundsFor(req.purchaseId)).toBe(1);
  });

  it('parseWebhook reads a signed webhook, the same eventId each delivery, and refuses bad signatures', async () => {
    const req = request(h.tokens.succeed);
    const paid = await h.provider.charge(req);
    const body = h.succeededWebhook(req.purchaseId, paid.paymentId!);
    const header = h.signWebhook(body);
    const first = h.provider.parseWebhook(Buffer.from(body), header);
    expect(first).toEqual({
      kind: 'payment_succeeded',
      eventId: expect.any(String),
      purchaseId: req.purchaseId,
      paymentId: paid.paymentId,
    });
    expect(h.provider.parseWebhook(Buffer.from(body), header)).toEqual(first);

    const otherBody = h.succeededWebhook(newPurchaseId(), paid.paymentId!);
    for (const [raw, signature] of [
      [body, undefined],
      [body, ''],
      [body, 'nonsense'],
      [otherBody, header], // another body under this body's signature
      [body, header.replace(/.$/, (c) => (c === '0' ? '1' : '0'))],
    ] as const) {
      expect(() => h.provider.parseWebhook(Buffer.from(raw), signature)).toThrow(WebhookSignatureError);
    }
  });
});
