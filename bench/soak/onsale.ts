import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';

/** The product's CLI as the bench build holds it (build/src/cli.js). */
const CLI = resolve(import.meta.dirname, '../../src/cli.js');

export type Topology = 'start' | 'cluster';

/** An onsale process the chaos can aim at, by its title (process.title of each role). */
export interface OnsaleProcess {
  pid: number;
  role: 'supervisor' | 'web' | 'worker' | 'autoscaler' | 'lb' | 'balancer';
}

const ROLES: Array<[prefix: string, role: OnsaleProcess['role']]> = [
  ['onsale-supervisor', 'supervisor'],
  ['onsale-web', 'web'],
  ['onsale-worker', 'worker'],
  ['onsale-autoscaler', 'autoscaler'],
  ['onsale-lb', 'lb'],
  ['haproxy', 'balancer'],
  ['nginx', 'balancer'],
];

/**
 * One `onsale start` or `onsale cluster`, run as an operator would from a shell: the log goes to the soak,
 * which keeps its last lines and counts the 500s the web servers log ("request failed").
 */
export class RunningOnsale {
  readonly child: ChildProcess;
  readonly topology: Topology;
  #tail: string[] = [];
  #partial = '';
  failedRequests = 0;

  constructor(topology: Topology, env: Record<string, string>) {
    this.topology = topology;
    this.child = spawn(process.execPath, [CLI, topology], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const read = (chunk: Buffer) => {
      const lines = (this.#partial + chunk.toString()).split('\n');
      this.#partial = lines.pop() ?? '';
      for (const line of lines) {
        if (line.includes('"msg":"request failed"')) this.failedRequests++;
        this.#tail.push(line);
      }
      if (this.#tail.length > 400) this.#tail.splice(0, this.#tail.length - 200);
    };
    this.child.stdout!.on('data', read);
    this.child.stderr!.on('data', read);
  }

  get pid(): number {
    return this.child.pid!;
  }

  exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  tail(lines = 40): string {
    return this.#tail.slice(-lines).join('\n');
  }

  /** Every process of this onsale now: the supervisor and its descendants, by role. */
  processes(): OnsaleProcess[] {
    if (this.exited()) return [];
    return descendants(this.pid, true).flatMap(({ pid, args }) => {
      // A title (onsale-web) or a command line (/usr/sbin/haproxy -db …): its first word, without folders.
      const name = args.split(' ')[0]!.split('/').pop()!;
      const role = ROLES.find(([prefix]) => name.startsWith(prefix))?.[1];
      return role ? [{ pid, role }] : [];
    });
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the supervisor has exited. */
  async stop(graceMs = 15_000): Promise<void> {
    if (this.exited()) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }
}

/** `pid` (if `self`) and all its descendants with their command lines (titles), from one `ps`. */
export function descendants(pid: number, self = false): Array<{ pid: number; args: string }> {
  let out: string;
  try {
    out = execFileSync('ps', ['-eo', 'pid=,ppid=,args='], { encoding: 'utf8' });
  } catch {
    return [];
  }
  const all = out
    .trim()
    .split('\n')
    .map((line) => {
      const m = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(line);
      return m ? { pid: Number(m[1]), ppid: Number(m[2]), args: m[3]! } : null;
    })
    .filter((p): p is { pid: number; ppid: number; args: string } => p !== null);
  const found: Array<{ pid: number; args: string }> = [];
  const queue = [pid];
  const me = all.find((p) => p.pid === pid);
  if (self && me) found.push({ pid: me.pid, args: me.args });
  while (queue.length > 0) {
    const parent = queue.shift()!;
    for (const p of all) {
      if (p.ppid !== parent) continue;
      found.push({ pid: p.pid, args: p.args });
      queue.push(p.pid);
    }
  }
  return found;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls `${base}/readyz` until 200; false after `timeoutMs`. */
export async function waitReady(base: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2_000) });
      await res.body?.cancel();
      if (res.status === 200) return true;
    } catch {
      // down or restarting
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}
