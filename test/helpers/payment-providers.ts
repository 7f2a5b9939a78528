import { randomBytes } from 'node:crypto';
import Stripe from 'stripe';
import { createStripeProvider } from '../../src/adapters/payments/stripe/provider.js';
import { signWebhook } from '../../src/adapters/payments/test/signature.js';
import { createTestProvider, TEST_TOKENS } from '../../src/adapters/payments/test/provider.js';
import type { PaymentProvider } from '../../src/ports/payments.js';
import { storageAdapters } from './adapters.js';
import { startStripeStub } from './stripe-stub.js';

/**
 * A payment provider opened for the contract suite (test/contract/payments.contract.test.ts), with what the
 * suite needs to drive it and to check the money from outside the port.
 */
export interface PaymentHarness {
  provider: PaymentProvider;
  /** Payment tokens that succeed, are declined, and need a 3-D Secure step. */
  tokens: { succeed: string; decline: string; threeDS: string };
  /** A webhook body saying that the payment of a purchase succeeded, as the provider sends it. */
  succeededWebhook(purchaseId: string, paymentId: string): string;
  /** The signature header the provider's sender puts on `body`, signed with the endpoint's secret. */
  signWebhook(body: string): string;
  /**
   * Money taken for a purchase (succeeded charges) and refunds made, as the provider's books say: the
   * stub's for Stripe, the database's for the test provider (read on a connection of its own).
   */
  chargesFor(purchaseId: string): Promise<number>;
  refundsFor(purchaseId: string): Promise<number>;
  close(): Promise<void>;
}

export interface PaymentProviderFactory {
  name: string;
  /** Why this provider's suite is skipped, or '' when it runs (see describeEach). */
  excluded: string;
  open(): Promise<PaymentHarness>;
}

/** The stripe provider through Stripe's SDK, against the local stub of Stripe's API. */
async function openStripe(): Promise<PaymentHarness> {
  const stub = await startStripeStub();
  const webhookSecret = `whsec_${randomBytes(24).toString('base64')}`;
  const sdk = new Stripe('sk_test_helper', { telemetry: false });
  return {
    provider: createStripeProvider({ secretKey: stub.secretKey, webhookSecret, apiBase: stub.url }),
    tokens: {
      succeed: 'pm_card_visa',
      decline: 'pm_card_chargeDeclined',
      threeDS: 'pm_card_threeDSecure2Required',
    },
    succeededWebhook: (purchaseId, paymentId) =>
      JSON.stringify({
        id: `evt_${randomBytes(12).toString('hex')}`,
        object: 'event',
        type: 'payment_intent.succeeded',
        created: Math.floor(Date.now() / 1000),
        data: { object: { id: paymentId, object: 'payment_intent', metadata: { purchase_id: purchaseId } } },
      }),
    signWebhook: (body) => sdk.webhooks.generateTestHeaderString({ payload: body, secret: webhookSecret }),
    chargesFor: async (purchaseId) => stub.chargesFor(purchaseId),
    refundsFor: async (purchaseId) => stub.refundsFor(purchaseId),
    close: () => stub.close(),
  };
}

/**
 * The test provider on a fresh database of one storage adapter, its webhook secret made and kept there
 * (as at a first start). Its books are its state in that database, read through another connection, as
 * another process would read them.
 */
function openTestProvider(storageName: string): PaymentProviderFactory {
  const storage = storageAdapters.find((s) => s.name === storageName)!;
  return {
    name: `test (on ${storageName})`,
    excluded: storage.excluded,
    open: async () => {
      const opened = await storage.open();
      const provider = await createTestProvider({ store: opened.adapter, webhookSecret: null });
      const books = opened.reopen();
      const state = async (purchaseId: string) => {
        const stored = await books.providerState('test', `payment:${purchaseId}`);
        return stored ? (JSON.parse(stored.value) as { charges: number; refundId: string | null }) : null;
      };
      return {
        provider,
        tokens: {
          succeed: TEST_TOKENS.succeeds,
          decline: TEST_TOKENS.declined,
          threeDS: TEST_TOKENS.threeDSecure,
        },
        succeededWebhook: (purchaseId, paymentId) =>
          JSON.stringify({
            id: `evt_test_${randomBytes(12).toString('hex')}`,
            type: 'payment_intent.succeeded',
            created: Math.floor(Date.now() / 1000),
            data: { object: { id: paymentId, metadata: { purchaseId } } },
          }),
        signWebhook: (body) => signWebhook(body, provider.webhookSecret),
        chargesFor: async (purchaseId) => (await state(purchaseId))?.charges ?? 0,
        refundsFor: async (purchaseId) => ((await state(purchaseId))?.refundId ? 1 : 0),
        close: opened.cleanup,
      };
    },
  };
}

/** Every payment provider; the contract suite runs once per entry. */
export const paymentProviders: PaymentProviderFactory[] = [
  openTestProvider('sqlite'),
  openTestProvider('postgres'),
  { name: 'stripe (local stub of Stripe)', excluded: '', open: openStripe },
];
