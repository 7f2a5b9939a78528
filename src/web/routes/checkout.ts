import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { OnsaleError } from '../../domain/errors.js';
import type { Purchase } from '../../domain/types.js';
import type { Config } from '../../config.js';
import {
  PaymentUnavailableError,
  WebhookSignatureError,
  type PaymentProvider,
} from '../../ports/payments.js';
import type { Storage } from '../../ports/storage.js';
import { countCheckoutChanges, countWebhookFailure } from '../../metrics/metrics.js';
import { answerOf, applyWebhook, recordAnswer } from '../../shared/payment-flow.js';
import type { Lookups } from '../lookups.js';
import { notePurchase } from '../metrics-plugin.js';
import { errorResponses } from '../errors.js';
import { purchaseParams, purchaseView } from '../schemas.js';
import { neverCache } from '../no-store.js';

interface CheckoutOptions {
  config: Config;
  storage: Storage;
  lookups: Lookups;
  payments: PaymentProvider;
}

/** Printable ASCII, 1..128 characters (api.md, Idempotency-Key). */
const IDEMPOTENCY_KEY = /^[\x20-\x7e]{1,128}$/;

const paymentBody = {
  type: 'object',
  additionalProperties: false,
  required: ['paymentToken'],
  properties: { paymentToken: { type: 'string', minLength: 1, maxLength: 255, pattern: '^[\\x21-\\x7e]+$' } },
} as const;

/** Cancel takes no fields; an empty object (or no body) is fine. */
const cancelBody = { type: 'object', additionalProperties: false, properties: {} } as const;

const providerParams = {
  type: 'object',
  required: ['provider'],
  properties: { provider: { type: 'string', minLength: 1, maxLength: 32 } },
} as const;

/** Paying for a held purchase, cancelling it, and the payment provider's webhooks (api.md, Holds and payment). */
export async function checkoutRoutes(
  app: FastifyInstance,
  { config, storage, lookups, payments }: CheckoutOptions,
) {
  neverCache(app);

  /** A purchase that storage does not have yet is on the queue (or unknown: 404). */
  async function notStored(purchaseId: string, code: 'not_payable' | 'not_cancellable'): Promise<never> {
    const found = await lookups.findPurchase(purchaseId);
    if (!found) throw new OnsaleError('not_found', `no purchase ${purchaseId}`);
    throw new OnsaleError(code, `the purchase is ${found.status}`);
  }

  app.post<{ Params: { purchaseId: string }; Body: { paymentToken: string } }>(
    '/api/purchases/:purchaseId/payment',
    {
      schema: {
        tags: ['public'],
        summary: 'Pay for a held purchase: its total, in ONSALE_CURRENCY, through the payment provider',
        description:
          'An optional `Idempotency-Key` (1..128 printable ASCII characters) repeats the same attempt; without ' +
          'one each request is a new attempt (another card). Paying a confirmed purchase again charges nothing.',
        params: purchaseParams,
        body: paymentBody,
        response: {
          200: { ...purchaseView, description: 'paid: the purchase, confirmed with its tickets' },
          202: {
            ...purchaseView,
            description: 'still held: the provider asks for a step of the buyer (`payment.nextActionUrl`)',
          },
          ...errorResponses(
            'invalid_request',
            'payment_declined',
            'not_found',
            'hold_expired',
            'not_payable',
            'payload_too_large',
            'unsupported_media_type',
            'rate_limited',
            'internal_error',
            'unavailable',
          ),
        },
      },
    },
    async (request, reply) => {
      const { purchaseId } = request.params;
      notePurchase(request, purchaseId);
      const key = request.headers['idempotency-key'];
      if (key !== undefined && (typeof key !== 'string' || !IDEMPOTENCY_KEY.test(key))) {
        throw new OnsaleError('invalid_request', 'Idempotency-Key must be 1..128 printable ASCII characters');
      }
      // Each request without a key is a new attempt (another card, say); with one, a retry of the same.
      const attemptKey = key ?? randomUUID();
      // Recorded before the provider is called: a crash from here on is reconciled by a worker.
      const start = await storage.beginPayment(purchaseId, attemptKey, new Date());
      if (!start) return notStored(purchaseId, 'not_payable');
      if (start.refusal === 'already_confirmed') return reply.code(200).send(start.purchase);
      if (start.refusal) throw refusalError(start.refusal, start.purchase);

      const answer =
        start.amountCents === 0
          ? ({ kind: 'succeeded', paymentId: 'free' } as const)
          : answerOf(
              await payments
                .charge({
                  purchaseId,
                  amountCents: start.amountCents,
                  currency: config.currency,
                  paymentToken: request.body.paymentToken,
                  attemptKey,
                  returnUrl: `/purchases/${encodeURIComponent(purchaseId)}`,
                })
                .catch((error: unknown) => {
                  if (error instanceof PaymentUnavailableError) {
                    throw new OnsaleError('unavailable', 'the payment provider does not answer; try again', {
                      retryAfterSeconds: 2,
                      cause: error,
                    });
                  }
                  throw error;
                }),
            );
      const record = await recordAnswer(storage, payments, purchaseId, answer, request.log);
      const purchase = record.purchase!;
      if (answer.kind === 'declined') {
        throw new OnsaleError('payment_declined', `the payment was declined: ${answer.message}`);
      }
      if (purchase.status === 'confirmed') return reply.code(200).send(purchase);
      if (purchase.status === 'held') return reply.code(202).send(purchase);
      // The charge came after the purchase ended (expired, cancelled): refunded, and said so.
      throw refusalError(purchase.status === 'expired' ? 'hold_expired' : 'not_payable', purchase);
    },
  );

  app.post<{ Params: { purchaseId: string } }>(
    '/api/purchases/:purchaseId/cancel',
    {
      schema: {
        tags: ['public'],
        summary: 'Cancel a held or waitlisted purchase: its tickets go back on sale',
        params: purchaseParams,
        body: cancelBody,
        response: {
          200: { ...purchaseView, description: 'the purchase, cancelled (a second cancel answers the same)' },
          ...errorResponses(
            'invalid_request',
            'not_found',
            'not_cancellable',
            'payload_too_large',
            'unsupported_media_type',
            'rate_limited',
            'internal_error',
            'unavailable',
          ),
        },
      },
    },
    async (request, reply) => {
      const { purchaseId } = request.params;
      notePurchase(request, purchaseId);
      const result = await storage.cancelPurchase(purchaseId, new Date());
      if (!result) return notStored(purchaseId, 'not_cancellable');
      countCheckoutChanges(result.changes);
      if (result.outcome === 'not_cancellable') {
        throw new OnsaleError('not_cancellable', `a ${result.purchase.status} purchase cannot be cancelled`);
      }
      return reply.code(200).send(result.purchase);
    },
  );

  // Webhooks are checked against the exact bytes the provider signed: this route keeps the raw body.
  app.register(async (hooks) => {
    hooks.removeAllContentTypeParsers();
    hooks.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
    hooks.post<{ Params: { provider: string }; Body: Buffer | undefined }>(
      '/webhooks/:provider',
      {
        schema: {
          tags: ['payments'],
          summary: "The payment provider's signed events (`test` or `stripe`: the configured one)",
          description:
            'The raw body, signed in `Onsale-Signature` (test provider) or `Stripe-Signature` (stripe): ' +
            '`t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`, 300 s tolerance. An event takes effect at ' +
            'most once, however often it is delivered.',
          params: providerParams,
          response: {
            200: {
              description: 'the event was read; what it did',
              type: 'object',
              required: ['received', 'effect'],
              properties: {
                received: { type: 'boolean', enum: [true] },
                effect: { type: 'string', enum: ['applied', 'duplicate', 'ignored', 'unknown_purchase'] },
              },
            },
            ...errorResponses(
              'invalid_request',
              'not_found',
              'payload_too_large',
              'rate_limited',
              'internal_error',
              'unavailable',
            ),
          },
        },
      },
      async (request, reply: FastifyReply) => {
        if (request.params.provider !== payments.name) {
          throw new OnsaleError('not_found', `no webhooks for provider ${request.params.provider} here`);
        }
        const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
        const header = request.headers[payments.name === 'stripe' ? 'stripe-signature' : 'onsale-signature'];
        let webhook;
        try {
          webhook = payments.parseWebhook(body, typeof header === 'string' ? header : undefined);
        } catch (error) {
          if (!(error instanceof WebhookSignatureError)) throw error;
          countWebhookFailure('signature');
          request.log.warn({ reason: error.message }, 'webhook refused: bad signature');
          throw new OnsaleError('invalid_request', `webhook signature refused: ${error.message}`);
        }
        try {
          const effect = await applyWebhook(storage, payments, webhook, request.log);
          return reply.code(200).send({ received: true, effect });
        } catch (error) {
          countWebhookFailure('error');
          throw error;
        }
      },
    );
  });
}

function refusalError(refusal: 'hold_expired' | 'not_payable', purchase: Purchase): OnsaleError {
  return refusal === 'hold_expired'
    ? new OnsaleError('hold_expired', `the hold ran out at ${purchase.holdExpiresAt ?? 'its end'}`)
    : new OnsaleError('not_payable', `a ${purchase.status} purchase cannot be paid`);
}
