import type { PaymentProvider } from '../../ports/payments.js';
import type { Storage } from '../../ports/storage.js';

/**
 * The payment provider of ONSALE_PAYMENTS. Each adapter is imported only when chosen: the Stripe SDK is
 * loaded by processes that use Stripe, and by no other.
 */
export async function openPaymentProvider(
  config: { payments: 'test' | 'stripe'; paymentSecrets: { testWebhookSecret: string | null } },
  storage: Storage,
  env: NodeJS.ProcessEnv = process.env,
): Promise<PaymentProvider> {
  if (config.payments === 'stripe') {
    // Through a variable: the Stripe adapter is built beside this one, and this module needs none of its
    // types, only its two functions (its settings are read and checked by it, from the environment).
    const path = './stripe/provider.js';
    const stripe = (await import(path)) as {
      stripeSettingsFromEnv: (env: NodeJS.ProcessEnv) => object;
      createStripeProvider: (options: object) => PaymentProvider;
    };
    return stripe.createStripeProvider(stripe.stripeSettingsFromEnv(env));
  }
  const { createTestProvider } = await import('./test/provider.js');
  return createTestProvider({ store: storage, webhookSecret: config.paymentSecrets.testWebhookSecret });
}
