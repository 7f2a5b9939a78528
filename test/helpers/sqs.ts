import { resolve } from 'node:path';
import { SqsQueue } from '../../src/adapters/sqs/queue.js';
import type { Queue } from '../../src/ports/queue.js';
import { freePort, runScript, until, type RunningProcess } from './processes.js';
import { freshPostgresDatabase, uniqueName } from './services.js';

const FAUXQS = resolve(import.meta.dirname, '../../node_modules/fauxqs/dist/app.js');

/**
 * What the SDK's default chain reads in a process that talks to fauxqs: it checks no signature, but the
 * SDK refuses to send a request without some credentials.
 */
export const FAUXQS_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'fauxqs', AWS_SECRET_ACCESS_KEY: 'fauxqs' };

/**
 * fauxqs (the SQS emulator of the npm package of that name), run as a process of its own on a free port.
 * It keeps everything in memory: a restart starts empty.
 */
export interface Fauxqs {
  /** http://127.0.0.1:PORT, the `endpoint` of a queue URL. */
  endpoint: string;
  /** The onsale queue URL of the queue `name` on this emulator, with a long poll of `wait` seconds. */
  queueUrl: (name: string, wait?: number) => string;
  /** Starts the emulator (again) on the same port, and waits until it answers. */
  start: () => Promise<void>;
  /** SIGKILLs it, as a crash would. */
  kill: () => Promise<void>;
}

export async function startFauxqs(): Promise<Fauxqs> {
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  let proc: RunningProcess | undefined;
  const start = async () => {
    // Its own API rather than its CLI, which logs every request whatever FAUXQS_LOGGER says.
    const code = `(await import(${JSON.stringify(FAUXQS)})).startFauxqs({ port: ${port}, logger: false })`;
    proc = runScript('--input-type=module', ['-e', code]);
    const started = proc;
    try {
      await until(async () => {
        if (started.child.exitCode !== null) throw new Error(`fauxqs exited: ${started.output()}`);
        return fetch(`${endpoint}/health`).then(
          (r) => r.ok,
          () => false,
        );
      }, 20_000);
    } catch (error) {
      await started.stop('SIGKILL');
      throw new Error(`could not start fauxqs (${FAUXQS}); run npm install`, { cause: error });
    }
  };
  await start();
  return {
    endpoint,
    queueUrl: (name, wait = 1) =>
      `sqs://${name}?endpoint=${encodeURIComponent(endpoint)}&region=us-east-1&wait=${wait}`,
    start,
    kill: async () => {
      await proc?.stop('SIGKILL');
    },
  };
}

/**
 * The SQS queue for the contract suite: a queue name of its own on the file's fauxqs (started at the first
 * test, killed by teardown) and a throw-away database on the shared PostgreSQL for its index. `reopen` is
 * another process's view: another client, the same queue and database.
 */
export function sqsQueue(): {
  open: () => Promise<{ adapter: Queue; reopen: () => Queue; cleanup: () => Promise<void> }>;
  teardown: () => Promise<void>;
} {
  let emulator: Promise<Fauxqs> | undefined;
  return {
    open: async () => {
      Object.assign(process.env, FAUXQS_CREDENTIALS);
      emulator ??= startFauxqs();
      const fauxqs = await emulator;
      // A short poll: the suite asks many claims that find nothing, and fauxqs answers them exactly.
      const url = fauxqs.queueUrl(uniqueName('onsale_test'), 0);
      const postgres = await freshPostgresDatabase();
      const opened: Queue[] = [];
      const open = () => {
        const queue = new SqsQueue(url, postgres.url);
        opened.push(queue);
        return queue;
      };
      const cleanup = async () => {
        for (const queue of opened) await queue.close().catch(() => undefined);
        await postgres.drop();
      };
      const adapter = open();
      await adapter.migrate().catch(async (error: unknown) => {
        await cleanup();
        throw error;
      });
      return { adapter, reopen: open, cleanup };
    },
    teardown: async () => {
      const started = emulator;
      emulator = undefined;
      if (started) await (await started).kill();
    },
  };
}
