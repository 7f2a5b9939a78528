import { join } from 'node:path';
import { PostgresQueue } from '../../src/adapters/postgres/queue.js';
import { PostgresStorage } from '../../src/adapters/postgres/storage.js';
import { PostgresWaitingRoom } from '../../src/adapters/postgres/waiting-room.js';
import { RedisQueue } from '../../src/adapters/redis/queue.js';
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
import { deleteRedisKeys, startPrivateRedisCluster, type PrivateRedisCluster } from './redis.js';
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
 * A Redis Cluster of the file's own (three masters, started at the first test, stopped by teardown), with a
 * key prefix of its own per test; cleanup deletes the prefix's keys on every master.
 */
function redisClusterQueue(): Pick<AdapterFactory<Queue>, 'open' | 'teardown'> {
  let cluster: Promise<PrivateRedisCluster> | undefined;
  return {
    open: async () => {
      cluster ??= startPrivateRedisCluster();
      const { url: clusterUrl, deleteKeys } = await cluster;
      const prefix = uniqueName('onsale_test');
      const url = `${clusterUrl}?prefix=${prefix}`;
      const opened: Queue[] = [];
      const open = () => {
        const q = new RedisQueue(url);
        opened.push(q);
        return q;
      };
      const adapter = open();
      await adapter.migrate();
      return {
        adapter,
        reopen: open,
        cleanup: async () => {
          for (const q of opened) await q.close().catch(() => undefined);
          await deleteKeys(`${prefix}:*`);
        },
      };
    },
    teardown: async () => {
      const started = cluster;
      cluster = undefined;
      if (started) await (await started).remove();
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

const redisCluster = redisClusterQueue();
const sqs = sqsQueue();

export const queueAdapters: Array<AdapterFactory<Queue>> = [
  entry(
    'sqlite',
    [],
    sqlite((url) => new SqliteQueue(url)),
  ),
  // As a web server opens it: enqueue commits in a worker thread on a connection of its own.
  entry(
    'sqlite, writer thread',
    [],
    sqlite((url) => new SqliteQueue(url, { writerThread: true })),
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
];
