import type { Queue } from '../ports/queue.js';
import type { Storage } from '../ports/storage.js';
import type { WaitingRoom } from '../ports/waiting-room.js';

/** What a queue adapter may need besides its own URL (an engine without a key-value store uses the database). */
interface QueueContext {
  databaseUrl: string;
}

/**
 * The engines this build can use, by URL scheme. Each adapter's module, and so its driver (better-sqlite3,
 * pg, ioredis, amqplib), is imported only when its scheme is chosen: a process loads the one or two drivers
 * it uses, and loading the config (which checks schemes against these keys) loads none. Opening is cheap
 * (a pool, a client); the caller runs migrate() before first use.
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

export const STORAGE_SCHEMES = Object.keys(STORAGE_ENGINES);
export const QUEUE_SCHEMES = Object.keys(QUEUE_ENGINES);

function engineFor<T>(engines: Record<string, T>, url: string, what: string): T {
  const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0].toLowerCase() ?? '';
  const engine = engines[scheme];
  if (!engine)
    throw new Error(`unsupported ${what} URL "${url}": expected ${Object.keys(engines).join(', ')}`);
  return engine;
}

export async function openStorage(url: string): Promise<Storage> {
  const open = await engineFor(STORAGE_ENGINES, url, 'database')();
  return open(url);
}

/** The waiting room lives in the database (ONSALE_DATABASE_URL): one line for every process. */
export async function openWaitingRoom(url: string): Promise<WaitingRoom> {
  const scheme =
    engineFor(STORAGE_ENGINES, url, 'database') === STORAGE_ENGINES['sqlite:'] ? 'sqlite' : 'postgres';
  if (scheme === 'sqlite') {
    const { SqliteWaitingRoom } = await import('./sqlite/waiting-room.js');
    return new SqliteWaitingRoom(url);
  }
  const { PostgresWaitingRoom } = await import('./postgres/waiting-room.js');
  return new PostgresWaitingRoom(url);
}

export async function openQueue(url: string, context: QueueContext = { databaseUrl: url }): Promise<Queue> {
  const open = await engineFor(QUEUE_ENGINES, url, 'queue')();
  return open(url, context);
}
