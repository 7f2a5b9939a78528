import { randomBytes } from 'node:crypto';
import type { Storage } from '../../../ports/storage.js';
import {
  PaymentUnavailableError,
  type ChargeRequest,
  type ChargeResult,
  type PaymentProvider,
  type PaymentWebhook,
  type SignedWebhook,
} from '../../../ports/payments.js';
import { signWebhook, verifyWebhook } from './signature.js';

/** The card tokens the test provider knows (as Stripe's test mode names them). */
export const TEST_TOKENS = {
  succeeds: 'tok_visa',
  declined: 'tok_chargeDeclined',
  threeDSecure: 'tok_threeDSecure',
} as const;

const PROVIDER = 'test';
const SECRET_KEY = 'webhook-secret';

/** One purchase's payment at the test provider, kept in onsale's database (provider_state). */
interface TestPayment {
  paymentId: string;
  status: 'succeeded' | 'requires_action' | 'declined' | 'failed';
  amountCents: number;
  currency: string;
  /** The answer to each attempt, so that a repeated attempt gets the same one. */
  attempts: Record<string, ChargeResult>;
  /** How many times money was taken: 0 or 1, whatever happens (the flood tests check it). */
  charges: number;
  refundId: string | null;
}

type StateStore = Pick<Storage, 'providerState' | 'setProviderState'>;

/**
 * The webhook secret of the test provider: ONSALE_TEST_WEBHOOK_SECRET when set, else one made once and kept
 * in the database, so that every web server of a deployment signs and checks with the same one.
 */
async function webhookSecret(store: StateStore, configured: string | null): Promise<string> {
  if (configured) return configured;
  for (;;) {
    const stored = await store.providerState(PROVIDER, SECRET_KEY);
    if (stored) return stored.value;
    await store.setProviderState(
      PROVIDER,
      SECRET_KEY,
      `whsec_test_${randomBytes(32).toString('base64url')}`,
      null,
    );
  }
}

/**
 * The test provider: a payment provider inside onsale for the demo and tests. tok_visa succeeds,
 * tok_chargeDeclined is declined, tok_threeDSecure requires the buyer to approve on a page of onsale's own
 * (/payments/test/3ds/:purchaseId), whose outcome comes back as a webhook signed the way Stripe signs.
 * Its state lives in onsale's database, so any web server serves that page and any worker reconciles.
 */
export async function createTestProvider(options: {
  store: StateStore;
  webhookSecret: string | null;
}): Promise<PaymentProvider & { readonly webhookSecret: string }> {
  const { store } = options;
  const secret = await webhookSecret(store, options.webhookSecret);

  /** Reads, changes and writes a purchase's payment with compare-and-set, retried when another moved it. */
  async function update<T>(
    purchaseId: string,
    change: (current: TestPayment | null) => { next: TestPayment | null; result: T },
  ): Promise<T> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const stored = await guard(() => store.providerState(PROVIDER, key(purchaseId)));
      const current = stored ? (JSON.parse(stored.value) as TestPayment) : null;
      const { next, result } = change(current);
      if (!next) return result;
      const written = await guard(() =>
        store.setProviderState(PROVIDER, key(purchaseId), JSON.stringify(next), stored?.version ?? null),
      );
      if (written) return result;
    }
    throw new PaymentUnavailableError('the test provider is too busy with this payment; try again');
  }

  function webhook(
    kind: 'payment_intent.succeeded' | 'payment_intent.payment_failed' | 'charge.refunded',
    purchaseId: string,
    paymentId: string,
  ): SignedWebhook {
    const body = Buffer.from(
      JSON.stringify({
        id: `evt_test_${randomBytes(12).toString('base64url')}`,
        type: kind,
        created: Math.floor(Date.now() / 1000),
        data: { object: { id: paymentId, metadata: { purchaseId } } },
      }),
    );
    return { body, signature: signWebhook(body, secret) };
  }

  return {
    name: PROVIDER,
    webhookSecret: secret,

    charge: (request: ChargeRequest) =>
      update(request.purchaseId, (current) => {
        const seen = current?.attempts[request.attemptKey];
        if (seen) return { next: null, result: seen };
        const payment: TestPayment = current ?? {
          paymentId: `pi_test_${randomBytes(12).toString('base64url')}`,
          status: 'failed',
          amountCents: request.amountCents,
          currency: request.currency,
          attempts: {},
          charges: 0,
          refundId: null,
        };
        let result: ChargeResult;
        if (payment.status === 'succeeded') {
          // One payment per purchase: paying again never takes money twice.
          result = { status: 'succeeded', paymentId: payment.paymentId };
        } else if (request.paymentToken === TEST_TOKENS.succeeds) {
          payment.status = 'succeeded';
          payment.charges += 1;
          result = { status: 'succeeded', paymentId: payment.paymentId };
        } else if (request.paymentToken === TEST_TOKENS.threeDSecure) {
          payment.status = 'requires_action';
          result = {
            status: 'requires_action',
            paymentId: payment.paymentId,
            nextActionUrl: `/payments/test/3ds/${encodeURIComponent(request.purchaseId)}`,
          };
        } else {
          payment.status = 'declined';
          const message =
            request.paymentToken === TEST_TOKENS.declined
              ? 'Your card was declined.'
              : 'This is not a test card token: use tok_visa, tok_chargeDeclined or tok_threeDSecure.';
          result = { status: 'declined', paymentId: payment.paymentId, message };
        }
        payment.amountCents = request.amountCents;
        payment.attempts[request.attemptKey] = result;
        return { next: payment, result };
      }),

    async retrieve(purchaseId: string): Promise<ChargeResult | null> {
      const stored = await guard(() => store.providerState(PROVIDER, key(purchaseId)));
      if (!stored) return null;
      const payment = JSON.parse(stored.value) as TestPayment;
      switch (payment.status) {
        case 'succeeded':
          return { status: 'succeeded', paymentId: payment.paymentId };
        case 'requires_action':
          return {
            status: 'requires_action',
            paymentId: payment.paymentId,
            nextActionUrl: `/payments/test/3ds/${encodeURIComponent(purchaseId)}`,
          };
        default:
          return { status: 'declined', paymentId: payment.paymentId, message: 'the payment did not succeed' };
      }
    },

    refund: (purchaseId: string) =>
      update(purchaseId, (current) => {
        if (!current || current.status !== 'succeeded') {
          throw new Error(`the test provider has no succeeded payment of purchase ${purchaseId} to refund`);
        }
        if (current.refundId) return { next: null, result: { refundId: current.refundId } };
        const refundId = `re_test_${randomBytes(12).toString('base64url')}`;
        return { next: { ...current, refundId }, result: { refundId } };
      }),

    parseWebhook(rawBody: Buffer, signatureHeader: string | undefined): PaymentWebhook {
      verifyWebhook(rawBody, signatureHeader, secret);
      let event: {
        id?: unknown;
        type?: unknown;
        data?: { object?: { id?: unknown; metadata?: { purchaseId?: unknown } } };
      };
      try {
        event = JSON.parse(rawBody.toString('utf8')) as typeof event;
      } catch {
        return { kind: 'ignored', eventId: '' };
      }
      const eventId = typeof event.id === 'string' ? event.id : '';
      const object = event.data?.object;
      const purchaseId = object?.metadata?.purchaseId;
      const paymentId = object?.id;
      if (typeof purchaseId !== 'string' || typeof paymentId !== 'string' || !eventId) {
        return { kind: 'ignored', eventId };
      }
      switch (event.type) {
        case 'payment_intent.succeeded':
          return { kind: 'payment_succeeded', eventId, purchaseId, paymentId };
        case 'payment_intent.payment_failed':
          return {
            kind: 'payment_failed',
            eventId,
            purchaseId,
            paymentId,
            message: 'the buyer failed 3-D Secure',
          };
        case 'charge.refunded':
          return { kind: 'refunded', eventId, purchaseId, paymentId };
        default:
          return { kind: 'ignored', eventId };
      }
    },

    completeAction: (purchaseId: string, outcome: 'approve' | 'fail') =>
      update(purchaseId, (current) => {
        if (!current || current.status !== 'requires_action') return { next: null, result: null };
        const approved = outcome === 'approve';
        const next: TestPayment = {
          ...current,
          status: approved ? 'succeeded' : 'failed',
          charges: current.charges + (approved ? 1 : 0),
        };
        const kind = approved ? 'payment_intent.succeeded' : 'payment_intent.payment_failed';
        return { next, result: webhook(kind, purchaseId, current.paymentId) };
      }),
  };
}

function key(purchaseId: string): string {
  return `payment:${purchaseId}`;
}

/** The database that keeps the test provider's state is its "network": down means unavailable. */
async function guard<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw new PaymentUnavailableError('the test provider cannot reach its state', { cause: error });
  }
}
