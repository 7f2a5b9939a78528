import { connect } from 'amqplib';
import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DEFAULT_PARTITIONS } from '../../src/adapters/rabbitmq/broker.js';
import { RabbitQueue } from '../../src/adapters/rabbitmq/queue.js';
import { deleteRabbitTopology as deleteTopology } from '../support/services.js';
import type { Queue } from '../../src/ports/queue.js';
import { freePort, tempDir } from './processes.js';
import { freshPostgresDatabase, RABBITMQ_URL, uniqueName } from './services.js';

const execFileAsync = promisify(execFile);

/** The queue URL of a RabbitMQ broker with onsale's `prefix` parameter. */
export function rabbitUrl(prefix: string, base = RABBITMQ_URL): string {
  const url = new URL(base);
  url.searchParams.set('prefix', prefix);
  return url.toString();
}

/** Deletes the queues and the exchange a prefix owns (see Broker), whether they exist or not. */
export function deleteRabbitTopology(
  prefix: string,
  partitions = DEFAULT_PARTITIONS,
  base = RABBITMQ_URL,
): Promise<void> {
  return deleteTopology(base, prefix, partitions);
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
 * The RabbitMQ queue for the contract suite: a prefix of its own on the shared broker and a throw-away
 * database on the shared PostgreSQL for its index. `reopen` is another process's view: a new connection,
 * the same prefix and database. Cleanup closes every instance (RabbitMQ requeues what they held), then
 * deletes the prefix's queues and drops the database.
 */
export async function rabbitQueue(): Promise<{
  adapter: Queue;
  reopen: () => Queue;
  cleanup: () => Promise<void>;
  /** The prefix of this queue's names on the broker, and the database of its index. */
  prefix: string;
  databaseUrl: string;
}> {
  await assertReachable(RABBITMQ_URL);
  const prefix = uniqueName('onsale_test');
  const postgres = await freshPostgresDatabase();
  const databaseUrl = postgres.url;
  const opened: Queue[] = [];
  const open = () => {
    const queue = new RabbitQueue(rabbitUrl(prefix), databaseUrl);
    opened.push(queue);
    return queue;
  };
  const cleanup = async () => {
    for (const queue of opened) await queue.close().catch(() => undefined);
    await deleteRabbitTopology(prefix);
    await postgres.drop();
  };
  const adapter = open();
  await adapter.migrate().catch(async (error: unknown) => {
    await cleanup();
    throw error;
  });
  return { adapter, reopen: open, cleanup, prefix, databaseUrl };
}

/** A RabbitMQ node of a test's own, on free ports, that the test may stop, kill and start at will. */
export interface PrivateRabbit {
  /** amqp://guest:guest@127.0.0.1:PORT */
  url: string;
  /** Starts the node (again), on the same data folder, and waits until it takes connections. */
  start: () => Promise<void>;
  /** Stops the node gracefully (RabbitMQ closes every connection first). */
  stop: () => Promise<void>;
  /** SIGKILLs the node's Erlang VM, as a crash would. */
  kill: () => Promise<void>;
  /** Stops the node for good and removes its data folder. */
  destroy: () => Promise<void>;
}

/** The RabbitMQ scripts of the Debian package, which run as any user when called directly. */
const RABBIT_BIN = '/usr/lib/rabbitmq/bin';

/**
 * Starts a private RabbitMQ node (RabbitMQ's own scripts, a node name, ports and data folder of its own),
 * so that a fault test can stop and kill a broker without touching the shared one others use. The
 * shared node's configuration is not read: RABBITMQ_CONFIG_FILE, the plugins file and the environment
 * file all point into the node's temp folder, and the Erlang cookie lives there too (HOME).
 */
export async function startPrivateRabbit(): Promise<PrivateRabbit> {
  const dir = tempDir('onsale-rabbit-node-');
  const [port, distPort] = [await freePort(), await freePort()];
  const node = `${uniqueName('onsale-test')}@localhost`;
  writeFileSync(
    join(dir.path, 'rabbitmq.conf'),
    `listeners.tcp.default = 127.0.0.1:${port}\nloopback_users.guest = true\n`,
  );
  writeFileSync(join(dir.path, 'enabled_plugins'), '[].\n');
  const pidFile = join(dir.path, 'node.pid');
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: dir.path,
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: join(dir.path, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir.path, 'log'),
    RABBITMQ_CONFIG_FILE: join(dir.path, 'rabbitmq.conf'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir.path, 'enabled_plugins'),
    RABBITMQ_CONF_ENV_FILE: join(dir.path, 'rabbitmq-env.conf'), // absent: the shared node's is not read
    RABBITMQ_PID_FILE: pidFile,
    ERL_EPMD_ADDRESS: '127.0.0.1',
    ERL_FLAGS: '-kernel inet_dist_use_interface {127,0,0,1}',
  };
  const ctl = (...args: string[]) =>
    execFileAsync(`${RABBIT_BIN}/rabbitmqctl`, ['-n', node, ...args], { env, cwd: dir.path });
  const url = `amqp://guest:guest@127.0.0.1:${port}`;
  const start = async () => {
    await execFileAsync(`${RABBIT_BIN}/rabbitmq-server`, ['-detached'], { env, cwd: dir.path });
    await ctl('wait', pidFile, '--timeout', '60');
    await assertReachable(url);
  };
  const stop = async () => {
    await ctl('stop', pidFile);
  };
  const kill = async () => {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 200 && alive(pid); i++) await new Promise((r) => setTimeout(r, 25));
    rmSync(pidFile, { force: true });
  };
  try {
    await start();
  } catch (error) {
    dir.remove();
    throw new Error(`could not start a private RabbitMQ node (${RABBIT_BIN})`, { cause: error });
  }
  return {
    url,
    start,
    stop,
    kill,
    destroy: async () => {
      await stop().catch(() => undefined);
      dir.remove();
    },
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
