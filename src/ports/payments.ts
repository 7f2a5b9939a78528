/**
 * A PaymentProvider charges a held purchase, refunds it, and turns the provider's signed webhooks into
 * events. onsale keeps one payment per purchase at the provider (a Stripe PaymentIntent, say) and keys every
 * call by the purchase id, so that a retried call, a crashed web server or two tabs paying at once can never
 * charge twice: the provider answers a repeated call with the first call's result.
 *
 * Adapters live in src/adapters/payments/<provider>; `test` runs inside onsale (demo and tests), `stripe`
 * talks to Stripe through its SDK.
 */
export interface PaymentProvider {
  readonly name: string;

  /**
   * Charges `amountCents` for the purchase with the buyer's payment token. `attemptKey` tells one buyer
   * attempt from another (a declined card, then another card): the same attemptKey repeats the first
   * answer, a new one tries again on the same payment. Throws PaymentUnavailableError when the provider
   * cannot be reached (nothing is known to be charged; the caller may retry with the same attemptKey).
   */
  charge(request: ChargeRequest): Promise<ChargeResult>;

  /** The provider's current view of the purchase's payment, or null when none was ever started. */
  retrieve(purchaseId: string): Promise<ChargeResult | null>;

  /** Refunds the whole succeeded payment of a purchase. Repeating it is harmless (one refund at most). */
  refund(purchaseId: string): Promise<{ refundId: string }>;

  /**
   * Checks a webhook's signature against the endpoint secret and parses it. Throws
   * WebhookSignatureError (bad, missing or stale signature) and changes nothing then.
   */
  parseWebhook(rawBody: Buffer, signatureHeader: string | undefined): PaymentWebhook;

  /**
   * Only for a provider whose 3-D Secure step is a page of onsale's own (the test provider): records the
   * buyer's choice there and returns the signed webhook the provider sends about it, which onsale then
   * takes through its webhook route like any other. Null when the payment awaits no action.
   */
  completeAction?(purchaseId: string, outcome: 'approve' | 'fail'): Promise<SignedWebhook | null>;
}

export interface SignedWebhook {
  body: Buffer;
  signature: string;
}

export interface ChargeRequest {
  purchaseId: string;
  amountCents: number;
  /** ISO 4217, lower case ("eur"). */
  currency: string;
  paymentToken: string;
  attemptKey: string;
  /** Where the provider sends the buyer back after a 3-D Secure step. */
  returnUrl: string;
}

export type ChargeResult =
  | { status: 'succeeded'; paymentId: string }
  /** `nextActionUrl`: absolute, or a path on onsale's own site (a provider whose step is an onsale page). */
  | { status: 'requires_action'; paymentId: string; nextActionUrl: string }
  | { status: 'declined'; paymentId: string | null; message: string }
  /** Started, and neither succeeded nor declined yet (the provider is processing). */
  | { status: 'processing'; paymentId: string };

/**
 * What a webhook says. `eventId` is the provider's id of the delivery's event: the same event delivered
 * twice carries the same id, which is what makes a redelivery take effect at most once.
 */
export type PaymentWebhook =
  | { kind: 'payment_succeeded'; eventId: string; purchaseId: string; paymentId: string }
  | { kind: 'payment_failed'; eventId: string; purchaseId: string; paymentId: string; message: string }
  | { kind: 'refunded'; eventId: string; purchaseId: string; paymentId: string }
  /** Signed correctly, but nothing onsale acts on (another event type, or no purchase id attached). */
  | { kind: 'ignored'; eventId: string };

export class WebhookSignatureError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebhookSignatureError';
  }
}

export class PaymentUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PaymentUnavailableError';
  }
}
