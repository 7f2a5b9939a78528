import { createHmac, timingSafeEqual } from 'node:crypto';
import { WebhookSignatureError } from '../../../ports/payments.js';

/** How old a signed webhook may be (Stripe's default tolerance). */
export const TOLERANCE_SECONDS = 300;

/** The header value Stripe sends, `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`, for `body`. */
export function signWebhook(
  body: Buffer | string,
  secret: string,
  nowSeconds = Math.floor(Date.now() / 1000),
): string {
  return `t=${nowSeconds},v1=${hmac(secret, nowSeconds, body)}`;
}

function hmac(secret: string, t: number | string, body: Buffer | string): string {
  return createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex');
}

/**
 * Checks a Stripe-style signature header: one `t` and one or more `v1` (a secret being rolled signs
 * twice), any of which must match in constant time, and `t` within TOLERANCE_SECONDS of now. Throws
 * WebhookSignatureError otherwise.
 */
export function verifyWebhook(
  body: Buffer,
  header: string | undefined,
  secret: string,
  nowSeconds = Math.floor(Date.now() / 1000),
): void {
  if (!header || header.length > 4096) throw new WebhookSignatureError('no signature header');
  let t: string | null = null;
  const signatures: string[] = [];
  for (const part of header.split(',')) {
    const at = part.indexOf('=');
    if (at < 0) continue;
    const key = part.slice(0, at).trim();
    const value = part.slice(at + 1).trim();
    if (key === 't') t = value;
    else if (key === 'v1') signatures.push(value);
  }
  if (t === null || !/^\d{1,12}$/.test(t) || signatures.length === 0) {
    throw new WebhookSignatureError('the signature header has no timestamp or no v1 signature');
  }
  if (Math.abs(nowSeconds - Number(t)) > TOLERANCE_SECONDS) {
    throw new WebhookSignatureError('the signature is too old (or from the future)');
  }
  const expected = Buffer.from(hmac(secret, t, body), 'hex');
  const matches = signatures.some((candidate) => {
    if (!/^[0-9a-f]{64}$/i.test(candidate)) return false;
    return timingSafeEqual(Buffer.from(candidate, 'hex'), expected);
  });
  if (!matches) throw new WebhookSignatureError('the signature does not match');
}
