import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { QUEUE_SCHEMES, queueUrlProblem, STORAGE_SCHEMES } from './adapters/index.js';
import { checkReplicaUrls, checkShardUrls, isSharded } from './adapters/sharding/urls.js';
import { ConfigError } from './shared/config-error.js';

/** A rate as "N per window": e.g. 10 purchase requests per 10 seconds. `count` 0 means no limit. */
export interface Rate {
  count: number;
  windowMs: number;
}

/** Every setting of every command, resolved: flag, else environment variable, else default. */
export interface Config {
  port: number;
  host: string;
  dataDir: string;
  /** One database URL, or several postgres:// URLs separated by commas: the shards. */
  databaseUrl: string;
  /** Streaming replicas for reads, one per shard in the same order ('' for none); null: no replicas. */
  databaseReplicaUrl: string | null;
  queueUrl: string;
  /** Where the waiting rooms' lines live: a redis:// URL, or null for the database. */
  roomUrl: string | null;
  web: number;
  workersMin: number;
  workersMax: number;
  maxQueueDepth: number;
  logLevel: string;
  /** `auto` until a supervisor or command resolves it (src/shared/logger.ts). */
  logFormat: 'json' | 'pretty' | 'auto';
  bodyLimit: number;
  buyerRate: Rate;
  addressRate: Rate;
  rateLimitExempt: string[];
  /** Milliseconds a client has to send a whole request (headers and body); slower: 408 and closed. */
  requestTimeout: number;
  maxConnectionsPerClient: number;
  maxStreamsPerClient: number;
  batchSize: number;
  maxAttempts: number;
  /** Whether processes record metrics and web servers serve /metrics (off: for the benchmark's baseline). */
  metrics: boolean;
  /** Port of a standalone worker's own /metrics listener; null: none. */
  metricsPort: number | null;
  trustProxy: string[];
  drainDelay: number;
  lb: 'haproxy' | 'nginx';
  /** Where ticket emails are sent through; null: mail is off. */
  smtpUrl: string | null;
  mailFrom: string;
  /** The address buyers reach the pages at, for links in emails (no trailing slash). */
  publicUrl: string;
  /** The payment provider of held purchases. */
  payments: 'test' | 'stripe';
  /** ISO 4217 code, lower case, that prices are charged in. */
  currency: string;
  /**
   * The test provider's webhook secret, from the environment only (never a flag, which `ps` shows); null:
   * one made and kept in the database. Stripe's settings are read by its adapter (checked here for presence).
   */
  paymentSecrets: { testWebhookSecret: string | null };
}

export { ConfigError };

type Parser<T> = (raw: string) => T;

/** One setting: how it is spelled on the command line and in the environment, and what it accepts. */
export interface Setting<K extends keyof Config = keyof Config> {
  key: K;
  flag: string;
  env: string;
  description: string;
  accepts: string;
  parse: Parser<Config[K]>;
  /** A value that may hold a password: a refused one is not echoed back. */
  secret?: boolean;
  /** Default as text (what --help shows); null when derived from other settings. */
  fallback: (partial: Partial<Config>) => string | null;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function integer(min: number, max = Number.MAX_SAFE_INTEGER): Parser<number> {
  return (raw) => {
    if (!/^\d+$/.test(raw.trim())) throw new Error('not a whole number');
    const n = Number(raw);
    if (n < min || n > max) throw new Error(`out of range`);
    return n;
  };
}

function rate(raw: string): Rate {
  const text = raw.trim();
  if (text === '0' || text === 'off') return { count: 0, windowMs: 1000 };
  const m = /^(\d+)\/(\d+)?(ms|s|m)$/.exec(text);
  if (!m) throw new Error('not a rate');
  const unit = m[3] === 'ms' ? 1 : m[3] === 's' ? 1000 : 60_000;
  const windowMs = Number(m[2] ?? 1) * unit;
  const count = Number(m[1]);
  if (windowMs <= 0 || count <= 0) throw new Error('not a rate');
  return { count, windowMs };
}

function url(schemes: readonly string[]): Parser<string> {
  return (raw) => {
    const text = raw.trim();
    if (!schemes.some((s) => text.startsWith(s)) || text.replace(/^[a-z]+:(\/\/)?/, '') === '') {
      throw new Error('not a supported URL');
    }
    return text;
  };
}

function setting<K extends keyof Config>(s: Setting<K>): Setting<K> {
  return s;
}

export const SETTINGS = [
  setting({
    key: 'port',
    flag: '--port',
    env: 'PORT',
    description: 'HTTP port',
    accepts: 'a port number 0..65535',
    parse: integer(0, 65535),
    fallback: () => '3000',
  }),
  setting({
    key: 'host',
    flag: '--host',
    env: 'HOST',
    description: 'address to listen on',
    accepts: 'a host name or IP address',
    parse: (raw) => {
      if (!/^[A-Za-z0-9.:\-[\]]+$/.test(raw.trim())) throw new Error('not a host');
      return raw.trim();
    },
    fallback: () => '127.0.0.1',
  }),
  setting({
    key: 'dataDir',
    flag: '--data-dir',
    env: 'ONSALE_DATA_DIR',
    description: 'folder for the embedded database, the generated admin token and logs',
    accepts: 'a folder path',
    parse: (raw) => {
      if (raw.trim() === '') throw new Error('empty');
      return resolve(raw);
    },
    fallback: () => './data',
  }),
  setting({
    key: 'databaseUrl',
    flag: '--database-url',
    env: 'ONSALE_DATABASE_URL',
    description:
      'the database; several postgres:// URLs separated by commas are shards (events spread over them)',
    accepts: `a URL starting with ${STORAGE_SCHEMES.join(' or ')} (sqlite:PATH), or comma-separated postgres://user@host:port/database URLs`,
    parse: (raw) => {
      if (!isSharded(raw)) return url(STORAGE_SCHEMES)(raw);
      checkShardUrls(raw);
      return raw.trim();
    },
    fallback: (c) => `sqlite:${c.dataDir}/onsale.db`,
  }),
  setting({
    key: 'databaseReplicaUrl',
    flag: '--database-replica-url',
    env: 'ONSALE_DATABASE_REPLICA_URL',
    description:
      'PostgreSQL streaming replicas that serve reads while less than 500 ms behind, one per shard in the order of the database URL',
    accepts: 'comma-separated postgres:// URLs (an empty entry: none for that shard), or none',
    parse: (raw) => (raw.trim() === '' || raw.trim() === 'none' ? null : raw.trim()),
    fallback: () => 'none',
  }),
  setting({
    key: 'queueUrl',
    flag: '--queue-url',
    env: 'ONSALE_QUEUE_URL',
    description: 'the job queue (default: a queue table in the database)',
    accepts: `a URL starting with ${QUEUE_SCHEMES.join(' or ')}`,
    parse: url(QUEUE_SCHEMES),
    fallback: (c) => c.databaseUrl ?? null,
  }),
  setting({
    key: 'roomUrl',
    flag: '--room-url',
    env: 'ONSALE_ROOM_URL',
    description: "where the waiting rooms' lines live (default: the database)",
    accepts: 'database, or a redis:// or rediss:// URL (one server or a cluster, as ONSALE_QUEUE_URL)',
    parse: (raw) => {
      const text = raw.trim();
      if (text === 'database') return null;
      if (!/^rediss?:\/\//i.test(text)) throw new Error('not database or a redis:// URL');
      const problem = queueUrlProblem(text);
      if (problem) throw new Error(problem);
      return text;
    },
    secret: true,
    fallback: () => 'database',
  }),
  setting({
    key: 'web',
    flag: '--web',
    env: 'ONSALE_WEB',
    description: 'web server processes for start and cluster',
    accepts: 'a whole number 1..256',
    parse: integer(1, 256),
    fallback: () => String(availableParallelism()),
  }),
  setting({
    key: 'workersMin',
    flag: '--workers-min',
    env: 'ONSALE_WORKERS_MIN',
    description: 'fewest worker processes',
    accepts: 'a whole number 1..256',
    parse: integer(1, 256),
    fallback: () => '1',
  }),
  setting({
    key: 'workersMax',
    flag: '--workers-max',
    env: 'ONSALE_WORKERS_MAX',
    description: 'most worker processes',
    accepts: 'a whole number 1..256, at least --workers-min',
    parse: integer(1, 256),
    fallback: () => '4',
  }),
  setting({
    key: 'maxQueueDepth',
    flag: '--max-queue-depth',
    env: 'ONSALE_MAX_QUEUE_DEPTH',
    description: 'queued purchases above which new ones are refused with 503',
    accepts: 'a whole number ≥ 1',
    parse: integer(1),
    fallback: () => '1000000',
  }),
  setting({
    key: 'logLevel',
    flag: '--log-level',
    env: 'LOG_LEVEL',
    description: 'pino log level',
    accepts: LOG_LEVELS.join(', '),
    parse: (raw) => {
      if (!LOG_LEVELS.includes(raw.trim())) throw new Error('unknown level');
      return raw.trim();
    },
    fallback: () => 'info',
  }),
  setting({
    key: 'logFormat',
    flag: '--log-format',
    env: 'LOG_FORMAT',
    description: 'log lines as JSON or human-readable (default: pretty on a terminal, JSON otherwise)',
    accepts: 'json, pretty or auto',
    parse: (raw) => {
      const format = raw.trim();
      if (format !== 'json' && format !== 'pretty' && format !== 'auto') throw new Error('unknown format');
      return format;
    },
    fallback: () => 'auto',
  }),
  setting({
    key: 'bodyLimit',
    flag: '--body-limit',
    env: 'ONSALE_BODY_LIMIT',
    description: 'largest request body in bytes (larger: 413)',
    accepts: 'a whole number 256..10485760',
    parse: integer(256, 10 * 1024 * 1024),
    fallback: () => '16384',
  }),
  setting({
    key: 'buyerRate',
    flag: '--buyer-rate',
    env: 'ONSALE_BUYER_RATE',
    description: 'purchase requests one buyer may send, per web server process',
    accepts: 'N/WINDOW such as 10/10s, 5/s or 100/m; 0 or off for no limit',
    parse: rate,
    fallback: () => '10/10s',
  }),
  setting({
    key: 'addressRate',
    flag: '--address-rate',
    env: 'ONSALE_ADDRESS_RATE',
    description: 'requests one client address may send, per web server process',
    accepts: 'N/WINDOW such as 2000/10s; 0 or off for no limit',
    parse: rate,
    fallback: () => '2000/10s',
  }),
  setting({
    key: 'rateLimitExempt',
    flag: '--rate-limit-exempt',
    env: 'ONSALE_RATE_LIMIT_EXEMPT',
    description: 'client addresses never address-limited (local load generators and simulators)',
    accepts: 'a comma-separated list of IP addresses, or none',
    parse: (raw) => {
      const list = raw.trim() === '' || raw.trim() === 'none' ? [] : raw.split(',').map((a) => a.trim());
      if (list.some((a) => !/^[0-9a-fA-F.:]+$/.test(a))) throw new Error('not a list of IP addresses');
      return list;
    },
    fallback: () => 'none',
  }),
  setting({
    key: 'requestTimeout',
    flag: '--request-timeout',
    env: 'ONSALE_REQUEST_TIMEOUT',
    description:
      'milliseconds a client has to send a whole request, headers and body; slower ones get 408 and are closed',
    accepts: 'a whole number of milliseconds 1000..600000',
    parse: integer(1000, 600_000),
    fallback: () => '30000',
  }),
  setting({
    key: 'maxConnectionsPerClient',
    flag: '--max-connections-per-client',
    env: 'ONSALE_MAX_CONNECTIONS_PER_CLIENT',
    description:
      'open connections one client address may hold on a web server process; more are closed (trusted proxies and exempt addresses: no cap)',
    accepts: 'a whole number 1..100000',
    parse: integer(1, 100_000),
    fallback: () => '256',
  }),
  setting({
    key: 'maxStreamsPerClient',
    flag: '--max-streams-per-client',
    env: 'ONSALE_MAX_STREAMS_PER_CLIENT',
    description: 'open purchase status streams one client may hold on a web server process; more get 429',
    accepts: 'a whole number 1..100000',
    parse: integer(1, 100_000),
    fallback: () => '64',
  }),
  setting({
    key: 'batchSize',
    flag: '--batch-size',
    env: 'ONSALE_BATCH_SIZE',
    description: 'purchases a worker allocates per transaction',
    accepts: 'a whole number 1..10000',
    parse: integer(1, 10_000),
    fallback: () => '500',
  }),
  setting({
    key: 'maxAttempts',
    flag: '--max-attempts',
    env: 'ONSALE_MAX_ATTEMPTS',
    description: 'deliveries of a failing purchase before it goes to the dead-letter place',
    accepts: 'a whole number 1..100',
    parse: integer(1, 100),
    fallback: () => '5',
  }),
  setting({
    key: 'metrics',
    flag: '--metrics',
    env: 'ONSALE_METRICS',
    description:
      'Prometheus metrics: recorded by every process, served on /metrics of the web servers (under cluster, also of each worker and the autoscaler)',
    accepts: 'on or off',
    parse: (raw) => {
      if (!['on', 'off'].includes(raw.trim())) throw new Error('not on or off');
      return raw.trim() === 'on';
    },
    fallback: () => 'on',
  }),
  setting({
    key: 'metricsPort',
    flag: '--metrics-port',
    env: 'ONSALE_METRICS_PORT',
    description: 'port where a standalone worker serves its own /metrics (on HOST), to be scraped',
    accepts: 'a port number 1..65535, or off',
    parse: (raw) => (raw.trim() === 'off' ? null : integer(1, 65535)(raw)),
    fallback: () => 'off',
  }),
  setting({
    key: 'trustProxy',
    flag: '--trust-proxy',
    env: 'ONSALE_TRUST_PROXY',
    description:
      'load balancers whose X-Forwarded-For is believed, so that rate limits count buyers (cluster sets it)',
    accepts: 'a comma-separated list of IP addresses or CIDR ranges, or none',
    parse: (raw) => {
      const list = raw.trim() === '' || raw.trim() === 'none' ? [] : raw.split(',').map((a) => a.trim());
      if (list.some((a) => !/^[0-9a-fA-F.:]+(\/\d{1,3})?$/.test(a)))
        throw new Error('not a list of addresses');
      return list;
    },
    fallback: () => 'none',
  }),
  setting({
    key: 'drainDelay',
    flag: '--drain-delay',
    env: 'ONSALE_DRAIN_DELAY',
    description:
      'milliseconds a stopping web server keeps serving after /readyz turns 503, so the balancer sees it first',
    accepts: 'a whole number of milliseconds 0..8000 (cluster uses at least 2000)',
    parse: integer(0, 8000),
    fallback: () => '0',
  }),
  setting({
    key: 'lb',
    flag: '--lb',
    env: 'ONSALE_LB',
    description: 'the load balancer cluster runs',
    accepts: 'haproxy or nginx',
    parse: (raw) => {
      const lb = raw.trim();
      if (lb !== 'haproxy' && lb !== 'nginx') throw new Error('unknown load balancer');
      return lb;
    },
    fallback: () => 'haproxy',
  }),
  setting({
    key: 'smtpUrl',
    flag: '--smtp-url',
    env: 'ONSALE_SMTP_URL',
    description:
      'SMTP server that ticket emails are sent through (off: no email, each one logged as not sent)',
    accepts: 'smtp://[user:password@]host[:port] or smtps://… (TLS), or off',
    secret: true,
    parse: (raw) => {
      const text = raw.trim();
      if (text === 'off') return null;
      let parsed: URL;
      try {
        parsed = new URL(text);
      } catch {
        throw new Error('not a URL');
      }
      if ((parsed.protocol !== 'smtp:' && parsed.protocol !== 'smtps:') || !parsed.hostname)
        throw new Error('not an SMTP URL');
      return text;
    },
    fallback: () => 'off',
  }),
  setting({
    key: 'mailFrom',
    flag: '--mail-from',
    env: 'ONSALE_MAIL_FROM',
    description: 'sender of ticket emails',
    accepts: 'an address, or Name <address>',
    parse: (raw) => {
      const text = raw.trim();
      if (/[\r\n]/.test(text) || !/^(?:[^<>@]*<[^\s<>@]+@[^\s<>@]+>|[^\s<>@]+@[^\s<>@]+)$/.test(text))
        throw new Error('not an address');
      return text;
    },
    fallback: () => 'onsale <tickets@localhost>',
  }),
  setting({
    key: 'publicUrl',
    flag: '--public-url',
    env: 'ONSALE_PUBLIC_URL',
    description: 'the address buyers open the pages at, for the links in ticket emails',
    accepts: 'an http:// or https:// URL',
    parse: (raw) => {
      let parsed: URL;
      try {
        parsed = new URL(raw.trim());
      } catch {
        throw new Error('not a URL');
      }
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error('not http');
      return raw.trim().replace(/\/+$/, '');
    },
    // The listen address; one that means "every interface" is reached at the loopback from this machine.
    fallback: (c) =>
      c.host === undefined || c.port === undefined
        ? null
        : `http://${['0.0.0.0', '::', '[::]'].includes(c.host) ? '127.0.0.1' : c.host.includes(':') && !c.host.startsWith('[') ? `[${c.host}]` : c.host}:${c.port}`,
  }),
  setting({
    key: 'payments',
    flag: '--payments',
    env: 'ONSALE_PAYMENTS',
    description: 'payment provider for events with holds (test: inside onsale, for the demo and tests)',
    accepts: 'test or stripe',
    parse: (raw) => {
      const provider = raw.trim();
      if (provider !== 'test' && provider !== 'stripe') throw new Error('unknown provider');
      return provider;
    },
    fallback: () => 'test',
  }),
  setting({
    key: 'currency',
    flag: '--currency',
    env: 'ONSALE_CURRENCY',
    description: 'currency that prices are charged in',
    accepts: 'a three-letter ISO 4217 code such as eur or usd',
    parse: (raw) => {
      if (!/^[A-Za-z]{3}$/.test(raw.trim())) throw new Error('not a currency code');
      return raw.trim().toLowerCase();
    },
    fallback: () => 'eur',
  }),
] as const;

/** Secrets, read from the environment only; each named when it is missing or malformed, never shown. */
function paymentSecrets(payments: Config['payments'], env: NodeJS.ProcessEnv): Config['paymentSecrets'] {
  const testWebhookSecret = env.ONSALE_TEST_WEBHOOK_SECRET?.trim() || null;
  if (testWebhookSecret !== null && !/^\S{32,}$/.test(testWebhookSecret)) {
    throw new ConfigError(
      'ONSALE_TEST_WEBHOOK_SECRET is not accepted: it must be at least 32 characters without spaces',
    );
  }
  if (payments === 'stripe') {
    // The Stripe adapter checks their form when it starts; a missing one is refused before anything runs.
    for (const [name, alias] of [
      ['ONSALE_STRIPE_SECRET_KEY', 'STRIPE_SECRET_KEY'],
      ['ONSALE_STRIPE_WEBHOOK_SECRET', 'STRIPE_WEBHOOK_SECRET'],
    ] as const) {
      if (!env[name] && !env[alias]) {
        throw new ConfigError(
          `${name} (or ${alias}) must be set when ONSALE_PAYMENTS (--payments) is stripe`,
        );
      }
    }
  }
  return { testWebhookSecret };
}

/**
 * Resolves the configuration from command-line flags (already split by commander, keyed by setting) and the
 * environment. Throws ConfigError naming the first bad setting and what it accepts.
 */
export function loadConfig(flags: Partial<Record<keyof Config, string>>, env: NodeJS.ProcessEnv): Config {
  const config: Partial<Config> = {};
  for (const s of SETTINGS as readonly Setting[]) {
    const fromFlag = flags[s.key];
    const fromEnv = env[s.env];
    const raw = fromFlag ?? (fromEnv !== undefined && fromEnv !== '' ? fromEnv : s.fallback(config));
    const origin = fromFlag !== undefined ? s.flag : fromEnv ? s.env : `the default of ${s.env}`;
    if (raw === null) throw new ConfigError(`${s.env} (${s.flag}) has no value`);
    try {
      (config as Record<string, unknown>)[s.key] = s.parse(raw);
    } catch (error) {
      const why = error instanceof Error && !s.secret ? ` (${error.message})` : '';
      const shown = s.secret ? 'the value given' : `"${raw}"`;
      throw new ConfigError(
        `${origin}: ${shown} is not accepted${why}; ${s.flag} / ${s.env} takes ${s.accepts}`,
      );
    }
  }
  const full = config as Config;
  full.paymentSecrets = paymentSecrets(full.payments, env);
  if (full.workersMax < full.workersMin) {
    throw new ConfigError(
      `--workers-max / ONSALE_WORKERS_MAX (${full.workersMax}) is below --workers-min / ONSALE_WORKERS_MIN (${full.workersMin})`,
    );
  }
  if (full.databaseReplicaUrl !== null) {
    try {
      checkReplicaUrls(full.databaseReplicaUrl, full.databaseUrl);
    } catch (error) {
      throw new ConfigError(
        `ONSALE_DATABASE_REPLICA_URL (--database-replica-url): ${(error as Error).message}; it takes ` +
          'comma-separated postgres:// URLs, one per shard of ONSALE_DATABASE_URL in the same order',
      );
    }
  }
  const queueProblem = queueUrlProblem(full.queueUrl);
  if (queueProblem) throw new ConfigError(`ONSALE_QUEUE_URL (--queue-url) is ${queueProblem}`);
  const indexed = /^amqps?:/i.test(full.queueUrl) ? 'RabbitMQ' : /^sqs:/i.test(full.queueUrl) ? 'SQS' : null;
  if (indexed && !/^postgres(ql)?:/i.test(full.databaseUrl)) {
    // The queue serves processes on many machines; its index must live where they all reach it.
    throw new ConfigError(
      `ONSALE_QUEUE_URL (--queue-url) is ${indexed}, which keeps its index in PostgreSQL: ` +
        `ONSALE_DATABASE_URL (--database-url) must be postgres://…, not "${full.databaseUrl}"`,
    );
  }
  return full;
}
