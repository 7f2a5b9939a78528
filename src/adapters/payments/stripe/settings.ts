import { ConfigError } from '../../../shared/config-error.js';

/**
 * The stripe provider's settings. Read apart from the provider so that checking them loads no SDK; every
 * error names the setting and never its value (a secret key must not reach a log or a terminal).
 */
export interface StripeSettings {
  secretKey: string;
  webhookSecret: string;
  /** Where the SDK sends its requests instead of https://api.stripe.com (a local stub, a proxy). */
  apiBase?: string;
}

/** Where the SDK connects, as its host/port/protocol options take it. */
export interface StripeAddress {
  host: string;
  port: number;
  protocol: 'http' | 'https';
}

const SECRET_KEY = 'ONSALE_STRIPE_SECRET_KEY';
const WEBHOOK_SECRET = 'ONSALE_STRIPE_WEBHOOK_SECRET';
const API_BASE = 'ONSALE_STRIPE_API_BASE';
// The names Stripe's own tools and the operations guide use; the ONSALE_ name wins when both are set.
const SECRET_KEY_ALIAS = 'STRIPE_SECRET_KEY';
const WEBHOOK_SECRET_ALIAS = 'STRIPE_WEBHOOK_SECRET';

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

export function stripeSettingsFromEnv(env: NodeJS.ProcessEnv): StripeSettings {
  const secretKey = read(env, SECRET_KEY, SECRET_KEY_ALIAS);
  checkSecretKey(secretKey, SECRET_KEY);
  const webhookSecret = read(env, WEBHOOK_SECRET, WEBHOOK_SECRET_ALIAS);
  checkWebhookSecret(webhookSecret, WEBHOOK_SECRET);
  const apiBase = env[API_BASE];
  if (apiBase === undefined || apiBase === '') return { secretKey, webhookSecret };
  stripeAddress(apiBase, API_BASE);
  return { secretKey, webhookSecret, apiBase };
}

function read(env: NodeJS.ProcessEnv, name: string, alias: string): string {
  const value = env[name] || env[alias];
  if (!value) throw new ConfigError(`${name} (or ${alias}) is required with ONSALE_PAYMENTS=stripe`);
  return value;
}

/** Secret (sk_) or restricted (rk_) API keys, test or live; a publishable key (pk_) cannot charge. */
export function checkSecretKey(value: string, name = 'secretKey'): void {
  if (/^pk_/.test(value)) {
    throw new ConfigError(`${name} is a publishable key (pk_…); onsale needs a secret key (sk_… or rk_…)`);
  }
  if (!/^(sk|rk)_(test|live)_[0-9A-Za-z]+$/.test(value)) {
    throw new ConfigError(
      `${name} is not a Stripe secret key: it takes sk_test_…, sk_live_…, rk_test_… or rk_live_…`,
    );
  }
}

export function checkWebhookSecret(value: string, name = 'webhookSecret'): void {
  if (!/^whsec_[0-9A-Za-z+/=]+$/.test(value)) {
    throw new ConfigError(
      `${name} is not a webhook signing secret: it takes the endpoint's whsec_… secret from the Stripe dashboard`,
    );
  }
}

/**
 * Parses an API base URL into the SDK's host/port/protocol. Plain http is refused except on this machine:
 * every request carries the secret key.
 */
export function stripeAddress(apiBase: string, name = 'apiBase'): StripeAddress {
  let url: URL;
  try {
    url = new URL(apiBase);
  } catch {
    throw new ConfigError(`${name} is not a URL: it takes https://host[:port] (or http://127.0.0.1:port)`);
  }
  const protocol = url.protocol === 'https:' ? 'https' : url.protocol === 'http:' ? 'http' : null;
  if (protocol === null || url.username || url.password || url.search || url.hash || url.pathname !== '/') {
    throw new ConfigError(
      `${name} takes https://host[:port] (or http://127.0.0.1:port), with no path or query`,
    );
  }
  if (protocol === 'http' && !LOOPBACK.has(url.hostname)) {
    throw new ConfigError(
      `${name} may use http only on this machine (127.0.0.1, localhost, [::1]): use https`,
    );
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = url.port ? Number(url.port) : protocol === 'https' ? 443 : 80;
  return { host, port, protocol };
}
