import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const CLI = resolve(import.meta.dirname, '../../dist/cli.js');
export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';
/**
 * Loopback exempt from the address rate limit (not the default): for tests whose crowd all comes from
 * 127.0.0.1 and must not be refused as one flooding client.
 */
export const LOOPBACK_EXEMPT = { ONSALE_RATE_LIMIT_EXEMPT: '127.0.0.1,::1,::ffff:127.0.0.1' };

/** A fresh folder under the system's temp folder, removed by the returned function. */
export function tempDir(prefix = 'onsale-test-'): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolvePort(port));
    });
  });
}

export interface RunningProcess {
  child: ChildProcess;
  output: () => string;
  /** Resolves with the exit code (or signal) once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop: (signal?: NodeJS.Signals) => Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

// Every process a test file started and has not seen exit. A test that fails before stopping what it
// started would otherwise leave supervisors restarting their children for the rest of the run.
// Vitest ends a test file's process with SIGTERM, so that is covered too: kill, then die of the signal.
const running = new Set<ChildProcess>();
const killRunning = () => {
  for (const child of running) child.kill('SIGKILL');
};
process.once('exit', killRunning);
process.once('SIGTERM', () => {
  killRunning();
  process.kill(process.pid, 'SIGTERM');
});

/** Runs `onsale <args>` from the built CLI, with a clean environment plus `env`. */
export function runCli(args: string[], env: Record<string, string> = {}): RunningProcess {
  return runScript(CLI, args, env);
}

/** Runs a compiled script (the CLI, or one of the bench's under build/) with `args`, as runCli does. */
export function runScript(script: string, args: string[], env: Record<string, string> = {}): RunningProcess {
  const child = spawn(process.execPath, [script, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.once('exit', (code, signal) => res({ code, signal })),
  );
  return {
    child,
    output: () => out,
    exited,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Polls `url` until it answers 200, or throws with the process output after `timeoutMs` (generous: a start on a busy 2-core machine can take tens of seconds). */
export async function waitForReady(url: string, proc?: RunningProcess, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(url);
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    if (proc && (proc.child.exitCode !== null || proc.child.signalCode !== null)) {
      throw new Error(`process exited before ready:\n${proc.output()}`);
    }
    if (Date.now() > deadline)
      throw new Error(`${url} not ready after ${timeoutMs} ms:\n${proc?.output() ?? ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface Onsale {
  baseUrl: string;
  dataDir: string;
  env: Record<string, string>;
  processes: RunningProcess[];
  /** Starts one more `onsale worker` against the same database. */
  addWorker: (extraEnv?: Record<string, string>) => RunningProcess;
  stop: () => Promise<void>;
}

/**
 * Runs onsale on the embedded defaults in a temp folder: `web` web servers (`onsale serve`, one port each
 * unless `start` is used) and `workers` workers. With `mode: 'start'` it runs `onsale start` instead.
 */
export async function startOnsale(
  opts: { mode?: 'start' | 'split'; workers?: number; env?: Record<string, string>; readyMs?: number } = {},
): Promise<Onsale> {
  const dir = tempDir();
  const port = await freePort();
  const env: Record<string, string> = {
    ONSALE_DATA_DIR: dir.path,
    ONSALE_ADMIN_TOKEN: ADMIN_TOKEN,
    PORT: String(port),
    ...opts.env,
  };
  const processes: RunningProcess[] = [];
  const baseUrl = `http://127.0.0.1:${port}`;
  if (opts.mode === 'start') {
    processes.push(runCli(['start'], { ONSALE_WEB: '2', ...env }));
  } else {
    await runCli(['migrate'], env).exited;
    processes.push(runCli(['serve'], env));
    for (let i = 0; i < (opts.workers ?? 1); i++) processes.push(runCli(['worker'], env));
  }
  try {
    await waitForReady(`${baseUrl}/readyz`, processes[0], opts.readyMs);
  } catch (error) {
    // The caller never gets the handle to stop them: stop them here, or a supervisor outlives the test.
    await Promise.all(processes.map((p) => p.stop('SIGKILL')));
    dir.remove();
    throw error;
  }
  return {
    baseUrl,
    dataDir: dir.path,
    env,
    processes,
    addWorker: (extraEnv = {}) => {
      const p = runCli(['worker'], { ...env, ...extraEnv });
      processes.push(p);
      return p;
    },
    stop: async () => {
      await Promise.all(processes.map((p) => p.stop('SIGTERM')));
      dir.remove();
    },
  };
}

/** The children of `pid` with their process titles, e.g. [{ pid: 123, title: 'onsale-worker' }]. */
export function childrenOf(pid: number): Array<{ pid: number; title: string }> {
  let out: string;
  try {
    out = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(pid)], { encoding: 'utf8' });
  } catch {
    return []; // ps exits 1 when there are none
  }
  return out
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [p, ...title] = line.trim().split(/\s+/);
      return { pid: Number(p), title: title.join(' ') };
    });
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls `condition` every 20 ms until it holds, or throws after `timeoutMs`. */
export async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
