import { connect } from 'amqplib';
import { join } from 'node:path';
import { brokerNames, DEFAULT_PARTITIONS } from '../../src/adapters/rabbitmq/broker.js';
import { RabbitQueue } from '../../src/adapters/rabbitmq/queue.js';
import type { Queue } from '../../src/ports/queue.js';
import { tempDir } from './processes.js';
import { RABBITMQ_URL, uniqueName } from './services.js';

/** The queue URL of a RabbitMQ broker with onsale's `prefix` parameter. */
export function rabbitUrl(prefix: string, base = RABBITMQ_URL): string {
  const url = new URL(base);
  url.searchParams.set('prefix', prefix);
  return url.toString();
}

/** Deletes the queues and the exchange a prefix owns (see Broker), whether they exist or not. */
export async function deleteRabbitTopology(
  prefix: string,
  partitions = DEFAULT_PARTITIONS,
  base = RABBITMQ_URL,
): Promise<void> {
  const names = brokerNames(prefix, partitions);
  const conn = await connect(base);
  try {
    for (const queue of [...names.partitions, names.deadQueue]) {
      // A failed operation closes its channel: one channel per operation.
      const channel = await conn.createChannel();
      channel.on('error', () => undefined);
      await channel.deleteQueue(queue).catch(() => undefined);
      await channel.close().catch(() => undefined);
    }
    const channel = await conn.createChannel();
    channel.on('error', () => undefined);
    await channel.deleteExchange(names.deadExchange).catch(() => undefined);
    await channel.close().catch(() => undefined);
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** Fails loudly, naming the broker, when the shared RabbitMQ is down. */
async function assertReachable(base: string): Promise<void> {
  try {
    const conn = await connect(base, { timeout: 5_000 });
    await conn.close();
  } catch (error) {
    throw new Error(`RabbitMQ is not reachable at ${base}; start it (see .ci/run)`, { cause: error });
  }
}

/**
 * The RabbitMQ queue for the contract suite: a prefix of its own on the shared broker and a fresh SQLite
 * file for its index. `reopen` is another process's view: a new connection, the same prefix and database.
 * Cleanup closes every instance (RabbitMQ requeues what they held), then deletes the prefix's queues.
 */
export async function rabbitQueue(): Promise<{
  adapter: Queue;
  reopen: () => Queue;
  cleanup: () => Promise<void>;
}> {
  await assertReachable(RABBITMQ_URL);
  const prefix = uniqueName('onsale_test');
  const dir = tempDir('onsale-rabbitmq-');
  const databaseUrl = `sqlite:${join(dir.path, 'onsale.db')}`;
  const opened: Queue[] = [];
  const open = () => {
    const queue = new RabbitQueue(rabbitUrl(prefix), databaseUrl);
    opened.push(queue);
    return queue;
  };
  const adapter = open();
  await adapter.migrate();
  return {
    adapter,
    reopen: open,
    cleanup: async () => {
      for (const queue of opened) await queue.close().catch(() => undefined);
      await deleteRabbitTopology(prefix);
      dir.remove();
    },
  };
}
