/**
 * A local HTTP stand-in for the small part of Stripe's API that the stripe payment provider uses, since
 * Stripe cannot be reached from the test machines. It is a real node:http server on a free port; the
 * official SDK is pointed at it with its host/port/protocol options, so the SDK's own encoding, headers,
 * retries and error classes are what the tests exercise.
 *
 * What it implements, as Stripe documents it (https://docs.stripe.com/api):
 * - POST /v1/payment_intents, GET /v1/payment_intents/:id, POST /v1/payment_intents/:id/confirm,
 *   GET /v1/payment_intents/search (only `metadata['key']:'value'`), POST /v1/refunds, GET /v1/refunds;
 * - form-encoded bodies with bracketed keys (`metadata[purchase_id]=…`), JSON answers, `Bearer` keys (401);
 * - Idempotency-Key: a repeated key with the same request replays the saved answer (with
 *   `Idempotent-Replayed: true`), with other parameters it is a 400 `idempotency_error`;
 * - Stripe's test PaymentMethods: pm_card_visa succeeds, pm_card_chargeDeclined (and
 *   pm_card_chargeDeclinedInsufficientFunds) is a 402 card_error, pm_card_threeDSecure2Required needs
 *   action (a redirect_to_url when a return_url is given), any other id is a 400 resource_missing;
 * - the events Stripe would send to a webhook endpoint, kept in `events` (completeAction() plays the buyer's
 *   3-D Secure step).
 * What it does not: real 3-D Secure pages, asynchronous payment methods, search lag, rate limits, concurrent
 * requests holding the same idempotency key (each request is handled in one go, so none overlap).
 *
 * The buyer's side: a PaymentIntent that requires action redirects to GET /3ds/:id, a page with "Complete" and
 * "Fail" buttons that finishes the step and sends the buyer to the return_url, as Stripe's page would. With
 * sendEventsTo(url, secret), every event is also POSTed there, signed by the SDK's generateTestHeaderString,
 * as Stripe delivers to a webhook endpoint (once, in order; no retry schedule).
 *
 * Faults for the tests: dropResponses(n) processes the next n requests and then cuts the connection (Stripe
 * did the work, the answer was lost); hangResponses(n) processes them and never answers; failNext(n) answers
 * 500 without doing anything; forgetIdempotencyKeys() plays the 24 hours after which Stripe may forget them.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';

type Json = Record<string, unknown>;

export interface StubPaymentIntent extends Json {
  id: string;
  object: 'payment_intent';
  amount: number;
  amount_received: number;
  currency: string;
  status:
    | 'requires_payment_method'
    | 'requires_confirmation'
    | 'requires_action'
    | 'processing'
    | 'succeeded'
    | 'canceled';
  metadata: Record<string, string>;
  latest_charge: string | null;
  last_payment_error: Json | null;
  next_action: Json | null;
  payment_method: string | null;
}

interface StubCharge extends Json {
  id: string;
  object: 'charge';
  amount: number;
  amount_refunded: number;
  currency: string;
  metadata: Record<string, string>;
  payment_intent: string;
  refunded: boolean;
  status: 'succeeded' | 'failed';
}

interface StubRefund extends Json {
  id: string;
  object: 'refund';
  amount: number;
  charge: string;
  payment_intent: string;
  status: 'succeeded';
  metadata: Record<string, string>;
}

export interface StubEvent {
  id: string;
  object: 'event';
  type: string;
  created: number;
  livemode: false;
  api_version: string;
  pending_webhooks: number;
  data: { object: Json };
}

export interface StubRequest {
  method: string;
  path: string;
  idempotencyKey: string | undefined;
  replayed: boolean;
  status: number;
}

export interface StripeStub {
  /** http://127.0.0.1:PORT, for the provider's apiBase. */
  readonly url: string;
  readonly secretKey: string;
  /** Every request answered (or cut), in order. */
  readonly requests: StubRequest[];
  /** The events Stripe would have sent to a webhook endpoint, in order. */
  readonly events: StubEvent[];
  paymentIntent(id: string): StubPaymentIntent | undefined;
  /** Succeeded charges (money taken) for a purchase, by the purchase_id metadata of its PaymentIntents. */
  chargesFor(purchaseId: string): number;
  /** Refunds made for a purchase. */
  refundsFor(purchaseId: string): number;
  /** The buyer finishes (or fails) the 3-D Secure step of a PaymentIntent that requires action. */
  completeAction(paymentIntentId: string, outcome: 'succeed' | 'fail'): StubEvent;
  /** The next `count` requests (to paths matching `path`, if given) are done but their answers lost. */
  dropResponses(count: number, path?: RegExp): void;
  /** The next `count` requests (to paths matching `path`) are done, and answered never. */
  hangResponses(count: number, path?: RegExp): void;
  /** From now on, POSTs every event to a webhook endpoint, signed with its secret (null: no more). */
  sendEventsTo(url: string | null, webhookSecret?: string): void;
  /** Webhook deliveries made (see sendEventsTo), with the endpoint's status or the error. */
  readonly deliveries: Array<{ eventId: string; type: string; status: number | string }>;
  /** The next `count` requests are answered 500 without being done. */
  failNext(count: number): void;
  /** As after Stripe's 24 hours: idempotency keys seen so far are forgotten. */
  forgetIdempotencyKeys(): void;
  close(): Promise<void>;
}

const API_VERSION = '2026-11-18.endive';
const DECLINES: Record<string, { decline_code: string; message: string }> = {
  pm_card_chargeDeclined: { decline_code: 'generic_decline', message: 'Your card was declined.' },
  pm_card_chargeDeclinedInsufficientFunds: {
    decline_code: 'insufficient_funds',
    message: 'Your card has insufficient funds.',
  },
};

class StubError extends Error {
  constructor(
    readonly status: number,
    readonly body: Json,
    /** Stripe saves no idempotent answer for a request that failed validation before it ran. */
    readonly saved = true,
  ) {
    super(String(body.message));
  }
}

function stripeId(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString('base64url').replace(/[-_]/g, 'x')}`;
}

/** Parses Stripe's form encoding: `a[b]=1&c[0]=x` → { a: { b: '1' }, c: ['x'] }. */
export function parseStripeForm(text: string): Json {
  const out: Json = {};
  for (const [fullKey, value] of new URLSearchParams(text)) {
    const path = fullKey.split(/\[|\]\[?/).filter((part, i) => i === 0 || part !== '');
    let node: Record<string, unknown> | unknown[] = out;
    path.forEach((part, i) => {
      const last = i === path.length - 1;
      const key = Array.isArray(node) ? Number(part) : part;
      const container = node as Record<string | number, unknown>;
      if (last) container[key] = value;
      else {
        container[key] ??= /^\d+$/.test(path[i + 1]!) ? [] : {};
        node = container[key] as Record<string, unknown> | unknown[];
      }
    });
  }
  return out;
}

function missing(param: string): StubError {
  return new StubError(
    400,
    {
      type: 'invalid_request_error',
      code: 'parameter_missing',
      param,
      message: `Missing required param: ${param}.`,
    },
    false,
  );
}

function noSuch(kind: string, id: string, param?: string): StubError {
  return new StubError(404, {
    type: 'invalid_request_error',
    code: 'resource_missing',
    ...(param ? { param } : {}),
    message: `No such ${kind}: '${id}'`,
  });
}

export async function startStripeStub(options: { secretKey?: string } = {}): Promise<StripeStub> {
  const secretKey = options.secretKey ?? `sk_test_stub${randomBytes(8).toString('hex')}`;
  const intents = new Map<string, StubPaymentIntent>();
  const charges = new Map<string, StubCharge>();
  const refunds = new Map<string, StubRefund>();
  const saved = new Map<string, { fingerprint: string; status: number; body: Json }>();
  const requests: StubRequest[] = [];
  const events: StubEvent[] = [];
  let lose: { count: number; path: RegExp | undefined; how: 'cut' | 'hang' } = {
    count: 0,
    path: undefined,
    how: 'cut',
  };
  let endpoint: { url: string; secret: string } | undefined;
  const deliveries: StripeStub['deliveries'] = [];
  let delivering = Promise.resolve();
  const signer = new Stripe('sk_test_signer', { telemetry: false });
  let toFail = 0;
  let url = '';

  function emit(type: string, object: Json): StubEvent {
    const event: StubEvent = {
      id: stripeId('evt'),
      object: 'event',
      type,
      created: Math.floor(Date.now() / 1000),
      livemode: false,
      api_version: API_VERSION,
      pending_webhooks: 1,
      data: { object: structuredClone(object) },
    };
    events.push(event);
    if (endpoint) deliver(endpoint, event);
    return event;
  }

  /** One delivery at a time, in order, as one Stripe endpoint receives them. */
  function deliver(to: { url: string; secret: string }, event: StubEvent): void {
    const body = JSON.stringify(event, null, 2);
    delivering = delivering.then(async () => {
      const header = signer.webhooks.generateTestHeaderString({ payload: body, secret: to.secret });
      const status = await fetch(to.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json; charset=utf-8', 'stripe-signature': header },
        body,
        signal: AbortSignal.timeout(10_000),
      }).then(
        (res) => res.status,
        (error: unknown) => String(error),
      );
      deliveries.push({ eventId: event.id, type: event.type, status });
    });
  }

  function intentOf(id: string, param?: string): StubPaymentIntent {
    const intent = intents.get(id);
    if (!intent) throw noSuch('payment_intent', id, param);
    return intent;
  }

  function succeed(intent: StubPaymentIntent): StubEvent {
    const charge: StubCharge = {
      id: stripeId('ch'),
      object: 'charge',
      amount: intent.amount,
      amount_refunded: 0,
      currency: intent.currency,
      // Stripe copies the PaymentIntent's metadata onto the charge it makes.
      metadata: { ...intent.metadata },
      payment_intent: intent.id,
      refunded: false,
      status: 'succeeded',
    };
    charges.set(charge.id, charge);
    Object.assign(intent, {
      status: 'succeeded',
      amount_received: intent.amount,
      latest_charge: charge.id,
      last_payment_error: null,
      next_action: null,
    });
    emit('charge.succeeded', charge);
    return emit('payment_intent.succeeded', intent);
  }

  function fail(intent: StubPaymentIntent, error: Json): StubEvent {
    Object.assign(intent, {
      status: 'requires_payment_method',
      last_payment_error: error,
      next_action: null,
      payment_method: null,
    });
    return emit('payment_intent.payment_failed', intent);
  }

  function createIntent(params: Json): StubPaymentIntent {
    if (params.amount === undefined) throw missing('amount');
    if (params.currency === undefined) throw missing('currency');
    const amount = Number(params.amount);
    if (!Number.isInteger(amount) || amount < 1) {
      throw new StubError(
        400,
        { type: 'invalid_request_error', param: 'amount', message: 'Invalid integer' },
        false,
      );
    }
    const intent: StubPaymentIntent = {
      id: stripeId('pi'),
      object: 'payment_intent',
      amount,
      amount_received: 0,
      currency: String(params.currency).toLowerCase(),
      status: 'requires_payment_method',
      metadata: (params.metadata as Record<string, string> | undefined) ?? {},
      payment_method_types: (params.allowed_payment_method_types as string[] | undefined) ?? ['card'],
      latest_charge: null,
      last_payment_error: null,
      next_action: null,
      payment_method: null,
      created: Math.floor(Date.now() / 1000),
      livemode: false,
    };
    intent.client_secret = `${intent.id}_secret_${randomBytes(8).toString('hex')}`;
    intents.set(intent.id, intent);
    emit('payment_intent.created', intent);
    return intent;
  }

  function confirmIntent(id: string, params: Json): StubPaymentIntent {
    const intent = intentOf(id);
    if (!['requires_payment_method', 'requires_confirmation', 'requires_action'].includes(intent.status)) {
      throw new StubError(400, {
        type: 'invalid_request_error',
        code: 'payment_intent_unexpected_state',
        message: `You cannot confirm this PaymentIntent because it has a status of ${intent.status}.`,
        payment_intent: structuredClone(intent),
      });
    }
    const method = params.payment_method as string | undefined;
    if (method === undefined && intent.payment_method === null) throw missing('payment_method');
    const pm = method ?? intent.payment_method!;
    const decline = DECLINES[pm];
    if (pm === 'pm_card_visa') {
      intent.payment_method = pm;
      succeed(intent);
    } else if (decline) {
      const charge: StubCharge = {
        id: stripeId('ch'),
        object: 'charge',
        amount: intent.amount,
        amount_refunded: 0,
        currency: intent.currency,
        metadata: { ...intent.metadata },
        payment_intent: intent.id,
        refunded: false,
        status: 'failed',
      };
      charges.set(charge.id, charge);
      const error = { type: 'card_error', code: 'card_declined', charge: charge.id, ...decline };
      intent.latest_charge = charge.id;
      fail(intent, error);
      throw new StubError(402, { ...error, payment_intent: structuredClone(intent) });
    } else if (pm === 'pm_card_threeDSecure2Required') {
      const returnUrl = params.return_url as string | undefined;
      Object.assign(intent, {
        status: 'requires_action',
        payment_method: pm,
        last_payment_error: null,
        next_action: returnUrl
          ? {
              type: 'redirect_to_url',
              redirect_to_url: { url: `${url}/3ds/${intent.id}`, return_url: returnUrl },
            }
          : { type: 'use_stripe_sdk', use_stripe_sdk: { type: 'three_d_secure_redirect' } },
      });
    } else {
      throw noSuch('PaymentMethod', pm, 'payment_method');
    }
    return intent;
  }

  function createRefund(params: Json): StubRefund {
    const chargeId = params.charge as string | undefined;
    const intentId = params.payment_intent as string | undefined;
    if (!chargeId && !intentId) throw missing('charge');
    const charge = chargeId ? charges.get(chargeId) : charges.get(intentOf(intentId!).latest_charge ?? '');
    if (!charge || charge.status !== 'succeeded') {
      throw new StubError(400, {
        type: 'invalid_request_error',
        message: `This PaymentIntent (${intentId}) does not have a successful charge to refund.`,
      });
    }
    if (charge.refunded) {
      throw new StubError(400, {
        type: 'invalid_request_error',
        code: 'charge_already_refunded',
        message: `Charge ${charge.id} has already been refunded.`,
      });
    }
    const refund: StubRefund = {
      id: stripeId('re'),
      object: 'refund',
      amount: charge.amount - charge.amount_refunded,
      charge: charge.id,
      payment_intent: charge.payment_intent,
      status: 'succeeded',
      metadata: (params.metadata as Record<string, string> | undefined) ?? {},
    };
    refunds.set(refund.id, refund);
    Object.assign(charge, { amount_refunded: charge.amount, refunded: true });
    emit('refund.created', refund);
    emit('charge.refunded', charge);
    return refund;
  }

  function search(query: string): StubPaymentIntent[] {
    const match = /^metadata\[(['"])([^'"]+)\1\]:(['"])([^'"]*)\3$/.exec(query.trim());
    if (!match) {
      throw new StubError(400, {
        type: 'invalid_request_error',
        param: 'query',
        message: 'The stub only searches metadata',
      });
    }
    const [, , key, , value] = match;
    return [...intents.values()].filter((intent) => intent.metadata[key!] === value);
  }

  function route(method: string, path: string, params: Json): Json {
    const parts = path.split('/').filter(Boolean);
    if (parts[0] !== 'v1')
      throw new StubError(404, {
        type: 'invalid_request_error',
        message: `Unrecognized request URL (${method}: ${path}).`,
      });
    const [, resource, id, action] = parts;
    if (resource === 'payment_intents') {
      if (method === 'POST' && id === undefined) return createIntent(params);
      if (method === 'GET' && id === 'search') {
        const data = search(String(params.query ?? ''));
        return {
          object: 'search_result',
          data,
          has_more: false,
          next_page: null,
          url: '/v1/payment_intents/search',
        };
      }
      if (method === 'GET' && id && !action) return intentOf(id);
      if (method === 'POST' && id && action === 'confirm') return confirmIntent(id, params);
    }
    if (resource === 'refunds') {
      if (method === 'POST' && id === undefined) return createRefund(params);
      if (method === 'GET' && id === undefined) {
        const data = [...refunds.values()].filter(
          (refund) => params.payment_intent === undefined || refund.payment_intent === params.payment_intent,
        );
        return { object: 'list', data, has_more: false, url: '/v1/refunds' };
      }
    }
    throw new StubError(404, {
      type: 'invalid_request_error',
      message: `Unrecognized request URL (${method}: ${path}).`,
    });
  }

  function answer(
    res: ServerResponse,
    status: number,
    body: Json,
    headers: Record<string, string> = {},
  ): void {
    res.writeHead(status, {
      'content-type': 'application/json',
      'request-id': stripeId('req'),
      ...headers,
    });
    res.end(JSON.stringify(body));
  }

  /** The buyer's 3-D Secure step, in the buyer's browser (no API key): a page, then back to the return_url. */
  function threeDSecurePage(id: string, method: string, outcome: string | null, res: ServerResponse): void {
    const intent = intents.get(id);
    const redirect = intent?.next_action?.redirect_to_url as { return_url?: string } | undefined;
    if (!intent || intent.status !== 'requires_action' || !redirect?.return_url) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('No 3-D Secure step is waiting here');
      return;
    }
    if (method === 'POST' && (outcome === 'succeed' || outcome === 'fail')) {
      const returnUrl = new URL(redirect.return_url);
      stubApi.completeAction(id, outcome);
      // As Stripe does: back to the return_url, which says which PaymentIntent and how it went.
      returnUrl.searchParams.set('payment_intent', id);
      returnUrl.searchParams.set('redirect_status', outcome === 'succeed' ? 'succeeded' : 'failed');
      res.writeHead(303, { location: returnUrl.href }).end();
      return;
    }
    res
      .writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
      .end(
        `<!doctype html><title>Stripe stub: 3-D Secure</title><h1>3-D Secure (Stripe stub)</h1>` +
          `<p>${intent.amount} ${intent.currency}</p>` +
          `<form method="post" action="/3ds/${id}?outcome=succeed"><button>Complete</button></form>` +
          `<form method="post" action="/3ds/${id}?outcome=fail"><button>Fail</button></form>`,
      );
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const method = req.method ?? 'GET';
    const target = new URL(req.url ?? '/', 'http://stub');
    const body = Buffer.concat(chunks).toString('utf8');
    const key = method === 'POST' ? (req.headers['idempotency-key'] as string | undefined) : undefined;
    const record = (status: number, replayed = false): void => {
      requests.push({ method, path: target.pathname, idempotencyKey: key, replayed, status });
    };

    const page = /^\/3ds\/(pi_\w+)$/.exec(target.pathname);
    if (page) {
      threeDSecurePage(page[1]!, method, target.searchParams.get('outcome'), res);
      return;
    }
    if (req.headers.authorization !== `Bearer ${secretKey}`) {
      record(401);
      answer(res, 401, {
        error: { type: 'invalid_request_error', message: 'Invalid API Key provided: sk_test_****' },
      });
      return;
    }
    if (toFail > 0) {
      toFail--;
      record(500);
      answer(res, 500, { error: { type: 'api_error', message: 'An unknown error occurred' } });
      return;
    }
    const params = method === 'GET' ? parseStripeForm(target.search.slice(1)) : parseStripeForm(body);
    const fingerprint = `${method} ${target.pathname} ${JSON.stringify(params)}`;
    const lost = lose.count > 0 && (lose.path === undefined || lose.path.test(target.pathname));
    if (lost) lose.count--;
    const how = lose.how;
    const send = (status: number, json: Json, replayed: boolean): void => {
      record(status, replayed);
      // Stripe did the work; the answer never reaches the client.
      if (lost && how === 'cut') req.socket.destroy();
      else if (!lost) answer(res, status, json, replayed ? { 'idempotent-replayed': 'true' } : {});
    };

    if (key !== undefined) {
      const earlier = saved.get(key);
      if (earlier && earlier.fingerprint !== fingerprint) {
        send(
          400,
          {
            error: {
              type: 'idempotency_error',
              message:
                `Keys for idempotent requests can only be used with the same parameters they were first used with. ` +
                `Try using a key other than '${key}' if you meant to execute a different request.`,
            },
          },
          false,
        );
        return;
      }
      if (earlier) {
        send(earlier.status, earlier.body, true);
        return;
      }
    }
    let status = 200;
    let json: Json;
    let keep = true;
    try {
      json = route(method, target.pathname, params);
      json = structuredClone(json);
    } catch (error) {
      if (!(error instanceof StubError)) throw error;
      status = error.status;
      json = { error: error.body };
      keep = error.saved;
    }
    if (key !== undefined && keep) saved.set(key, { fingerprint, status, body: json });
    send(status, json, false);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      answer(res, 500, { error: { type: 'api_error', message: String(error) } });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const ofPurchase = (purchaseId: string): Set<string> =>
    new Set([...intents.values()].filter((i) => i.metadata.purchase_id === purchaseId).map((i) => i.id));

  const stubApi: StripeStub = {
    url,
    secretKey,
    requests,
    events,
    paymentIntent: (id) => intents.get(id),
    chargesFor(purchaseId) {
      const ids = ofPurchase(purchaseId);
      return [...charges.values()].filter((c) => c.status === 'succeeded' && ids.has(c.payment_intent))
        .length;
    },
    refundsFor(purchaseId) {
      const ids = ofPurchase(purchaseId);
      return [...refunds.values()].filter((r) => ids.has(r.payment_intent)).length;
    },
    completeAction(paymentIntentId, outcome) {
      const intent = intentOf(paymentIntentId);
      if (intent.status !== 'requires_action') throw new Error(`${paymentIntentId} is ${intent.status}`);
      if (outcome === 'succeed') return succeed(intent);
      return fail(intent, {
        type: 'card_error',
        code: 'payment_intent_authentication_failure',
        message:
          'We are unable to authenticate your payment method. Please choose a different payment method and try again.',
      });
    },
    deliveries,
    dropResponses(count, path) {
      lose = { count, path, how: 'cut' };
    },
    hangResponses(count, path) {
      lose = { count, path, how: 'hang' };
    },
    sendEventsTo(url, webhookSecret) {
      endpoint = url === null ? undefined : { url, secret: webhookSecret ?? '' };
    },
    failNext(count) {
      toFail = count;
    },
    forgetIdempotencyKeys() {
      saved.clear();
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
  return stubApi;
}
