import { createHmac } from 'node:crypto';
import { getJson } from './api.js';

/** The test provider's webhook secret the checkout tests run servers with (ONSALE_TEST_WEBHOOK_SECRET). */
export const TEST_WEBHOOK_SECRET = 'whsec_test_checkout_suite_0123456789abcdefghij';
export const CHECKOUT_ENV = { ONSALE_TEST_WEBHOOK_SECRET: TEST_WEBHOOK_SECRET };

export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<{ status: number; body: any }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

export function pay(
  baseUrl: string,
  purchaseId: string,
  paymentToken: string,
  headers: Record<string, string> = {},
) {
  return postJson(`${baseUrl}/api/purchases/${purchaseId}/payment`, { paymentToken }, headers);
}

export function cancel(baseUrl: string, purchaseId: string) {
  return postJson(`${baseUrl}/api/purchases/${purchaseId}/cancel`, {});
}

/** The buyer's click on the test provider's 3-D Secure page (a form post from the page itself). */
export async function threeDSecure(baseUrl: string, purchaseId: string, outcome: 'approve' | 'fail') {
  const res = await fetch(`${baseUrl}/payments/test/3ds/${purchaseId}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: baseUrl },
    body: `outcome=${outcome}`,
    redirect: 'manual',
  });
  await res.arrayBuffer();
  return res.status;
}

/** A webhook as the test provider signs it: `t=…,v1=HMAC-SHA256(secret, "t.body")`. */
export function signedWebhook(
  event: { id: string; type: string; purchaseId: string; paymentId?: string },
  options: { secret?: string; t?: number } = {},
): { body: string; signature: string } {
  const body = JSON.stringify({
    id: event.id,
    type: event.type,
    data: { object: { id: event.paymentId ?? 'pi_test_x', metadata: { purchaseId: event.purchaseId } } },
  });
  const t = options.t ?? Math.floor(Date.now() / 1000);
  const v1 = createHmac('sha256', options.secret ?? TEST_WEBHOOK_SECRET)
    .update(`${t}.${body}`)
    .digest('hex');
  return { body, signature: `t=${t},v1=${v1}` };
}

export async function deliverWebhook(
  baseUrl: string,
  hook: { body: string; signature?: string },
  provider = 'test',
) {
  const res = await fetch(`${baseUrl}/webhooks/${provider}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(hook.signature === undefined ? {} : { 'onsale-signature': hook.signature }),
    },
    body: hook.body,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** Polls a purchase until `accept` says yes (or throws with its last state). */
export async function waitPurchase(
  baseUrl: string,
  purchaseId: string,
  accept: (p: any) => boolean,
  timeoutMs = 30_000,
): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { status, body } = await getJson(`${baseUrl}/api/purchases/${purchaseId}`);
    if (status === 200 && accept(body)) return body;
    if (Date.now() > deadline)
      throw new Error(`purchase ${purchaseId} never got there: ${JSON.stringify(body)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Polls until a purchase leaves `queued`. */
export const waitAllocated = (baseUrl: string, purchaseId: string) =>
  waitPurchase(baseUrl, purchaseId, (p) => p.status !== 'queued');
