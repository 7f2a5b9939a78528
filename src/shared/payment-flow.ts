import type { ProviderAnswer } from '../domain/checkout.js';
import type { ChargeResult, PaymentProvider, PaymentWebhook } from '../ports/payments.js';
import type { PaymentRecord, PaymentUpdate, Storage } from '../ports/storage.js';
import { countCheckoutChanges, countPaymentOutcome, countRefund } from '../metrics/metrics.js';

/**
 * The steps of a payment that web servers (pay, webhooks) and workers (reconciling, refunds) share. Every
 * provider answer goes through storage.recordPayment, which decides in one transaction what it does; a
 * refund it makes due is made here at once, and failing that by a worker later (the due refund is durable).
 */

/** Where failures that a worker will retry are told. */
interface Logger {
  warn(details: object, message: string): void;
}

/** A provider's answer to a charge or a retrieve, as storage records it. */
export function answerOf(result: ChargeResult | null): ProviderAnswer {
  if (!result) return { kind: 'unstarted' };
  switch (result.status) {
    case 'succeeded':
      return { kind: 'succeeded', paymentId: result.paymentId };
    case 'requires_action':
      return { kind: 'requires_action', paymentId: result.paymentId, nextActionUrl: result.nextActionUrl };
    case 'declined':
      return { kind: 'declined', paymentId: result.paymentId, message: result.message };
    case 'processing':
      return { kind: 'processing', paymentId: result.paymentId };
  }
}

/** Records a provider's answer and makes at once the refund it may make due. */
export async function recordAnswer(
  storage: Storage,
  provider: PaymentProvider,
  purchaseId: string,
  update: PaymentUpdate,
  logger?: Logger,
): Promise<PaymentRecord> {
  const record = await storage.recordPayment(purchaseId, update, new Date());
  if (record.duplicate) return record;
  countCheckoutChanges(record.changes);
  if (update.kind === 'succeeded' || update.kind === 'declined' || update.kind === 'failed') {
    countPaymentOutcome(update.kind === 'succeeded' && record.effect === 'refund_due' ? 'late' : update.kind);
  }
  if (record.effect === 'refund_due') {
    try {
      await refundNow(storage, provider, purchaseId);
      return { ...record, purchase: await storage.getPurchase(purchaseId) };
    } catch (error) {
      logger?.warn({ err: error }, 'refund failed; a worker makes it again');
    }
  }
  return record;
}

/** Refunds a purchase's payment at the provider (at most once there) and records it. */
export async function refundNow(
  storage: Storage,
  provider: PaymentProvider,
  purchaseId: string,
): Promise<void> {
  const { refundId } = await provider.refund(purchaseId);
  const record = await storage.recordPayment(purchaseId, { kind: 'refunded', refundId }, new Date());
  if (record.effect === 'recorded') countRefund();
}

/** What a webhook did. */
export type WebhookEffect = 'applied' | 'duplicate' | 'ignored' | 'unknown_purchase';

export async function applyWebhook(
  storage: Storage,
  provider: PaymentProvider,
  webhook: PaymentWebhook,
  logger?: Logger,
): Promise<WebhookEffect> {
  if (webhook.kind === 'ignored') return 'ignored';
  const hook = { provider: provider.name, eventId: webhook.eventId };
  const update: PaymentUpdate =
    webhook.kind === 'payment_succeeded'
      ? { kind: 'succeeded', paymentId: webhook.paymentId, webhook: hook }
      : webhook.kind === 'payment_failed'
        ? { kind: 'failed', paymentId: webhook.paymentId, message: webhook.message, webhook: hook }
        : { kind: 'refunded', refundId: webhook.paymentId, webhook: hook };
  const record = await recordAnswer(storage, provider, webhook.purchaseId, update, logger);
  if (!record.purchase) return 'unknown_purchase';
  return record.duplicate ? 'duplicate' : 'applied';
}

/**
 * One round of the payments a worker looks after: refunds that are due, and payments left unsettled (a
 * web server died between the charge and its record, or a webhook never came), asked of the provider.
 */
export async function reconcilePayments(
  storage: Storage,
  provider: PaymentProvider,
  logger: Logger,
  limit = 50,
): Promise<number> {
  const work = await storage.paymentWork(new Date(), limit);
  for (const { purchaseId, refundDue } of work) {
    try {
      if (refundDue) await refundNow(storage, provider, purchaseId);
      else
        await recordAnswer(
          storage,
          provider,
          purchaseId,
          answerOf(await provider.retrieve(purchaseId)),
          logger,
        );
    } catch (error) {
      logger.warn({ err: error }, 'reconciling a payment failed; it is tried again later');
    }
  }
  return work.length;
}
