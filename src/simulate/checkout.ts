import type { Pool } from 'undici';
import { requests, type RequestSpec } from '../client/index.js';
import type { FinalPurchase } from './invariants.js';

/**
 * The buyer at checkout: what a buyer whose purchase is held does with it (pay, a declined card then a good
 * one, 3-D Secure approved on the test provider's page, cancel, or nothing until the hold runs out), played
 * over HTTP exactly as a browser and the API allow. Shared by `onsale simulate` and the checkout flood test.
 */

export const ROLES = ['pay', 'decline_then_pay', 'three_d_secure', 'cancel', 'abandon'] as const;
export type Role = (typeof ROLES)[number];

/** The share of held purchases that play each role; fractions that sum to 1. */
export type CheckoutMix = Record<Role, number>;

/** The flags' rates as given (each 0..1, together ≤ 1): what they leave pays. */
export interface MixRates {
  payRate?: number;
  declineRate?: number;
  threeDsRate?: number;
  cancelRate?: number;
  abandonRate?: number;
}

/** The mix the rates describe, or the flags (with their sum) when they add up to more than 1. */
export function mixOf(rates: MixRates): CheckoutMix | { tooMuch: number } {
  const given = {
    decline_then_pay: rates.declineRate ?? 0,
    three_d_secure: rates.threeDsRate ?? 0,
    cancel: rates.cancelRate ?? 0,
    abandon: rates.abandonRate ?? 0,
  };
  const sum = (rates.payRate ?? 0) + Object.values(given).reduce((a, b) => a + b, 0);
  // A little room for decimal fractions such as 0.7 + 0.2 + 0.1.
  if (sum > 1 + 1e-9) return { tooMuch: sum };
  const rest = 1 - Object.values(given).reduce((a, b) => a + b, 0);
  // Rounded, so that 1 − 0.2 − 0.2 − 0.2 reads 0.4.
  return { ...given, pay: Math.max(0, Math.round(rest * 1e9) / 1e9) };
}

/**
 * The role of a purchase, from its id: a stable hash mapped onto the mix, so each process of a run (and a
 * second look at the same purchase) agrees without telling one another.
 */
export function roleOf(purchaseId: string, mix: CheckoutMix): Role {
  let h = 0x811c9dc5;
  for (let i = 0; i < purchaseId.length; i++) h = Math.imul(h ^ purchaseId.charCodeAt(i), 0x01000193);
  const u = (h >>> 0) / 4294967296;
  let edge = 0;
  for (const role of ROLES) {
    edge += mix[role];
    if (u < edge) return role;
  }
  return 'pay';
}

/** An answer as the buyer sees it: status, the JSON body (if any), the Location header. */
export interface Answer {
  status: number;
  /** Parsed JSON; null when there was none. */
  body: unknown;
  location?: string;
  text: string;
}

/** Sends one request of onsale/client's builders; status 0 when no answer came (connection lost, or none in time). */
export type Send = (spec: RequestSpec) => Promise<Answer>;

/** A buyer's way to the server: how it sends, and the site's origin its browser would name in a form post. */
export interface Buyer {
  send: Send;
  origin: string;
}

function answerOf(status: number, text: string, location: unknown): Answer {
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  return { status, body, text, ...(typeof location === 'string' ? { location } : {}) };
}

/**
 * How long a buyer waits for an answer before taking it as lost and sending the request again (politely):
 * onsale answers in milliseconds, and a connection that died unanswered must cost seconds, not the HTTP
 * client's default of 300 s.
 */
export const ANSWER_TIMEOUT_MS = 5_000;

/** A Send on an undici pool, under the server's path prefix `base`. */
export function poolSender(pool: Pool, base: string, timeoutMs = ANSWER_TIMEOUT_MS): Send {
  const send: Send = async (spec) => {
    try {
      const res = await pool.request({
        ...spec,
        path: base + spec.path,
        signal: AbortSignal.timeout(timeoutMs),
      });
      return answerOf(res.statusCode, await res.body.text(), res.headers.location);
    } catch {
      return { status: 0, body: null, text: '' };
    }
  };
  return send;
}

/** A Send with fetch, to the server at `baseUrl` (redirects are answers, not followed). */
export function fetchSender(baseUrl: string, timeoutMs = ANSWER_TIMEOUT_MS): Send {
  return async (spec) => {
    try {
      const res = await fetch(`${baseUrl}${spec.path}`, {
        method: spec.method,
        headers: spec.headers,
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
        ...(spec.body === undefined ? {} : { body: spec.body }),
      });
      return answerOf(res.status, await res.text(), res.headers.get('location'));
    } catch {
      return { status: 0, body: null, text: '' };
    }
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The same request sent again on 429, 503 or no answer, as a polite buyer would, up to `retries` times.
 * Sending again is safe: a payment carries its Idempotency-Key (the same attempt, charged once), a cancel
 * answers the same 200 twice, the 3-D Secure page is a read and its approval completes the action once.
 */
export function politely(send: Send, retries = 200): Send {
  return async (spec) => {
    for (let attempt = 0; ; attempt++) {
      const answer = await send(spec);
      const again = answer.status === 0 || answer.status === 429 || answer.status === 503;
      if (!again || attempt >= retries) return answer;
      await sleep(Math.min(100 * 2 ** Math.min(attempt, 4), 1000));
    }
  };
}

/** What a buyer did with a held purchase, and the purchase as last answered (null: no answer said). */
export interface RoleOutcome {
  role: Role;
  /** The buyer was told "declined" (402) before paying with a good card. */
  declinedShown: boolean;
  /** The buyer went through the 3-D Secure page and approved. */
  approved3ds: boolean;
  purchase: FinalPurchase | null;
}

/**
 * Plays `role` on the held purchase `purchaseId`. The 3-D Secure step is done as a browser does it: the page
 * at `payment.nextActionUrl` is read, and its form posted back with the "Approve" button's value and this
 * site's Origin. Each payment attempt has its own Idempotency-Key, so a retried request charges once.
 */
export async function playRole(buyer: Buyer, purchaseId: string, role: Role): Promise<RoleOutcome> {
  const { send } = buyer;
  const outcome: RoleOutcome = { role, declinedShown: false, approved3ds: false, purchase: null };
  const attempt = async (token: string) => {
    const answer = await send(requests.pay(purchaseId, token, { idempotencyKey: `${purchaseId}-${token}` }));
    if (answer.status === 200 || answer.status === 202) outcome.purchase = answer.body as FinalPurchase;
    return answer;
  };
  switch (role) {
    case 'pay':
      await attempt('tok_visa');
      break;
    case 'decline_then_pay':
      if ((await attempt('tok_chargeDeclined')).status === 402) outcome.declinedShown = true;
      await attempt('tok_visa');
      break;
    case 'three_d_secure': {
      const started = await attempt('tok_threeDSecure');
      const url = (started.body as { payment?: { nextActionUrl?: unknown } } | null)?.payment?.nextActionUrl;
      if (started.status === 202 && typeof url === 'string') {
        outcome.approved3ds = await approveOnPage(buyer, url);
      }
      break;
    }
    case 'cancel': {
      const answer = await send(requests.cancel(purchaseId));
      if (answer.status === 200) outcome.purchase = answer.body as FinalPurchase;
      break;
    }
    case 'abandon':
      break;
  }
  return outcome;
}

/** The 3-D Secure page's form, read and posted back with "Approve"; true when the page took it (303). */
async function approveOnPage({ send, origin }: Buyer, pageUrl: string): Promise<boolean> {
  const path = pageUrl.startsWith('/') ? pageUrl : new URL(pageUrl).pathname;
  const page = await send({ method: 'GET', path, headers: { accept: 'text/html' } });
  if (page.status !== 200) return false;
  const form = /<form[^>]*method="post"[^>]*action="([^"]+)"/i.exec(page.text);
  const button = /<button[^>]*name="([^"]+)"[^>]*value="([^"]+)"[^>]*>\s*Approve\s*</i.exec(page.text);
  if (!form || !button) return false;
  const body = new URLSearchParams({ [unescapeHtml(button[1]!)]: unescapeHtml(button[2]!) }).toString();
  const posted = await send({
    method: 'POST',
    path: unescapeHtml(form[1]!),
    // A browser names the page's origin, which the server checks.
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin },
    body,
  });
  return posted.status === 303;
}

function unescapeHtml(s: string): string {
  return s.replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n))).replaceAll('&amp;', '&');
}
