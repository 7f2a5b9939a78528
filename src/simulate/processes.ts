import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { PlannedRequest } from './crowd.js';
import {
  clock,
  zeroCounts,
  type PlayingShare,
  type ShareCounts,
  type ShareOptions,
  type ShareResult,
} from './play.js';

/**
 * `onsale simulate --processes N`: the crowd, planned once by the parent, split among N child processes
 * (child.ts), each playing its share on its own pools. Each child is seen by the parent as a PlayingShare, the
 * same as the share it plays itself when N is 1, so that the live display and the merge do not care which.
 */

const CHILD = fileURLToPath(new URL('./child.js', import.meta.url));
const STDERR_KEPT = 4096;
/** Between the last child saying it is ready and the opening: time for the "go" message to reach them all. */
const START_MARGIN_MS = 50;

export type ParentMessage = { type: 'share'; share: Omit<ShareOptions, 't0'> } | { type: 'go'; t0: number };
export type ChildMessage =
  | { type: 'ready' }
  | { type: 'progress'; counts: ShareCounts; window: number[] }
  | { type: 'sent' }
  | { type: 'done'; result: ShareResult };

/** `total` divided among `n`, as evenly as whole numbers allow, at least 1 each. */
function divide(total: number, n: number): number[] {
  return Array.from({ length: n }, (_, k) => Math.max(1, Math.floor(total / n) + (k < total % n ? 1 : 0)));
}

/** Every n-th request of the plan, so that each share has the crowd's arrival shape and its due times. */
function splitPlan(plan: readonly PlannedRequest[], n: number): PlannedRequest[][] {
  const shares = Array.from({ length: n }, (): PlannedRequest[] => []);
  plan.forEach((req, i) => shares[i % n]!.push(req));
  return shares;
}

const children = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Stops every child still running; also run when this process exits, however it exits. */
export function stopChildren(signal: NodeJS.Signals = 'SIGTERM'): void {
  for (const child of children) child.kill(signal);
}

/**
 * Forks `n` children, gives each its share, waits until all are ready, then starts them at one instant (on
 * clock()). Returns that instant and one PlayingShare per child; a child that dies before sending its result
 * rejects its `done` with a message naming it, and the caller is expected to stopChildren().
 */
export async function playInChildren(
  shared: Omit<ShareOptions, 't0' | 'plan' | 'connections' | 'followers' | 'syncPrefix'>,
  plan: readonly PlannedRequest[],
  n: number,
  total: { connections: number; followers: number },
): Promise<{ t0: number; shares: PlayingShare[] }> {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => stopChildren('SIGKILL'));
  }
  const plans = splitPlan(plan, n);
  const connections = divide(total.connections, n);
  const followers = divide(total.followers, n);
  const started = plans.map((share, k) =>
    startChild(k, n, {
      ...shared,
      plan: share,
      connections: connections[k]!,
      followers: followers[k]!,
      syncPrefix: `sync-p${k + 1}`,
    }),
  );
  try {
    await Promise.all(started.map((c) => c.ready));
  } catch (error) {
    stopChildren();
    throw error;
  }
  const t0 = clock() + START_MARGIN_MS;
  for (const c of started) c.go(t0);
  return { t0, shares: started.map((c) => c.share) };
}

function startChild(
  k: number,
  n: number,
  share: Omit<ShareOptions, 't0'>,
): { ready: Promise<void>; go: (t0: number) => void; share: PlayingShare } {
  const child = fork(CHILD, [], { serialization: 'advanced', stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  children.add(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-STDERR_KEPT)));
  const counts: ShareCounts = zeroCounts();
  let window: number[] = [];
  let result: ShareResult | null = null;
  let onReady!: () => void;
  let onSent!: () => void;
  const ready = new Promise<void>((r) => (onReady = r));
  const sent = new Promise<void>((r) => (onSent = r));
  child.on('message', (m: ChildMessage) => {
    if (m.type === 'ready') onReady();
    else if (m.type === 'progress') {
      Object.assign(counts, m.counts);
      for (const latency of m.window) window.push(latency);
    } else if (m.type === 'sent') onSent();
    else result = m.result;
  });
  const exited = new Promise<ShareResult>((resolve, reject) => {
    child.once('exit', (code, signal) => {
      children.delete(child);
      if (result && code === 0) {
        resolve(result);
        return;
      }
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      const said = stderr.trim() ? `:\n${stderr.trim()}` : '';
      reject(
        new Error(`simulator process ${k + 1} of ${n} (pid ${child.pid}) ${how} before finishing${said}`),
      );
    });
  });
  child.send({ type: 'share', share } satisfies ParentMessage);
  return {
    // A child that dies before it is ready fails the start.
    ready: Promise.race([ready, exited.then(() => undefined)]),
    go: (t0) => child.send({ type: 'go', t0 } satisfies ParentMessage),
    share: {
      counts,
      takeWindow: () => {
        const w = window;
        window = [];
        return w;
      },
      // Never left hanging by a dead child: its `done` rejects, and the caller stops waiting for `sent`.
      sent: Promise.race([sent, exited.then(() => undefined)]),
      done: exited,
    },
  };
}
