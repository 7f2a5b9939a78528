import type { Queue } from '../ports/queue.js';
import type { Storage } from '../ports/storage.js';
import { RabbitQueue } from './rabbitmq/queue.js';
import { RedisQueue } from './redis/queue.js';
import { PostgresQueue } from './postgres/queue.js';
import { PostgresStorage } from './postgres/storage.js';
import { SqliteQueue } from './sqlite/queue.js';
import { SqliteStorage } from './sqlite/storage.js';

/** What a queue adapter may need besides its own URL (an engine without a key-value store uses the database). */
export interface QueueContext {
  databaseUrl: string;
}

/**
 * The engines this build can use, by URL scheme. Opening is synchronous and cheap (a pool, a client); the
 * caller runs migrate() before first use.
 */
const STORAGE_ENGINES: Record<string, (url: string) => Storage> = {
  'sqlite:': (url) => new SqliteStorage(url),
  'postgres:': (url) => new PostgresStorage(url),
  'postgresql:': (url) => new PostgresStorage(url),
};

const QUEUE_ENGINES: Record<string, (url: string, context: QueueContext) => Queue> = {
  'sqlite:': (url) => new SqliteQueue(url),
  'postgres:': (url) => new PostgresQueue(url),
  'postgresql:': (url) => new PostgresQueue(url),
  'redis:': (url) => new RedisQueue(url),
  'rediss:': (url) => new RedisQueue(url),
  'amqp:': (url, context) => new RabbitQueue(url, context.databaseUrl),
  'amqps:': (url, context) => new RabbitQueue(url, context.databaseUrl),
};

export const STORAGE_SCHEMES = Object.keys(STORAGE_ENGINES);
export const QUEUE_SCHEMES = Object.keys(QUEUE_ENGINES);

function engineFor<T>(engines: Record<string, T>, url: string, what: string): T {
  const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0].toLowerCase() ?? '';
  const engine = engines[scheme];
  if (!engine)
    throw new Error(`unsupported ${what} URL "${url}": expected ${Object.keys(engines).join(', ')}`);
  return engine;
}

export function openStorage(url: string): Storage {
  return engineFor(STORAGE_ENGINES, url, 'database')(url);
}

export function openQueue(url: string, context: QueueContext = { databaseUrl: url }): Queue {
  return engineFor(QUEUE_ENGINES, url, 'queue')(url, context);
}
