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
    const stripe = await import('./stripe/provider.js');
    return stripe.createStripeProvider(stripe.stripeSettingsFromEnv(env));
  }
  const { createTestProvider } = await import('./test/provider.js');
  return createTestProvider({ store: storage, webhookSecret: config.paymentSecrets.testWebhookSecret });
}
