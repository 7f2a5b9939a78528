import { spawn, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
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
