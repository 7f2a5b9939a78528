import { execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { freePort, tempDir } from './processes.js';

export const PROMETHEUS_DIR = resolve(import.meta.dirname, '../../deploy/prometheus');

export interface RunningPrometheus {
  url: string;
  /** The configuration file it runs with. */
  configFile: string;
  /** An instant query through the HTTP API; throws with Prometheus's error when it refuses the query. */
  query: (expr: string) => Promise<Array<{ metric: Record<string, string>; value: [number, string] }>>;
  stop: () => Promise<void>;
}

/**
 * The real Prometheus (Debian package `prometheus`), on a free port with `config` (YAML or JSON) and its
 * own temporary storage, killed and cleaned up by stop(). Fails loudly when the binary is missing.
 */
export async function startPrometheus(config: string): Promise<RunningPrometheus> {
  const dir = tempDir('onsale-prometheus-');
  const configFile = join(dir.path, 'prometheus.yml');
  writeFileSync(configFile, config);
  const port = await freePort();
  const child = spawn(
    'prometheus',
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir.path, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-20_000)));
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  const spawnError = new Promise<never>((_, reject) =>
    child.once('error', (e) =>
      reject(new Error(`cannot run prometheus (install the Debian package): ${e.message}`)),
    ),
  );
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    dir.remove();
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    const ready = await Promise.race([
      fetch(`${url}/-/ready`).then(
        (r) => r.ok,
        () => false,
      ),
      spawnError,
    ]).catch(async (error: Error) => {
      await stop();
      throw error;
    });
    if (ready) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus did not become ready:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    configFile,
    stop,
    query: async (expr) => {
      const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = (await res.json()) as { status: string; error?: string; data?: { result: unknown } };
      if (body.status !== 'success') throw new Error(`prometheus refused ${expr}: ${body.error}`);
      return body.data!.result as Array<{ metric: Record<string, string>; value: [number, string] }>;
    },
  };
}

/** Runs promtool with `args` (and `input` on stdin); resolves with its exit code and output. */
export function promtool(args: string[], input?: string): Promise<{ code: number; output: string }> {
  return new Promise((res, reject) => {
    const child = execFile('promtool', args, { cwd: PROMETHEUS_DIR }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') return reject(error);
      res({ code: typeof error?.code === 'number' ? error.code : 0, output: stdout + stderr });
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** The samples of a text exposition, keyed by series ("name{labels}"). */
export function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}
