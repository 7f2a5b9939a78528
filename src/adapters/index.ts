import type { Mailer } from '../ports/mailer.js';
import type { Outbox } from '../ports/outbox.js';
import type { Queue } from '../ports/queue.js';
import type { Storage } from '../ports/storage.js';
import type { WaitingRoom } from '../ports/waiting-room.js';
import { isSharded, shardSpecs, splitUrls } from './sharding/urls.js';
import { parseRedisUrl } from './redis/url.js';
import { parseSqsUrl } from './sqs/url.js';

/** What a queue adapter may need besides its own URL (an engine without a key-value store uses the database). */
interface QueueContext {
  databaseUrl: string;
}

/**
 * The engines this build can use, by URL scheme. Each adapter's module, and so its driver (better-sqlite3,
 * pg, ioredis, amqplib), is imported only when its scheme is chosen: a process loads the one or two drivers
 * it uses, and loading the config (which checks schemes against these keys) loads none. Opening is cheap
 * (a pool, a client); the caller runs migrate() before first use. (`sqs:` loads @aws-sdk/client-sqs.)
 */
const STORAGE_ENGINES: Record<string, () => Promise<(url: string) => Storage>> = {
  'sqlite:': async () => {
    const { SqliteStorage } = await import('./sqlite/storage.js');
    return (url) => new SqliteStorage(url);
  },
  'postgres:': openPostgresStorage,
  'postgresql:': openPostgresStorage,
};

const QUEUE_ENGINES: Record<string, () => Promise<(url: string, context: QueueContext) => Queue>> = {
  'sqlite:': async () => {
    const { SqliteQueue } = await import('./sqlite/queue.js');
    return (url) => new SqliteQueue(url);
  },
  'postgres:': openPostgresQueue,
  'postgresql:': openPostgresQueue,
  'redis:': openRedisQueue,
  'rediss:': openRedisQueue,
  'amqp:': openRabbitQueue,
  'amqps:': openRabbitQueue,
  'sqs:': openSqsQueue,
};

async function openPostgresStorage(): Promise<(url: string) => Storage> {
  const { PostgresStorage } = await import('./postgres/storage.js');
  return (url) => new PostgresStorage(url);
}

async function openPostgresQueue(): Promise<(url: string) => Queue> {
  const { PostgresQueue } = await import('./postgres/queue.js');
  return (url) => new PostgresQueue(url);
}

async function openRedisQueue(): Promise<(url: string) => Queue> {
  const { RedisQueue } = await import('./redis/queue.js');
  return (url) => new RedisQueue(url);
}

async function openRabbitQueue(): Promise<(url: string, context: QueueContext) => Queue> {
  const { RabbitQueue } = await import('./rabbitmq/queue.js');
  return (url, context) => new RabbitQueue(url, context.databaseUrl);
}

async function openSqsQueue(): Promise<(url: string, context: QueueContext) => Queue> {
  const { SqsQueue } = await import('./sqs/queue.js');
  return (url, context) => new SqsQueue(url, context.databaseUrl);
}

export const STORAGE_SCHEMES = Object.keys(STORAGE_ENGINES);
export const QUEUE_SCHEMES = Object.keys(QUEUE_ENGINES);

function engineFor<T>(engines: Record<string, T>, url: string, what: string): T {
  const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0].toLowerCase() ?? '';
  const engine = engines[scheme];
  if (!engine)
    throw new Error(`unsupported ${what} URL "${url}": expected ${Object.keys(engines).join(', ')}`);
  return engine;
}

/**
 * What is wrong with a queue URL whose scheme is accepted, or null. Checked by config at start (a bad
 * setting exits 2) without loading any driver; the message never repeats a password.
 */
export function queueUrlProblem(url: string): string | null {
  if (/^sqs:/i.test(url)) {
    try {
      parseSqsUrl(url);
      return null;
    } catch (error) {
      return `not an SQS queue URL: ${(error as Error).message}`;
    }
  }
  if (!/^rediss?:/i.test(url)) return null;
  try {
    parseRedisUrl(url);
    return null;
  } catch (error) {
    return `not a Redis queue URL: ${(error as Error).message}`;
  }
}

export interface StorageOptions {
  /** Streaming replicas for reads, one per shard (ONSALE_DATABASE_REPLICA_URL); null: none. */
  databaseReplicaUrl?: string | null;
  /** Counts each read by where it was served (the storage read metric). */
  onRead?: (target: 'primary' | 'replica') => void;
}

/**
 * The storage of `url`: one database, or with several comma-separated postgres:// URLs (shards) or with
 * replicas, the sharded storage that routes every call to its event's shard (src/adapters/sharding).
 */
export async function openStorage(url: string, options: StorageOptions = {}): Promise<Storage> {
  if (isSharded(url) || options.databaseReplicaUrl) {
    const { ShardedStorage } = await import('./sharding/sharded-storage.js');
    return new ShardedStorage(shardSpecs(url, options.databaseReplicaUrl ?? null), {
      ...(options.onRead ? { onRead: options.onRead } : {}),
    });
  }
  const open = await engineFor(STORAGE_ENGINES, url, 'database')();
  return open(url);
}

/**
 * The waiting room: in Redis when `roomUrl` (ONSALE_ROOM_URL) names one, else in the database
 * (ONSALE_DATABASE_URL); either way one line for every process.
 */
export async function openWaitingRoom(
  databaseUrl: string,
  roomUrl: string | null = null,
): Promise<WaitingRoom> {
  if (roomUrl !== null) {
    const { RedisWaitingRoom } = await import('./redis/waiting-room.js');
    return new RedisWaitingRoom(roomUrl);
  }
  // With shards, every event's line lives on the first one: one line for an event, whatever shard holds it.
  const url = splitUrls(databaseUrl)[0]!;
  const scheme =
    engineFor(STORAGE_ENGINES, url, 'database') === STORAGE_ENGINES['sqlite:'] ? 'sqlite' : 'postgres';
  if (scheme === 'sqlite') {
    const { SqliteWaitingRoom } = await import('./sqlite/waiting-room.js');
    return new SqliteWaitingRoom(url);
  }
  const { PostgresWaitingRoom } = await import('./postgres/waiting-room.js');
  return new PostgresWaitingRoom(url);
}

/**
 * The queue of `url`. With the shards' URLs (the default, ONSALE_QUEUE_URL unset), one table queue per
 * shard; an external queue (Redis, RabbitMQ, SQS) is one queue for all shards, and RabbitMQ and SQS keep
 * their index on the first shard.
 */
export async function openQueue(url: string, context: QueueContext = { databaseUrl: url }): Promise<Queue> {
  const firstShard = { ...context, databaseUrl: splitUrls(context.databaseUrl)[0]! };
  if (isSharded(url)) {
    const { ShardedQueue } = await import('./sharding/sharded-queue.js');
    const open = await engineFor(QUEUE_ENGINES, splitUrls(url)[0]!, 'queue')();
    return new ShardedQueue(splitUrls(url).map((shard) => open(shard, { ...context, databaseUrl: shard })));
  }
  const open = await engineFor(QUEUE_ENGINES, url, 'queue')();
  return open(url, firstShard);
}

/** The outbox of ticket emails, in the storage database `url` (same schemes as openStorage). */
export async function openOutbox(url: string): Promise<Outbox> {
  const open = await engineFor(OUTBOX_ENGINES, url, 'database')();
  return open(url);
}

const OUTBOX_ENGINES: Record<string, () => Promise<(url: string) => Outbox>> = {
  'sqlite:': async () => {
    const { SqliteOutbox } = await import('./sqlite/outbox.js');
    return (url) => new SqliteOutbox(url);
  },
  'postgres:': openPostgresOutbox,
  'postgresql:': openPostgresOutbox,
};

async function openPostgresOutbox(): Promise<(url: string) => Outbox> {
  const { PostgresOutbox } = await import('./postgres/outbox.js');
  return (url) => new PostgresOutbox(url);
}

/** The SMTP sender of ticket emails (nodemailer), loaded only by a process that sends mail. */
export async function openMailer(smtpUrl: string, from: string): Promise<Mailer> {
  const { SmtpMailer } = await import('./smtp/mailer.js');
  return new SmtpMailer(smtpUrl, from);
}
