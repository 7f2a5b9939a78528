import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { deleteRedisKeys as deleteKeys } from '../support/services.js';
import { freePort, tempDir } from './processes.js';
import { REDIS_URL } from './services.js';

/** Deletes the keys matching `pattern` (e.g. `onsale_test_ab12:*`) on the shared Redis. */
export function deleteRedisKeys(pattern: string, url = REDIS_URL): Promise<void> {
  return deleteKeys(url, pattern);
}

/**
 * A redis-server of the test's own, on a free port and a temp folder, persisting every write before it
 * replies (appendonly yes, appendfsync always), as production must. It can be stopped and started again
 * on the same folder and port; the shared Redis on 6379 is never touched.
 */
export interface PrivateRedis {
  url: string;
  port: number;
  /** Starts redis-server (again) and waits until it answers PING. */
  start: () => Promise<void>;
  /** Stops it with `signal` (SIGTERM: a clean SHUTDOWN; SIGKILL: a crash) and waits for the exit. */
  stop: (signal?: NodeJS.Signals) => Promise<void>;
  /** Stops it if running and removes its folder. */
  remove: () => Promise<void>;
  output: () => string;
}

/** Whether a Redis on `port` answers PING (not while it is still loading its AOF). */
async function answers(port: number): Promise<boolean> {
  const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    return (await probe.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}

export async function startPrivateRedis(): Promise<PrivateRedis> {
  const dir = tempDir('onsale-redis-');
  const port = await freePort();
  let child: ChildProcess | null = null;
  let out = '';

  const running = () => child !== null && child.exitCode === null && child.signalCode === null;

  async function start(): Promise<void> {
    if (running()) return;
    const proc = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir.path,
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--save',
        '',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child = proc;
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (!running()) throw new Error(`redis-server exited at start:\n${out}`);
      if (await answers(port)) return;
      if (Date.now() > deadline) throw new Error(`redis-server did not answer in 10 s:\n${out}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  async function stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const proc = child;
    if (!proc || !running()) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill(signal);
    await exited;
  }

  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    start,
    stop,
    remove: async () => {
      await stop('SIGKILL');
      dir.remove();
    },
    output: () => out,
  };
}

/**
 * A Redis Cluster of the test's own: three masters (no replicas) on free ports, each with its own folder,
 * cluster config file and bus port, persisting every write before it replies, joined by
 * `redis-cli --cluster create`. stop() and start() take all three nodes down and up (they find each other
 * again from their cluster config files); the shared Redis on 6379 is never touched.
 */
export interface PrivateRedisCluster {
  /** The queue URL naming every node: redis://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3 */
  url: string;
  ports: number[];
  start: () => Promise<void>;
  stop: (signal?: NodeJS.Signals) => Promise<void>;
  remove: () => Promise<void>;
  /** A cluster client of the test's own (the caller disconnects it). */
  client: () => Cluster;
  /** Deletes the keys matching `pattern` on every master. */
  deleteKeys: (pattern: string) => Promise<void>;
  output: () => string;
}

/** Whether the node on `port` reports cluster_state:ok. */
async function clusterOk(port: number): Promise<boolean> {
  const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    return /cluster_state:ok/.test(await probe.cluster('INFO'));
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}

function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    proc.on('error', reject);
    proc.on('exit', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`${command} exited ${code}:\n${out}`)),
    );
  });
}

export async function startPrivateRedisCluster(): Promise<PrivateRedisCluster> {
  const nodes: Array<{ port: number; busPort: number; dir: { path: string; remove: () => void } }> = [];
  for (let i = 0; i < 3; i++) {
    nodes.push({ port: await freePort(), busPort: await freePort(), dir: tempDir('onsale-redis-cluster-') });
  }
  const children: Array<ChildProcess | null> = nodes.map(() => null);
  let out = '';
  const running = (c: ChildProcess | null) => c !== null && c.exitCode === null && c.signalCode === null;

  async function startNode(i: number): Promise<void> {
    if (running(children[i]!)) return;
    const { port, busPort, dir } = nodes[i]!;
    // redis-server takes each setting as `--name value…`: an empty value must be its own argument.
    const proc = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--cluster-port',
        String(busPort),
        '--bind',
        '127.0.0.1',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(dir.path, 'nodes.conf'),
        '--cluster-node-timeout',
        '2000',
        '--dir',
        dir.path,
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--save',
        '',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    children[i] = proc;
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (!running(proc)) throw new Error(`redis-server (cluster node ${port}) exited at start:\n${out}`);
      if (await answers(port)) return;
      if (Date.now() > deadline)
        throw new Error(`redis-server (cluster node ${port}) did not answer:\n${out}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  async function waitOk(): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const states = await Promise.all(nodes.map((n) => clusterOk(n.port)));
      if (states.every(Boolean)) return;
      if (Date.now() > deadline) throw new Error(`the Redis Cluster did not reach cluster_state:ok:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function start(): Promise<void> {
    await Promise.all(nodes.map((_, i) => startNode(i)));
    await waitOk();
  }

  async function stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await Promise.all(
      children.map(async (proc) => {
        if (!proc || !running(proc)) return;
        const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
        proc.kill(signal);
        await exited;
      }),
    );
  }

  const addresses = nodes.map((n) => `127.0.0.1:${n.port}`);
  try {
    await Promise.all(nodes.map((_, i) => startNode(i)));
    out += await run('redis-cli', [
      '--cluster',
      'create',
      ...addresses,
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ]);
    await waitOk();
  } catch (error) {
    await stop('SIGKILL');
    for (const n of nodes) n.dir.remove();
    throw error;
  }

  const client = () => {
    const cluster = new Cluster(nodes.map((n) => ({ host: '127.0.0.1', port: n.port })));
    cluster.on('error', () => undefined);
    return cluster;
  };

  return {
    url: `redis://${addresses.join(',')}`,
    ports: nodes.map((n) => n.port),
    start,
    stop,
    remove: async () => {
      await stop('SIGKILL');
      for (const n of nodes) n.dir.remove();
    },
    client,
    deleteKeys: async (pattern) => {
      const cluster = client();
      try {
        await new Promise<void>((resolve, reject) => {
          cluster.once('ready', () => resolve());
          cluster.once('end', () => reject(new Error('the test cluster client could not connect')));
        });
        for (const node of cluster.nodes('master')) {
          let cursor = '0';
          do {
            const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
            cursor = next;
            for (const key of keys) await node.del(key);
          } while (cursor !== '0');
        }
      } finally {
        cluster.disconnect();
      }
    },
    output: () => out,
  };
}
