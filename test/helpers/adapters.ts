import { join } from 'node:path';
import { PostgresQueue } from '../../src/adapters/postgres/queue.js';
import { PostgresStorage } from '../../src/adapters/postgres/storage.js';
import { PostgresWaitingRoom } from '../../src/adapters/postgres/waiting-room.js';
import { RedisQueue } from '../../src/adapters/redis/queue.js';
import { RedisWaitingRoom } from '../../src/adapters/redis/waiting-room.js';
import { ShardedQueue } from '../../src/adapters/sharding/sharded-queue.js';
import { ShardedStorage } from '../../src/adapters/sharding/sharded-storage.js';
import { SqliteQueue } from '../../src/adapters/sqlite/queue.js';
import { SqliteStorage } from '../../src/adapters/sqlite/storage.js';
import { SqliteWaitingRoom } from '../../src/adapters/sqlite/waiting-room.js';
import type { Queue } from '../../src/ports/queue.js';
import type { Storage } from '../../src/ports/storage.js';
import type { WaitingRoom } from '../../src/ports/waiting-room.js';
import { tempDir } from './processes.js';
import type { Backend } from './services.js';
import { rabbitQueue } from './rabbitmq.js';
import { sqsQueue } from './sqs.js';
import { deleteRedisKeys, startPrivateRedis, startPrivateRedisCluster } from './redis.js';
import { exclusion, freshPostgresDatabase, REDIS_URL, uniqueName } from './services.js';

/**
 * Every adapter of each port, opened on a real, fresh database. The contract suites run once per entry.
 * `reopen` opens a second connection to the same database (another process would see the same).
 */
interface AdapterFactory<T> {
  name: string;
  /** Why this adapter's suite is skipped (see `exclusion`), or '' when it runs. */
  excluded: string;
  open: () => Promise<{ adapter: T; reopen: () => T; cleanup: () => Promise<void> }>;
  /** Stops what the entry started for the whole file (a private server), if anything: call in afterAll. */
  teardown?: () => Promise<void>;
}

function sqlite<T extends { close(): Promise<void> }>(make: (url: string) => T): AdapterFactory<T>['open'] {
  return async () => {
    const dir = tempDir('onsale-contract-');
    const url = `sqlite:${join(dir.path, 'onsale.db')}`;
    const opened: T[] = [];
    const open = () => {
      const a = make(url);
      opened.push(a);
      return a;
    };
    return {
      adapter: open(),
      reopen: open,
      cleanup: async () => {
        for (const a of opened) await a.close().catch(() => undefined);
        dir.remove();
      },
    };
  };
}

/** The shared Redis, with a key prefix of its own per test; cleanup deletes the prefix's keys. */
async function redisQueue(): Promise<{ adapter: Queue; reopen: () => Queue; cleanup: () => Promise<void> }> {
  const prefix = uniqueName('onsale_test');
  const url = new URL(REDIS_URL);
  url.searchParams.set('prefix', prefix);
  const opened: Queue[] = [];
  const open = () => {
    const q = new RedisQueue(url.toString());
    opened.push(q);
    return q;
  };
  const adapter = open();
  try {
    await adapter.migrate();
  } catch (error) {
    await adapter.close();
    throw new Error(`Redis is not reachable at ${REDIS_URL}; start it (see .ci/run)`, { cause: error });
  }
  return {
    adapter,
    reopen: open,
    cleanup: async () => {
      for (const q of opened) await q.close().catch(() => undefined);
      await deleteRedisKeys(`${prefix}:*`);
    },
  };
}

/**
 * A Redis of the file's own (started at the first test, stopped by teardown; a cluster of three masters, or
 * one server), persisting every write before it replies, with a key prefix of its own per test; cleanup
 * deletes the prefix's keys (on every master).
 */
function privateRedis<T extends { migrate(): Promise<void>; close(): Promise<void> }>(
  kind: 'server' | 'cluster',
  make: (url: string) => T,
): Pick<AdapterFactory<T>, 'open' | 'teardown'> {
  let started:
    | Promise<{ url: string; deleteKeys: (pattern: string) => Promise<void>; remove: () => Promise<void> }>
    | undefined;
  const start = async () => {
    if (kind === 'cluster') return startPrivateRedisCluster();
    const redis = await startPrivateRedis();
    return { ...redis, deleteKeys: (pattern: string) => deleteRedisKeys(pattern, redis.url) };
  };
  return {
    open: async () => {
      started ??= start();
      const { url: serverUrl, deleteKeys } = await started;
      const prefix = uniqueName('onsale_test');
      const url = `${serverUrl}?prefix=${prefix}`;
      const opened: T[] = [];
      const open = () => {
        const a = make(url);
        opened.push(a);
        return a;
      };
      const adapter = open();
      await adapter.migrate();
      return {
        adapter,
        reopen: open,
        cleanup: async () => {
          for (const a of opened) await a.close().catch(() => undefined);
          await deleteKeys(`${prefix}:*`);
        },
      };
    },
    teardown: async () => {
      const running = started;
      started = undefined;
      if (running) await (await running).remove();
    },
  };
}

/** A throw-away database on the shared PostgreSQL per test, migrated; cleanup closes the pools and drops it. */
function postgres<T extends { migrate(): Promise<void>; close(): Promise<void> }>(
  make: (url: string) => T,
): AdapterFactory<T>['open'] {
  return async () => {
    const db = await freshPostgresDatabase();
    const opened: T[] = [];
    const open = () => {
      const a = make(db.url);
      opened.push(a);
      return a;
    };
    const cleanup = async () => {
      for (const a of opened) await a.close().catch(() => undefined);
      await db.drop();
    };
    const adapter = open();
    await adapter.migrate().catch(async (error: unknown) => {
      await cleanup();
      throw error;
    });
    return { adapter, reopen: open, cleanup };
  };
}

/**
 * Two throw-away databases on the shared PostgreSQL as the shards of one sharded adapter (the composition
 * in src/adapters/sharding over one postgres adapter per shard).
 */
function postgresShards<T extends { migrate(): Promise<void>; close(): Promise<void> }>(
  make: (urls: string[]) => T,
): AdapterFactory<T>['open'] {
  return async () => {
    const dbs = [await freshPostgresDatabase(), await freshPostgresDatabase()];
    const opened: T[] = [];
    const open = () => {
      const a = make(dbs.map((db) => db.url));
      opened.push(a);
      return a;
    };
    const cleanup = async () => {
      for (const a of opened) await a.close().catch(() => undefined);
      for (const db of dbs) await db.drop();
    };
    const adapter = open();
    await adapter.migrate().catch(async (error: unknown) => {
      await cleanup();
      throw error;
    });
    return { adapter, reopen: open, cleanup };
  };
}

/** Every adapter stays listed: `describeEach` reports an excluded one as skipped, with the reason. */
function entry<T>(name: string, backends: Backend[], open: AdapterFactory<T>['open']): AdapterFactory<T> {
  const excluded = exclusion(...backends);
  return { name, excluded, open };
}

export const storageAdapters: Array<AdapterFactory<Storage>> = [
  entry(
    'sqlite',
    [],
    sqlite((url) => new SqliteStorage(url)),
  ),
  entry(
    'postgres',
    ['postgres'],
    postgres((url) => new PostgresStorage(url)),
  ),
  entry(
    'postgres, 2 shards',
    ['postgres'],
    postgresShards((urls) => new ShardedStorage(urls.map((url) => ({ url })))),
  ),
];

const redisCluster = privateRedis('cluster', (url) => new RedisQueue(url));
const sqs = sqsQueue();

export const queueAdapters: Array<AdapterFactory<Queue>> = [
  entry(
    'sqlite',
    [],
    sqlite((url) => new SqliteQueue(url)),
  ),
  entry(
    'postgres',
    ['postgres'],
    postgres((url) => new PostgresQueue(url)),
  ),
  entry(
    'postgres, 2 shards',
    ['postgres'],
    postgresShards((urls) => new ShardedQueue(urls.map((url) => new PostgresQueue(url)))),
  ),
  entry('redis', ['redis'], redisQueue),
  // redis-server itself is what 'redis' names: this entry starts its own cluster of them.
  { ...entry('redis cluster', ['redis'], redisCluster.open), teardown: redisCluster.teardown },
  entry('rabbitmq (index in postgres)', ['rabbitmq', 'postgres'], rabbitQueue),
  // fauxqs is an npm dependency, started by the entry itself: only PostgreSQL (the index) is shared.
  { ...entry('sqs on fauxqs (index in postgres)', ['postgres'], sqs.open), teardown: sqs.teardown },
];

const roomRedis = privateRedis('server', (url) => new RedisWaitingRoom(url));
const roomRedisCluster = privateRedis('cluster', (url) => new RedisWaitingRoom(url));

export const waitingRoomAdapters: Array<AdapterFactory<WaitingRoom>> = [
  entry(
    'sqlite',
    [],
    sqlite((url) => new SqliteWaitingRoom(url)),
  ),
  entry(
    'postgres',
    ['postgres'],
    postgres((url) => new PostgresWaitingRoom(url)),
  ),
  // redis-server itself is what 'redis' names: these entries start their own, persisting every write
  // (the room refuses a Redis that does not, and the shared one on 6379 does not).
  { ...entry('redis', ['redis'], roomRedis.open), teardown: roomRedis.teardown },
  { ...entry('redis cluster', ['redis'], roomRedisCluster.open), teardown: roomRedisCluster.teardown },
];
