import Stripe from 'stripe';
import {
  PaymentUnavailableError,
  WebhookSignatureError,
  type ChargeRequest,
  type ChargeResult,
  type PaymentProvider,
  type PaymentWebhook,
} from '../../../ports/payments.js';
import { checkSecretKey, checkWebhookSecret, stripeAddress } from './settings.js';

export { stripeSettingsFromEnv, type StripeSettings } from './settings.js';

export interface StripeProviderOptions {
  secretKey: string;
  webhookSecret: string;
  /** https://host[:port], or http://127.0.0.1:PORT for a local stub; https://api.stripe.com when absent. */
  apiBase?: string;
  /** Per request; the SDK's default is 80 s, far longer than a buyer waits on "Pay". */
  timeoutMs?: number;
  /** Retries of a request that failed on the network or with a 409/5xx (same idempotency key). */
  maxNetworkRetries?: number;
}

/** Stripe's own default, which its signing docs recommend. */
const WEBHOOK_TOLERANCE_SECONDS = 300;
/** purchase id → PaymentIntent id, remembered by this process so that retrieve and refund skip a search. */
const REMEMBERED_INTENTS = 50_000;
/** Purchase ids are URL-safe; anything else cannot be one, and must not reach a search query. */
const PURCHASE_ID = /^[A-Za-z0-9_-]{1,200}$/;

/**
 * The Stripe adapter of the payments port, through Stripe's official SDK. One PaymentIntent per purchase:
 * it is created with the idempotency key `onsale-purchase-<purchaseId>` (and `purchase_id` in its
 * metadata), so every process that charges the purchase gets the same PaymentIntent back from Stripe
 * without a table of its own, and confirmed server-side with the buyer's PaymentMethod under the key
 * `onsale-attempt-<purchaseId>-<attemptKey>`, so a retried attempt is answered by Stripe from its first
 * result and never charges twice. Stripe keeps idempotency keys for at least 24 hours, the longest hold.
 */
export function createStripeProvider(options: StripeProviderOptions): PaymentProvider {
  checkSecretKey(options.secretKey);
  checkWebhookSecret(options.webhookSecret);
  const address = options.apiBase === undefined ? {} : stripeAddress(options.apiBase);
  const stripe = new Stripe(options.secretKey, {
    ...address,
    timeout: options.timeoutMs ?? 20_000,
    maxNetworkRetries: options.maxNetworkRetries ?? 2,
    // No usage figures sent to Stripe about onsale's requests.
    telemetry: false,
    appInfo: { name: 'onsale' },
  });
  return new StripePaymentProvider(stripe, options.webhookSecret);
}

class StripePaymentProvider implements PaymentProvider {
  readonly name = 'stripe';
  readonly #stripe: Stripe;
  readonly #webhookSecret: string;
  readonly #intents = new Map<string, string>();

  constructor(stripe: Stripe, webhookSecret: string) {
    this.#stripe = stripe;
    this.#webhookSecret = webhookSecret;
  }

  async charge(request: ChargeRequest): Promise<ChargeResult> {
    checkChargeRequest(request);
    let intent: Stripe.PaymentIntent;
    try {
      intent = await this.#stripe.paymentIntents.create(
        {
          amount: request.amountCents,
          currency: request.currency,
          // Cards only: they answer at once or through a 3-D Secure redirect, within a hold. Bank debits
          // stay `processing` for days.
          allowed_payment_method_types: ['card'],
          metadata: { purchase_id: request.purchaseId },
        },
        { idempotencyKey: `onsale-purchase-${request.purchaseId}` },
      );
    } catch (error) {
      if (error instanceof Stripe.errors.StripeIdempotencyError) {
        // The same purchase with another amount or currency: never charge a different sum than the first.
        throw new Error(`Stripe holds a payment for this purchase with other terms: ${messageOf(error)}`, {
          cause: error,
        });
      }
      if (error instanceof Stripe.errors.StripeInvalidRequestError) {
        // An amount or currency the account cannot take: nothing can be charged.
        return { status: 'declined', paymentId: null, message: messageOf(error) };
      }
      throw unavailable(error);
    }
    this.#remember(request.purchaseId, intent.id);

    try {
      const confirmed = await this.#stripe.paymentIntents.confirm(
        intent.id,
        { payment_method: request.paymentToken, return_url: request.returnUrl },
        { idempotencyKey: `onsale-attempt-${request.purchaseId}-${request.attemptKey}` },
      );
      return resultOf(confirmed);
    } catch (error) {
      if (error instanceof Stripe.errors.StripeCardError) {
        return { status: 'declined', paymentId: intent.id, message: messageOf(error) };
      }
      if (error instanceof Stripe.errors.StripeIdempotencyError) {
        // The same attempt again with another token: the first answer stands, as Stripe now sees it.
        return resultOf(await this.#retrieveIntent(intent.id));
      }
      if (error instanceof Stripe.errors.StripeInvalidRequestError) {
        // Already paid (another tab, another attempt) or being processed: say what the payment is.
        if (error.code === 'payment_intent_unexpected_state') {
          return resultOf(await this.#retrieveIntent(intent.id));
        }
        // A PaymentMethod Stripe does not know or will not use here: the buyer's token, nothing charged.
        return { status: 'declined', paymentId: intent.id, message: messageOf(error) };
      }
      throw unavailable(error);
    }
  }

  async retrieve(purchaseId: string): Promise<ChargeResult | null> {
    const id = await this.#findIntent(purchaseId);
    return id === null ? null : resultOf(await this.#retrieveIntent(id));
  }

  async refund(purchaseId: string): Promise<{ refundId: string }> {
    const id = await this.#findIntent(purchaseId);
    if (id === null) {
      // refund() follows a payment the caller saw succeed; Stripe's search can lag behind it by a minute.
      throw new PaymentUnavailableError('Stripe shows no payment for this purchase yet; retry later');
    }
    const intent = await this.#retrieveIntent(id);
    if (intent.status !== 'succeeded') {
      throw new Error(`The payment of this purchase has not succeeded (${intent.status}): nothing to refund`);
    }
    try {
      // Keyed by the PaymentIntent, which has one successful charge at most: one refund, however often asked.
      const refund = await this.#stripe.refunds.create(
        { payment_intent: id, metadata: { purchase_id: purchaseId } },
        { idempotencyKey: `onsale-refund-${id}` },
      );
      return { refundId: refund.id };
    } catch (error) {
      if (
        error instanceof Stripe.errors.StripeInvalidRequestError &&
        error.code === 'charge_already_refunded'
      ) {
        // Refunded earlier, after the idempotency key was forgotten, or from the dashboard.
        const earlier = await this.#call(() => this.#stripe.refunds.list({ payment_intent: id, limit: 10 }));
        const done = earlier.data.find(
          (refund) => refund.status !== 'failed' && refund.status !== 'canceled',
        );
        if (done) return { refundId: done.id };
      }
      throw unavailable(error);
    }
  }

  parseWebhook(rawBody: Buffer, signatureHeader: string | undefined): PaymentWebhook {
    if (!signatureHeader) throw new WebhookSignatureError('No Stripe-Signature header');
    let event: Stripe.Event;
    try {
      event = this.#stripe.webhooks.constructEvent(
        rawBody,
        signatureHeader,
        this.#webhookSecret,
        WEBHOOK_TOLERANCE_SECONDS,
      );
    } catch (error) {
      // Messages of our own: the SDK's may quote the end of the endpoint secret to help debugging.
      if (error instanceof Stripe.errors.StripeSignatureVerificationError) {
        throw new WebhookSignatureError(
          /tolerance/i.test(error.message)
            ? `Stripe-Signature is older than ${WEBHOOK_TOLERANCE_SECONDS} s`
            : 'Stripe-Signature does not match the body and the endpoint secret',
        );
      }
      throw new WebhookSignatureError('The signed body is not a Stripe event');
    }
    if (typeof event?.id !== 'string' || typeof event.type !== 'string') {
      throw new WebhookSignatureError('The signed body is not a Stripe event');
    }
    const webhook = webhookOf(event);
    if (webhook.kind !== 'ignored') this.#remember(webhook.purchaseId, webhook.paymentId);
    return webhook;
  }

  #remember(purchaseId: string, intentId: string): void {
    this.#intents.delete(purchaseId);
    this.#intents.set(purchaseId, intentId);
    if (this.#intents.size > REMEMBERED_INTENTS) {
      this.#intents.delete(this.#intents.keys().next().value!);
    }
  }

  /**
   * The PaymentIntent of a purchase: remembered by this process, or found by Stripe's search on the
   * purchase_id metadata (another process charged it, or this one restarted). Search is eventually
   * consistent (Stripe: usually within a minute), so a payment a moment old may not be found yet.
   */
  async #findIntent(purchaseId: string): Promise<string | null> {
    if (!PURCHASE_ID.test(purchaseId)) return null;
    const known = this.#intents.get(purchaseId);
    if (known !== undefined) return known;
    const found = await this.#call(() =>
      this.#stripe.paymentIntents.search({ query: `metadata['purchase_id']:'${purchaseId}'`, limit: 10 }),
    );
    // One PaymentIntent per purchase; should there be more (a key forgotten), the paid one counts.
    const intent =
      found.data.find((candidate) => candidate.status === 'succeeded') ??
      found.data.toSorted((a, b) => b.created - a.created)[0];
    if (intent === undefined) return null;
    this.#remember(purchaseId, intent.id);
    return intent.id;
  }

  #retrieveIntent(id: string): Promise<Stripe.PaymentIntent> {
    return this.#call(() => this.#stripe.paymentIntents.retrieve(id));
  }

  async #call<T>(request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (error) {
      throw unavailable(error);
    }
  }
}

function checkChargeRequest(request: ChargeRequest): void {
  if (!PURCHASE_ID.test(request.purchaseId)) throw new Error('purchaseId is not a purchase id');
  if (!Number.isSafeInteger(request.amountCents) || request.amountCents <= 0) {
    throw new Error(`amountCents must be a positive integer, not ${request.amountCents}`);
  }
  if (!/^[a-z]{3}$/.test(request.currency)) throw new Error(`currency must be ISO 4217 in lower case`);
  // Stripe takes idempotency keys of up to 255 characters.
  if (request.attemptKey.length === 0 || request.attemptKey.length > 200) {
    throw new Error('attemptKey must have 1 to 200 characters');
  }
}

/** What a PaymentIntent says to onsale. */
function resultOf(intent: Stripe.PaymentIntent): ChargeResult {
  const paymentId = intent.id;
  switch (intent.status) {
    case 'succeeded':
      return { status: 'succeeded', paymentId };
    case 'requires_action': {
      const url = intent.next_action?.redirect_to_url?.url;
      if (url) return { status: 'requires_action', paymentId, nextActionUrl: url };
      // Confirmed without a return_url (not by onsale): a step only Stripe.js can show.
      return {
        status: 'declined',
        paymentId,
        message: 'This payment needs a step onsale cannot show; pay again',
      };
    }
    case 'processing':
    case 'requires_capture':
      return { status: 'processing', paymentId };
    case 'canceled':
      return { status: 'declined', paymentId, message: 'The payment was cancelled' };
    default:
      // requires_payment_method (declined, or not tried yet) and requires_confirmation: nothing charged.
      return {
        status: 'declined',
        paymentId,
        message: intent.last_payment_error?.message ?? 'Not paid yet',
      };
  }
}

function webhookOf(event: Stripe.Event): PaymentWebhook {
  const eventId = event.id;
  const object = (event.data as { object?: unknown } | undefined)?.object as
    { id?: unknown; metadata?: Record<string, unknown> | null } | undefined;
  const purchaseId = object?.metadata?.purchase_id;
  if (typeof purchaseId !== 'string' || typeof object?.id !== 'string') return { kind: 'ignored', eventId };
  switch (event.type) {
    case 'payment_intent.succeeded':
      return { kind: 'payment_succeeded', eventId, purchaseId, paymentId: object.id };
    case 'payment_intent.payment_failed': {
      const intent = object as Stripe.PaymentIntent;
      const message = intent.last_payment_error?.message ?? 'The payment failed';
      return { kind: 'payment_failed', eventId, purchaseId, paymentId: object.id, message };
    }
    case 'charge.refunded': {
      const charge = object as Stripe.Charge;
      const paymentId =
        typeof charge.payment_intent === 'string' ? charge.payment_intent : charge.payment_intent?.id;
      // A partial refund (made in the dashboard) leaves the purchase paid.
      if (!charge.refunded || typeof paymentId !== 'string') return { kind: 'ignored', eventId };
      return { kind: 'refunded', eventId, purchaseId, paymentId };
    }
    default:
      return { kind: 'ignored', eventId };
  }
}

/** Stripe's message without the SDK's "[req_…] " prefix. */
function messageOf(error: Stripe.errors.StripeError): string {
  const raw = error.raw as { message?: unknown } | undefined;
  return typeof raw?.message === 'string' ? raw.message : error.message;
}

/**
 * A failure to reach Stripe or to be served by it: the network, a timeout, a 409 or 5xx the retries did not
 * get past, a rate limit, or a key Stripe refuses. Nothing is known to be charged; the same call may be
 * repeated. Anything else (a bug of ours) is passed on as it is.
 */
function unavailable(error: unknown): unknown {
  if (!(error instanceof Stripe.errors.StripeError)) return error;
  if (
    error instanceof Stripe.errors.StripeConnectionError ||
    error instanceof Stripe.errors.StripeAPIError ||
    error instanceof Stripe.errors.StripeRateLimitError ||
    error.statusCode === 409
  ) {
    return new PaymentUnavailableError(`Stripe cannot be reached: ${messageOf(error)}`, { cause: error });
  }
  if (
    error instanceof Stripe.errors.StripeAuthenticationError ||
    error instanceof Stripe.errors.StripePermissionError
  ) {
    // Stripe's message quotes part of the key: keep it out of logs.
    return new PaymentUnavailableError(`Stripe refused the secret key (HTTP ${error.statusCode})`);
  }
  return error;
}
