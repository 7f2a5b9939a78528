import { connect } from 'amqplib';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';
import { brokerNames, DEFAULT_PARTITIONS } from '../../src/adapters/rabbitmq/broker.js';

/**
 * The external servers the engine benches (and the engine tests) run against: throw-away databases, key
 * prefixes and queue names on them, created for one measurement and removed after it.
 */

/** A server the bench needs did not answer: the message names it and its URL. */
export class ServiceUnreachableError extends Error {}

/** A name no other run or test uses: `prefix_` and ten hex digits (valid as a database name too). */
export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

/** A fresh, empty database on the server of `adminUrl`; `drop` removes it, ending its connections first. */
export async function createDatabase(
  adminUrl: string,
  prefix: string,
): Promise<{ name: string; url: string; drop: () => Promise<void> }> {
  const name = uniqueName(prefix);
  await withPostgres(adminUrl, (admin) => admin.query(`CREATE DATABASE ${name}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    drop: async () => {
      await withPostgres(adminUrl, (admin) => admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}

async function withPostgres<T>(adminUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
  } catch (error) {
    throw new ServiceUnreachableError(`PostgreSQL is not reachable at ${adminUrl}`, { cause: error });
  }
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export async function assertPostgresReachable(adminUrl: string): Promise<void> {
  await withPostgres(adminUrl, (admin) => admin.query('SELECT 1'));
}

async function withRedis<T>(url: string, fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
  } catch (error) {
    redis.disconnect();
    throw new ServiceUnreachableError(`Redis is not reachable at ${url}`, { cause: error });
  }
  try {
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

export async function assertRedisReachable(url: string): Promise<void> {
  await withRedis(url, (redis) => redis.ping());
}

/** Deletes the keys matching `pattern` (e.g. `onsale_bench_ab12:*`). */
export async function deleteRedisKeys(url: string, pattern: string): Promise<void> {
  await withRedis(url, async (redis) => {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
  });
}

async function connectRabbit(url: string) {
  try {
    return await connect(url, { timeout: 5_000 });
  } catch (error) {
    throw new ServiceUnreachableError(`RabbitMQ is not reachable at ${url}`, { cause: error });
  }
}

export async function assertRabbitReachable(url: string): Promise<void> {
  await (await connectRabbit(url)).close();
}

/** Deletes the queues and the exchange a prefix owns (see Broker), whether they exist or not. */
export async function deleteRabbitTopology(
  url: string,
  prefix: string,
  partitions = DEFAULT_PARTITIONS,
): Promise<void> {
  const names = brokerNames(prefix, partitions);
  const conn = await connectRabbit(url);
  // A failed operation closes its channel: one channel per operation.
  const once = async (op: (channel: Awaited<ReturnType<typeof conn.createChannel>>) => Promise<unknown>) => {
    const channel = await conn.createChannel();
    channel.on('error', () => undefined);
    await op(channel).catch(() => undefined);
    await channel.close().catch(() => undefined);
  };
  try {
    for (const queue of [...names.partitions, names.deadQueue]) await once((c) => c.deleteQueue(queue));
    await once((c) => c.deleteExchange(names.deadExchange));
  } finally {
    await conn.close().catch(() => undefined);
  }
}
