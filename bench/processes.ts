import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A process the bench started; stop() ends it (SIGTERM, then SIGKILL after a deadline). */
export interface BenchProcess {
  pid: number;
  /** The last few kilobytes of its stdout and stderr, for error messages. */
  output(): string;
  exited(): boolean;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
const tempDirs = new Set<string>();
const OUTPUT_KEPT = 16_384;
const STOP_DEADLINE_MS = 12_000;
const CLEANUP_DEADLINE_MS = 30_000;

/**
 * Kills whatever the bench started and deletes its temp folders when it exits early (an error or Ctrl+C),
 * so nothing outlives it.
 */
export function cleanUpOnExit(beforeExit?: () => Promise<void>): void {
  process.once('exit', () => {
    for (const child of running) child.kill('SIGKILL');
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });
  let stopping = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      // A second Ctrl+C does not wait for the clean-up.
      if (stopping) process.exit(130);
      stopping = true;
      process.stderr.write(`\n[bench] ${signal}: stopping\n`);
      // What only an async clean-up removes (databases, Redis keys), within a deadline; then the exit hook.
      const deadline = setTimeout(() => process.exit(130), CLEANUP_DEADLINE_MS);
      void (beforeExit ?? (async () => undefined))()
        .catch((error: unknown) =>
          process.stderr.write(
            `[bench] clean-up failed: ${error instanceof Error ? error.message : String(error)}\n`,
          ),
        )
        .finally(() => {
          clearTimeout(deadline);
          process.exit(130);
        });
    });
  }
}

/**
 * Runs `node script ...args` with the environment `env` (not merged with the bench's own: callers build it
 * with cleanEnv so that a developer's ONSALE_* settings do not leak into a measurement).
 */
export function spawnNode(script: string, args: string[], env: NodeJS.ProcessEnv): BenchProcess {
  return spawnProcess(process.execPath, [script, ...args], env);
}

/** Runs `command ...args` as spawnNode does, for the bench's other programs (nginx). */
export function spawnProcess(command: string, args: string[], env: NodeJS.ProcessEnv): BenchProcess {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid === undefined) throw new Error(`could not start ${command} ${args[0] ?? ''}`);
  running.add(child);
  let out = '';
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-OUTPUT_KEPT);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      running.delete(child);
      resolve();
    }),
  );
  const exited = () => child.exitCode !== null || child.signalCode !== null;
  return {
    pid: child.pid,
    output: () => out,
    exited,
    stop: async () => {
      if (exited()) return;
      child.kill('SIGTERM');
      const deadline = setTimeout(() => child.kill('SIGKILL'), STOP_DEADLINE_MS);
      await exit;
      clearTimeout(deadline);
    },
  };
}

/** A fresh folder under the system's temp folder for one measurement, and the function that deletes it. */
export function tempDir(): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), 'onsale-bench-'));
  tempDirs.add(path);
  return {
    path,
    remove: () => {
      rmSync(path, { recursive: true, force: true });
      tempDirs.delete(path);
    },
  };
}

/**
 * The bench's environment without onsale's settings, plus `extra`: the embedded defaults, on purpose, but
 * for loopback exempt from the address rate limit (not the default): every load generator of the bench
 * connects from 127.0.0.1 and measures throughput, not the limit.
 */
export function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^(ONSALE_|PORT$|HOST$|LOG_LEVEL$)/.test(key)) env[key] = value;
  }
  return { ...env, ONSALE_RATE_LIMIT_EXEMPT: '127.0.0.1,::1,::ffff:127.0.0.1', ...extra };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Polls `url` until it answers 200; fails with the process's output if it exits or takes too long. */
export async function waitForHttp(url: string, proc: BenchProcess, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await fetch(url)).status === 200) return;
    } catch {
      // not listening yet
    }
    if (proc.exited())
      throw new Error(`process ${proc.pid} exited before ${url} answered:\n${proc.output()}`);
    if (Date.now() > deadline) throw new Error(`${url} did not answer in ${timeoutMs} ms:\n${proc.output()}`);
    await sleep(50);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Peak resident memory of a live process in MB (VmHWM of /proc/PID/status); null off Linux or once gone. */
export function peakRssMb(pid: number): number | null {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** The pids in /proc (as its entries' names); none off Linux. */
function livePids(): string[] {
  try {
    return readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return [];
  }
}

/** Live children of `pid` with their process titles (onsale's roles name themselves: onsale-web…). */
export function childrenOf(pid: number): Array<{ pid: number; title: string }> {
  const found: Array<{ pid: number; title: string }> = [];
  for (const name of livePids()) {
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // The command name in parentheses may hold spaces; the parent pid is the second field after it.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== pid) continue;
      const title = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0')[0] ?? '';
      found.push({ pid: Number(name), title });
    } catch {
      // exited while we looked
    }
  }
  return found;
}

/**
 * Live processes whose command name (/proc/PID/comm, e.g. `postgres`, `redis-server`, `beam.smp`) is one of
 * `names`, by name: the servers of a bench engine when they run on this machine. Empty off Linux.
 */
export function processesNamed(names: readonly string[]): Map<string, number[]> {
  const found = new Map<string, number[]>(names.map((n) => [n, []]));
  for (const name of livePids()) {
    try {
      const comm = readFileSync(`/proc/${name}/comm`, 'utf8').trim();
      found.get(comm)?.push(Number(name));
    } catch {
      // exited while we looked
    }
  }
  return found;
}

/**
 * CPU seconds (user + system) of this process's children that have exited and been waited for (cutime and
 * cstime of /proc/self/stat): the cost of a run of wrk, read before and after it.
 */
export function finishedChildrenCpuSeconds(): number {
  // cutime and cstime: fields 16 and 17 of stat(5).
  return statSeconds('self', 13);
}

/** CPU seconds (user + system) a live process has used so far, from /proc/PID/stat; 0 once it is gone. */
export function cpuSeconds(pid: number): number {
  // utime and stime: fields 14 and 15 of stat(5).
  return statSeconds(String(pid), 11);
}

/** CPU seconds (user + system) the live processes `pids` have used so far, together. */
export function cpuSecondsOf(pids: readonly number[]): number {
  return pids.reduce((total, pid) => total + cpuSeconds(pid), 0);
}

/**
 * Two consecutive clock-tick fields of /proc/<pid>/stat, counted from the state after the command name, in
 * seconds; 0 if unreadable.
 */
function statSeconds(pid: string, index: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Clock ticks, 100 per second on Linux.
    return (Number(fields[index]) + Number(fields[index + 1])) / 100;
  } catch {
    return 0;
  }
}
