import type { PaymentProvider } from '../../ports/payments.js';
import type { Storage } from '../../ports/storage.js';

/**
 * The payment provider of ONSALE_PAYMENTS. Each adapter is imported only when chosen: the Stripe SDK is
 * loaded by processes that use Stripe, and by no other.
 */
export async function openPaymentProvider(
  config: {
    payments: 'test' | 'stripe';
    paymentSecrets: {
      testWebhookSecret: string | null;
      stripeSecretKey: string | null;
      stripeWebhookSecret: string | null;
    };
  },
  storage: Storage,
): Promise<PaymentProvider> {
  if (config.payments === 'stripe') {
    // Through a variable: the Stripe adapter is built beside this one, and this module does not need its
    // types, only its factory.
    const path = '../payments/stripe/provider.js';
    const { createStripeProvider } = (await import(path)) as {
      createStripeProvider: (options: { secretKey: string; webhookSecret: string }) => PaymentProvider;
    };
    return createStripeProvider({
      secretKey: config.paymentSecrets.stripeSecretKey!,
      webhookSecret: config.paymentSecrets.stripeWebhookSecret!,
    });
  }
  const { createTestProvider } = await import('./test/provider.js');
  return createTestProvider({ store: storage, webhookSecret: config.paymentSecrets.testWebhookSecret });
}
