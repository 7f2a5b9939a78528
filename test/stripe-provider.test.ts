/**
 * The stripe payment provider through Stripe's own SDK, against a local HTTP stub of Stripe's API
 * (test/helpers/stripe-stub.ts): Stripe itself cannot be reached from here. Webhook signatures are made by
 * the SDK's own test helper, generateTestHeaderString.
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';
import { afterAll, assert, beforeAll, describe, expect, it } from 'vitest';
import { createStripeProvider, stripeSettingsFromEnv } from '../src/adapters/payments/stripe/provider.js';
import { stripeAddress } from '../src/adapters/payments/stripe/settings.js';
import {
  PaymentUnavailableError,
  WebhookSignatureError,
  type ChargeRequest,
  type PaymentProvider,
} from '../src/ports/payments.js';
import { ConfigError } from '../src/shared/config-error.js';
import { newPurchaseId } from '../src/shared/ids.js';
import { freePort, until } from './helpers/processes.js';
import { startStripeStub, type StripeStub, type StubEvent } from './helpers/stripe-stub.js';

const WEBHOOK_SECRET = `whsec_${randomBytes(24).toString('base64')}`;
// Only its webhook helpers are used: no request is made through it.
const sdk = new Stripe('sk_test_helper', { telemetry: false });

let stub: StripeStub;
let provider: PaymentProvider;

function open(
  overrides: { secretKey?: string; apiBase?: string; maxNetworkRetries?: number } = {},
): PaymentProvider {
  return createStripeProvider({
    secretKey: stub.secretKey,
    webhookSecret: WEBHOOK_SECRET,
    apiBase: stub.url,
    timeoutMs: 10_000,
    ...overrides,
  });
}

function request(overrides: Partial<ChargeRequest> = {}): ChargeRequest {
  return {
    purchaseId: newPurchaseId(),
    amountCents: 4500,
    currency: 'eur',
    paymentToken: 'pm_card_visa',
    attemptKey: randomBytes(8).toString('hex'),
    returnUrl: 'http://127.0.0.1:1/purchases/x',
    ...overrides,
  };
}

function sign(body: string, options: { secret?: string; timestamp?: number } = {}): string {
  return sdk.webhooks.generateTestHeaderString({
    payload: body,
    secret: options.secret ?? WEBHOOK_SECRET,
    ...(options.timestamp === undefined ? {} : { timestamp: options.timestamp }),
  });
}

function deliver(event: StubEvent | object): ReturnType<PaymentProvider['parseWebhook']> {
  const body = JSON.stringify(event, null, 2);
  return provider.parseWebhook(Buffer.from(body), sign(body));
}

beforeAll(async () => {
  stub = await startStripeStub();
  provider = open();
});
afterAll(() => stub.close());

describe('stripe provider: charge', () => {
  it('charges a PaymentIntent made for the purchase, keyed by the purchase id', async () => {
    const req = request();
    const result = await provider.charge(req);
    expect(result).toEqual({ status: 'succeeded', paymentId: expect.stringMatching(/^pi_/) });
    const intent = stub.paymentIntent(result.paymentId!)!;
    expect(intent).toMatchObject({
      amount: 4500,
      currency: 'eur',
      metadata: { purchase_id: req.purchaseId },
    });
    expect(intent.payment_method_types).toEqual(['card']);
    expect(stub.chargesFor(req.purchaseId)).toBe(1);
    const keys = stub.requests.filter((r) => r.method === 'POST').map((r) => r.idempotencyKey);
    expect(keys).toContain(`onsale-purchase-${req.purchaseId}`);
    expect(keys).toContain(`onsale-attempt-${req.purchaseId}-${req.attemptKey}`);
  });

  it('answers a repeated attempt from Stripe’s first answer and charges once', async () => {
    const req = request();
    const first = await provider.charge(req);
    const again = await open().charge(req); // another web server, same attempt
    expect(again).toEqual(first);
    expect(stub.chargesFor(req.purchaseId)).toBe(1);
    const confirms = stub.requests.filter(
      (r) => r.idempotencyKey === `onsale-attempt-${req.purchaseId}-${req.attemptKey}`,
    );
    expect(confirms.map((r) => r.replayed)).toEqual([false, true]);
  });

  it('a new attempt on a paid purchase answers succeeded and charges nothing more', async () => {
    const req = request();
    const first = await provider.charge(req);
    const second = await provider.charge({ ...req, attemptKey: 'another-tab', paymentToken: 'pm_card_visa' });
    expect(second).toEqual(first);
    expect(stub.chargesFor(req.purchaseId)).toBe(1);
  });

  it('a declined card charges nothing; the same attempt stays declined, a new one pays the same PaymentIntent', async () => {
    const req = request({ paymentToken: 'pm_card_chargeDeclined' });
    const declined = await provider.charge(req);
    expect(declined).toEqual({
      status: 'declined',
      paymentId: expect.stringMatching(/^pi_/),
      message: 'Your card was declined.',
    });
    expect(stub.chargesFor(req.purchaseId)).toBe(0);
    // Same attempt, another card: Stripe refuses the key with other parameters; the first answer stands.
    expect(await provider.charge({ ...req, paymentToken: 'pm_card_visa' })).toMatchObject({
      status: 'declined',
    });
    expect(stub.chargesFor(req.purchaseId)).toBe(0);
    const paid = await provider.charge({ ...req, paymentToken: 'pm_card_visa', attemptKey: 'second-card' });
    expect(paid).toEqual({ status: 'succeeded', paymentId: declined.paymentId });
    expect(stub.chargesFor(req.purchaseId)).toBe(1);
  });

  it('a PaymentMethod Stripe does not know is declined with Stripe’s message, nothing charged', async () => {
    const req = request({ paymentToken: 'pm_nonsense' });
    expect(await provider.charge(req)).toMatchObject({
      status: 'declined',
      message: "No such PaymentMethod: 'pm_nonsense'",
    });
    expect(stub.chargesFor(req.purchaseId)).toBe(0);
    // A hostile token stays one form value: it cannot add parameters of its own.
    const hostile = request({ paymentToken: 'pm_card_visa&amount=1&payment_method=pm_card_visa' });
    expect(await provider.charge(hostile)).toMatchObject({ status: 'declined' });
    expect(stub.chargesFor(hostile.purchaseId)).toBe(0);
  });

  it('3-D Secure: requires_action with Stripe’s redirect, back to the return URL; the buyer’s step finishes it', async () => {
    const req = request({
      paymentToken: 'pm_card_threeDSecure2Required',
      returnUrl: 'https://shop.example/p/1',
    });
    const result = await provider.charge(req);
    assert(result.status === 'requires_action');
    expect(result.nextActionUrl).toBe(`${stub.url}/3ds/${result.paymentId}`);
    expect(stub.paymentIntent(result.paymentId)!.next_action).toMatchObject({
      redirect_to_url: { return_url: 'https://shop.example/p/1' },
    });
    expect(stub.chargesFor(req.purchaseId)).toBe(0);
    expect(await provider.retrieve(req.purchaseId)).toEqual(result);

    const event = stub.completeAction(result.paymentId, 'succeed');
    expect(deliver(event)).toEqual({
      kind: 'payment_succeeded',
      eventId: event.id,
      purchaseId: req.purchaseId,
      paymentId: result.paymentId,
    });
    expect(await provider.retrieve(req.purchaseId)).toEqual({
      status: 'succeeded',
      paymentId: result.paymentId,
    });
    expect(stub.chargesFor(req.purchaseId)).toBe(1);
  });

  it('3-D Secure in the browser: Stripe’s page, back to the return URL, and a signed webhook delivered', async () => {
    const received: Array<{ body: Buffer; signature: string | undefined }> = [];
    const endpoint = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        received.push({ body: Buffer.concat(chunks), signature: req.headers['stripe-signature'] as string });
        res.end('{}');
      });
    });
    await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve));
    try {
      stub.sendEventsTo(
        `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/webhooks/stripe`,
        WEBHOOK_SECRET,
      );
      const req = request({
        paymentToken: 'pm_card_threeDSecure2Required',
        returnUrl: 'https://shop.example/p/2',
      });
      const result = await provider.charge(req);
      assert(result.status === 'requires_action');
      const page = await fetch(result.nextActionUrl);
      expect(await page.text()).toContain('Complete');
      const back = await fetch(`${result.nextActionUrl}?outcome=succeed`, {
        method: 'POST',
        redirect: 'manual',
      });
      expect(back.status).toBe(303);
      expect(back.headers.get('location')).toBe(
        `https://shop.example/p/2?payment_intent=${result.paymentId}&redirect_status=succeeded`,
      );
      await until(() => received.some((r) => r.body.includes('payment_intent.succeeded')));
      const webhooks = received.map((r) => provider.parseWebhook(r.body, r.signature));
      expect(webhooks).toContainEqual({
        kind: 'payment_succeeded',
        eventId: expect.any(String),
        purchaseId: req.purchaseId,
        paymentId: result.paymentId,
      });
      expect(stub.chargesFor(req.purchaseId)).toBe(1);
    } finally {
      stub.sendEventsTo(null);
      await new Promise((resolve) => endpoint.close(resolve));
    }
  });

  it('3-D Secure failed: payment_failed webhook, nothing charged, another card can pay', async () => {
    const req = request({ paymentToken: 'pm_card_threeDSecure2Required' });
    const result = await provider.charge(req);
    const event = stub.completeAction(result.paymentId!, 'fail');
    expect(deliver(event)).toMatchObject({
      kind: 'payment_failed',
      purchaseId: req.purchaseId,
      paymentId: result.paymentId,
      message: expect.stringContaining('unable to authenticate'),
    });
    expect(await provider.retrieve(req.purchaseId)).toMatchObject({ status: 'declined' });
    expect(stub.chargesFor(req.purchaseId)).toBe(0);
    expect(await provider.charge({ ...req, attemptKey: 'b', paymentToken: 'pm_card_visa' })).toMatchObject({
      status: 'succeeded',
    });
    expect(stub.chargesFor(req.purchaseId)).toBe(1);
  });

  it('a lost answer is retried by the SDK under the same key: one PaymentIntent, one charge', async () => {
    const req = request();
    stub.dropResponses(1, /^\/v1\/payment_intents$/);
    const before = stub.requests.length;
    const result = await provider.charge(req);
    expect(result.status).toBe('succeeded');
    const creates = stub.requests.slice(before).filter((r) => r.path === '/v1/payment_intents');
    expect(creates.map((r) => r.replayed)).toEqual([false, true]);
    stub.dropResponses(1, /\/confirm$/);
    const other = request();
    expect((await provider.charge(other)).status).toBe('succeeded');
    const confirms = stub.requests.filter(
      (r) => r.idempotencyKey === `onsale-attempt-${other.purchaseId}-${other.attemptKey}`,
    );
    expect(confirms.map((r) => r.replayed)).toEqual([false, true]);
    expect(stub.chargesFor(req.purchaseId)).toBe(1);
    expect(stub.chargesFor(other.purchaseId)).toBe(1);
  });

  it('an answer that never comes is PaymentUnavailableError; the same attempt later finds the charge made', async () => {
    const req = request();
    stub.hangResponses(1, /\/confirm$/);
    const impatient = open({ maxNetworkRetries: 0 });
    const timedOut = createStripeProvider({
      secretKey: stub.secretKey,
      webhookSecret: WEBHOOK_SECRET,
      apiBase: stub.url,
      timeoutMs: 500,
      maxNetworkRetries: 0,
    });
    await expect(timedOut.charge(req)).rejects.toBeInstanceOf(PaymentUnavailableError);
    // Stripe did charge: the caller may not tell the buyer "declined", and asking again tells the truth.
    expect(stub.chargesFor(req.purchaseId)).toBe(1);
    expect((await impatient.charge(req)).status).toBe('succeeded');
    expect(stub.chargesFor(req.purchaseId)).toBe(1);
  });

  it('Stripe out of reach: PaymentUnavailableError, and the same attempt later charges once', async () => {
    const closed = open({ apiBase: `http://127.0.0.1:${await freePort()}`, maxNetworkRetries: 0 });
    const req = request();
    await expect(closed.charge(req)).rejects.toBeInstanceOf(PaymentUnavailableError);
    await expect(closed.retrieve(req.purchaseId)).rejects.toBeInstanceOf(PaymentUnavailableError);

    stub.failNext(10);
    await expect(open({ maxNetworkRetries: 1 }).charge(req)).rejects.toBeInstanceOf(PaymentUnavailableError);
    stub.failNext(0);
    expect(stub.chargesFor(req.purchaseId)).toBe(0);
    expect((await provider.charge(req)).status).toBe('succeeded');
    expect(stub.chargesFor(req.purchaseId)).toBe(1);
  });

  it('a key Stripe refuses is PaymentUnavailableError that does not quote the key', async () => {
    const wrongKey = `sk_test_${randomBytes(12).toString('hex')}`;
    const error = await open({ secretKey: wrongKey })
      .charge(request())
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PaymentUnavailableError);
    expect((error as Error).message).toContain('refused the secret key');
    expect((error as Error).message).not.toContain(wrongKey.slice(-4));
  });

  it('never charges a purchase another sum than its first attempt asked', async () => {
    const req = request({ paymentToken: 'pm_card_chargeDeclined' });
    await provider.charge(req);
    await expect(
      provider.charge({ ...req, amountCents: 100, paymentToken: 'pm_card_visa', attemptKey: 'b' }),
    ).rejects.toThrow(/other terms/);
    expect(stub.chargesFor(req.purchaseId)).toBe(0);
  });

  it('refuses a request that is not onsale’s before calling Stripe', async () => {
    const before = stub.requests.length;
    await expect(provider.charge(request({ amountCents: 0 }))).rejects.toThrow(/amountCents/);
    await expect(provider.charge(request({ currency: 'EUR' }))).rejects.toThrow(/currency/);
    await expect(provider.charge(request({ purchaseId: "x' OR 1" }))).rejects.toThrow(/purchaseId/);
    expect(stub.requests.length).toBe(before);
  });
});

describe('stripe provider: retrieve and refund', () => {
  it('retrieve: null for a purchase never charged; another process finds the PaymentIntent by search', async () => {
    expect(await provider.retrieve(newPurchaseId())).toBeNull();
    expect(await provider.retrieve("' OR 1")).toBeNull();
    const req = request();
    const paid = await provider.charge(req);
    const elsewhere = open();
    const searchesBefore = stub.requests.filter((r) => r.path.endsWith('/search')).length;
    expect(await elsewhere.retrieve(req.purchaseId)).toEqual(paid);
    expect(stub.requests.filter((r) => r.path.endsWith('/search')).length).toBe(searchesBefore + 1);
    // Remembered afterwards: no second search.
    expect(await elsewhere.retrieve(req.purchaseId)).toEqual(paid);
    expect(stub.requests.filter((r) => r.path.endsWith('/search')).length).toBe(searchesBefore + 1);
  });

  it('refunds once, however often and from however many processes it is asked', async () => {
    const req = request();
    const paid = await provider.charge(req);
    const first = await provider.refund(req.purchaseId);
    expect(first.refundId).toMatch(/^re_/);
    expect(await provider.refund(req.purchaseId)).toEqual(first);
    expect(await open().refund(req.purchaseId)).toEqual(first);
    // After Stripe forgot the key (24 h): it says "already refunded", and the refund made is found.
    stub.forgetIdempotencyKeys();
    expect(await open().refund(req.purchaseId)).toEqual(first);
    expect(stub.refundsFor(req.purchaseId)).toBe(1);

    const refunded = stub.events.findLast(
      (e) => e.type === 'charge.refunded' && e.data.object.payment_intent === paid.paymentId,
    )!;
    expect(deliver(refunded)).toEqual({
      kind: 'refunded',
      eventId: refunded.id,
      purchaseId: req.purchaseId,
      paymentId: paid.paymentId,
    });
  });

  it('refuses to refund what was not paid', async () => {
    const declined = request({ paymentToken: 'pm_card_chargeDeclined' });
    await provider.charge(declined);
    await expect(provider.refund(declined.purchaseId)).rejects.toThrow(/has not succeeded/);
    await expect(provider.refund(newPurchaseId())).rejects.toBeInstanceOf(PaymentUnavailableError);
    expect(stub.refundsFor(declined.purchaseId)).toBe(0);
  });
});

describe('stripe provider: webhooks', () => {
  function event(type: string, object: object, id = `evt_${randomBytes(8).toString('hex')}`): object {
    return { id, object: 'event', type, created: Math.floor(Date.now() / 1000), data: { object } };
  }
  const succeeded = (purchaseId: string): object =>
    event('payment_intent.succeeded', {
      id: 'pi_1',
      object: 'payment_intent',
      metadata: { purchase_id: purchaseId },
    });

  it('a redelivered event carries the same eventId (the caller applies it once)', () => {
    const body = JSON.stringify(succeeded('p1'));
    const first = provider.parseWebhook(Buffer.from(body), sign(body));
    const again = provider.parseWebhook(Buffer.from(body), sign(body));
    expect(first).toMatchObject({ kind: 'payment_succeeded', purchaseId: 'p1', paymentId: 'pi_1' });
    expect(again).toEqual(first);
  });

  it('refuses a missing, wrong, tampered or stale signature', () => {
    const body = JSON.stringify(succeeded('p1'));
    const refused = (raw: string, header: string | undefined): string => {
      try {
        provider.parseWebhook(Buffer.from(raw), header);
      } catch (error) {
        expect(error).toBeInstanceOf(WebhookSignatureError);
        return (error as Error).message;
      }
      throw new Error('accepted');
    };
    expect(refused(body, undefined)).toMatch(/No Stripe-Signature/);
    expect(refused(body, '')).toMatch(/No Stripe-Signature/);
    expect(refused(body, 'garbage')).toMatch(/does not match/);
    expect(refused(body, sign(body, { secret: 'whsec_other' }))).toMatch(/does not match/);
    expect(refused(body.replace('p1', 'p2'), sign(body))).toMatch(/does not match/);
    const now = Math.floor(Date.now() / 1000);
    expect(refused(body, sign(body, { timestamp: now - 301 }))).toMatch(/older than 300 s/);
    // 299 s old is still within Stripe's tolerance.
    expect(provider.parseWebhook(Buffer.from(body), sign(body, { timestamp: now - 299 })).kind).toBe(
      'payment_succeeded',
    );
  });

  it('never echoes the endpoint secret, even when the header invites the SDK to describe it', () => {
    const body = JSON.stringify(succeeded('p1'));
    const masked = `whsec_${'*'.repeat(10)}abcd`;
    const header = `${sign(body, { secret: 'whsec_other' })},secret=${masked}`;
    const message = (() => {
      try {
        provider.parseWebhook(Buffer.from(body), header);
        return 'accepted';
      } catch (error) {
        return (error as Error).message;
      }
    })();
    expect(message).toMatch(/does not match/);
    expect(message).not.toContain(WEBHOOK_SECRET.slice(-4));
    // The SDK's own message would have quoted it.
    expect(() => sdk.webhooks.constructEvent(body, header, WEBHOOK_SECRET)).toThrow(WEBHOOK_SECRET.slice(-4));
  });

  it('a signed body that is not an event is refused', () => {
    for (const body of ['not json', '[]', '{"type":"payment_intent.succeeded"}']) {
      expect(() => provider.parseWebhook(Buffer.from(body), sign(body))).toThrow(WebhookSignatureError);
    }
  });

  it('ignores other event types, and events of payments that are not onsale’s', () => {
    const ignored = [
      event('charge.succeeded', { id: 'ch_1', object: 'charge', metadata: { purchase_id: 'p1' } }),
      event('customer.created', { id: 'cus_1', object: 'customer', metadata: {} }),
      event('payment_intent.succeeded', { id: 'pi_2', object: 'payment_intent', metadata: {} }),
      // A partial refund leaves the purchase paid.
      event('charge.refunded', {
        id: 'ch_2',
        object: 'charge',
        payment_intent: 'pi_2',
        refunded: false,
        metadata: { purchase_id: 'p1' },
      }),
    ];
    for (const e of ignored) {
      expect(deliver(e)).toEqual({ kind: 'ignored', eventId: (e as { id: string }).id });
    }
  });
});

describe('stripe settings', () => {
  const good = {
    ONSALE_STRIPE_SECRET_KEY: 'sk_test_51AbCdEf0123456789',
    ONSALE_STRIPE_WEBHOOK_SECRET: 'whsec_AbC0123456789+/=',
  };
  const configError = (env: NodeJS.ProcessEnv): string => {
    try {
      stripeSettingsFromEnv(env);
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return (error as Error).message;
    }
    throw new Error('accepted');
  };

  it('reads the key, the webhook secret and an optional API base', () => {
    expect(stripeSettingsFromEnv(good)).toEqual({
      secretKey: good.ONSALE_STRIPE_SECRET_KEY,
      webhookSecret: good.ONSALE_STRIPE_WEBHOOK_SECRET,
    });
    expect(stripeSettingsFromEnv({ ...good, ONSALE_STRIPE_API_BASE: 'http://127.0.0.1:12111' }).apiBase).toBe(
      'http://127.0.0.1:12111',
    );
    // Stripe's own names work too; ONSALE_ ones win.
    expect(
      stripeSettingsFromEnv({
        STRIPE_SECRET_KEY: 'rk_live_xyz',
        STRIPE_WEBHOOK_SECRET: 'whsec_abc',
        ONSALE_STRIPE_WEBHOOK_SECRET: 'whsec_def',
      }),
    ).toEqual({ secretKey: 'rk_live_xyz', webhookSecret: 'whsec_def' });
  });

  it('names a missing or malformed setting, and never prints its value', () => {
    expect(configError({})).toMatch(/ONSALE_STRIPE_SECRET_KEY \(or STRIPE_SECRET_KEY\) is required/);
    expect(configError({ ONSALE_STRIPE_SECRET_KEY: good.ONSALE_STRIPE_SECRET_KEY })).toMatch(
      /ONSALE_STRIPE_WEBHOOK_SECRET/,
    );
    const typo = 'sk_test_51Ab Cd';
    const message = configError({ ...good, ONSALE_STRIPE_SECRET_KEY: typo });
    expect(message).toMatch(/ONSALE_STRIPE_SECRET_KEY is not a Stripe secret key/);
    expect(message).not.toContain('51Ab');
    expect(configError({ ...good, ONSALE_STRIPE_SECRET_KEY: 'pk_test_123' })).toMatch(/publishable/);
    const badSecret = configError({ ...good, ONSALE_STRIPE_WEBHOOK_SECRET: 'secret123' });
    expect(badSecret).toMatch(/ONSALE_STRIPE_WEBHOOK_SECRET is not a webhook signing secret/);
    expect(badSecret).not.toContain('secret123');
    for (const base of [
      'api.stripe.com',
      'ftp://x',
      'https://x/v1',
      'https://u:p@x',
      'http://10.0.0.2:12111',
    ]) {
      expect(configError({ ...good, ONSALE_STRIPE_API_BASE: base })).toMatch(/^ONSALE_STRIPE_API_BASE /);
    }
  });

  it('turns an API base into the SDK’s host, port and protocol', () => {
    expect(stripeAddress('http://127.0.0.1:12111')).toEqual({
      host: '127.0.0.1',
      port: 12111,
      protocol: 'http',
    });
    expect(stripeAddress('https://stripe-proxy.internal')).toEqual({
      host: 'stripe-proxy.internal',
      port: 443,
      protocol: 'https',
    });
    expect(stripeAddress('http://[::1]:8')).toEqual({ host: '::1', port: 8, protocol: 'http' });
  });
});
