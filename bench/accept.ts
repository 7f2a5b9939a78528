import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import {
  childrenOf,
  cleanEnv,
  cpuSeconds,
  cpuSecondsOf,
  freePort,
  peakRssMb,
  processesNamed,
  spawnNode,
  tempDir,
  waitForHttp,
  type BenchProcess,
} from './processes.js';
import { runWrk, type LoadShape, type WrkResult } from './wrk.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const BARE_SERVER = fileURLToPath(new URL('./bare-server.js', import.meta.url));

/**
 * What runs on the real side: `start` is `onsale start` as `npm start` runs it (web servers sharing the port
 * and a worker allocating what they accept, all on this machine), on the embedded defaults unless `engine`
 * sets it up on other servers; `serve` is one `onsale serve` and no worker, which isolates the accept path.
 * The bare side runs as many processes as the real side has web servers.
 */
type Topology = { kind: 'start'; web: number; engine?: Engine } | { kind: 'serve' };

/** Other servers for `onsale start`: `prepare` makes fresh ones (a database, a key prefix) for one run. */
export interface Engine {
  name: string;
  prepare: () => Promise<{ env: Record<string, string>; cleanup: () => Promise<void> }>;
  /**
   * Command names of the engine's server processes (`postgres`, `redis-server`, `beam.smp`): when they run
   * on this machine, their CPU per 202 is measured beside onsale's.
   */
  servers?: readonly string[];
  /** Runs beside the load once onsale is ready (e.g. a Prometheus-like scraper); returns how to stop it. */
  whileRunning?: (base: string, adminToken: string) => () => void;
}

export interface AcceptPlan {
  rounds: number;
  load: LoadShape;
  warmupSec: number;
}

/** The median real and bare runs of one topology, with what the real processes used. */
export interface AcceptFigures {
  real: WrkResult;
  bare: WrkResult;
  ratio: number;
  /** Non-202 answers of the reported real run by status, and `noResponse` for socket errors and timeouts. */
  non202: Record<string, number>;
  /** Largest VmHWM of one web process, over the rounds. */
  webPeakRssMb: number | null;
  /** CPUs (CPU seconds per second) used during the reported real run by all web processes, and the worker. */
  cpu: { web: number; worker: number };
  /**
   * CPU milliseconds per 202 (from /proc/PID/stat, every thread of the process), medians over the rounds: the
   * real web processes, its workers, and the bare processes. Other load moves them far less than the rates.
   */
  cpuMsPer202: { web: number; worker: number; bare: number };
  /** Web and worker CPU per 202 ÷ the bare server's. */
  cpuPer202VsBare: number;
  /** CPU milliseconds per 202 of the engine's servers on this machine, by command name (reported run). */
  serverCpuMsPer202: Record<string, number>;
}

export interface RealRun {
  wrk: WrkResult;
  rssMb: number | null;
  cpu: { web: number; worker: number };
  cpuMsPer202: { web: number; worker: number };
  serverCpuMsPer202: Record<string, number>;
  queuedAtEnd: number;
}

/** A run of the bare server, with the CPU milliseconds its processes used per 202. */
interface BareRun {
  wrk: WrkResult;
  cpuMsPer202: number;
}

/**
 * Runs `plan.rounds` rounds of: the bare server under wrk, then the real one (the order alternates, which
 * spreads the drift of a shared machine over both sides). Each run starts its servers fresh and stops them
 * after, so neither side runs beside the other.
 */
export async function measureAccept(
  plan: AcceptPlan,
  topology: Topology,
  progress: (line: string) => void,
): Promise<AcceptFigures> {
  const processes = topology.kind === 'start' ? topology.web : 1;
  const realName =
    topology.kind === 'serve'
      ? 'onsale serve (no worker)'
      : `onsale start (${topology.web} web, workers)${topology.engine ? ` on ${topology.engine.name}` : ''}`;
  const real: RealRun[] = [];
  const bare: BareRun[] = [];
  for (let r = 1; r <= plan.rounds; r++) {
    const engine = topology.kind === 'start' ? topology.engine : undefined;
    const label = `accept ${engine ? engine.name : topology.kind} ${r}/${plan.rounds}`;
    for (const side of r % 2 === 1 ? ['bare', 'real'] : ['real', 'bare']) {
      if (side === 'bare') {
        const run = await bareRun(plan, processes);
        progress(
          `${label}: bare Fastify (${processes} process${processes > 1 ? 'es' : ''}): ${describe(run.wrk)}; ` +
            `CPU ms per 202 ${run.cpuMsPer202.toFixed(4)}`,
        );
        bare.push(run);
      } else {
        const run = await realRun(plan, topology);
        progress(
          `${label}: ${realName}: ${describe(run.wrk)}; CPUs used: web ${run.cpu.web.toFixed(2)}, ` +
            `worker ${run.cpu.worker.toFixed(2)}; CPU ms per 202: web ${run.cpuMsPer202.web.toFixed(4)}, ` +
            `worker ${run.cpuMsPer202.worker.toFixed(4)}; ` +
            `${run.queuedAtEnd.toLocaleString('en-US')} queued at the end`,
        );
        real.push(run);
      }
    }
  }
  const reported = median(real, (x) => x.wrk.acceptedPerSec);
  const bareReported = median(bare, (x) => x.wrk.acceptedPerSec).wrk;
  const realCpu = median(real, (x) => x.cpuMsPer202.web + x.cpuMsPer202.worker).cpuMsPer202;
  const bareCpu = median(bare, (x) => x.cpuMsPer202).cpuMsPer202;
  const non202: Record<string, number> = {};
  for (const [status, n] of Object.entries(reported.wrk.statuses)) if (status !== '202') non202[status] = n;
  if (reported.wrk.socketErrors > 0) non202.noResponse = reported.wrk.socketErrors;
  const rss = real.map((x) => x.rssMb).filter((x): x is number => x !== null);
  return {
    real: reported.wrk,
    bare: bareReported,
    ratio: reported.wrk.acceptedPerSec / bareReported.acceptedPerSec,
    non202,
    webPeakRssMb: rss.length > 0 ? Math.max(...rss) : null,
    cpu: reported.cpu,
    cpuMsPer202: { ...realCpu, bare: bareCpu },
    cpuPer202VsBare: (realCpu.web + realCpu.worker) / bareCpu,
    serverCpuMsPer202: reported.serverCpuMsPer202,
  };
}

export function describe(run: WrkResult): string {
  const others = Object.entries(run.statuses).filter(([s]) => s !== '202');
  const refused = others.length > 0 ? `, other answers ${others.map(([s, n]) => `${s}×${n}`).join(' ')}` : '';
  const lost = run.socketErrors > 0 ? `, ${run.socketErrors} without answer` : '';
  return (
    `${Math.round(run.acceptedPerSec).toLocaleString('en-US')} 202/s, ` +
    `p50 ${run.p50Ms.toFixed(1)} ms, p99 ${run.p99Ms.toFixed(1)} ms${refused}${lost}`
  );
}

export function median<T>(items: readonly T[], by: (item: T) => number): T {
  const sorted = [...items].sort((a, b) => by(a) - by(b));
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

/** A buyer id prefix no other run uses, so that every request of every run comes from a new buyer. */
function buyerPrefix(): string {
  return randomBytes(4).toString('hex');
}

/** A warm-up run (JIT, connection set-up), then the measured run. */
export async function warmThenMeasure(
  plan: AcceptPlan,
  base: string,
  target: { eventId: string; ticketTypeId: string },
  before: () => void = () => undefined,
): Promise<WrkResult> {
  await runWrk(
    base,
    { ...target, buyerPrefix: buyerPrefix() },
    { ...plan.load, durationSec: plan.warmupSec },
  );
  before();
  return runWrk(base, { ...target, buyerPrefix: buyerPrefix() }, plan.load);
}

async function bareRun(plan: AcceptPlan, processes: number): Promise<BareRun> {
  const port = await freePort();
  const server = spawnNode(BARE_SERVER, [String(port), String(processes)], cleanEnv({}));
  try {
    const base = `http://127.0.0.1:${port}`;
    await waitForHttp(`${base}/healthz`, server);
    // The servers: the process itself, or the children node:cluster forked (they have all forked by now).
    const servers = () =>
      processes === 1
        ? [server.pid]
        : childrenOf(server.pid)
            .filter((c) => c.title === 'onsale-bench-bare')
            .map((c) => c.pid);
    let pids: number[] = [];
    let before = 0;
    // The bare route ignores the ids; ids as long as onsale's (16 characters) keep the requests the same size.
    const wrk = await warmThenMeasure(
      plan,
      base,
      { eventId: 'bare-event-00000', ticketTypeId: 'bare-ticket-type' },
      () => {
        pids = servers();
        before = cpuSecondsOf(pids);
      },
    );
    return { wrk, cpuMsPer202: perAccepted(cpuSecondsOf(pids) - before, wrk) };
  } finally {
    await server.stop();
  }
}

export async function realRun(plan: AcceptPlan, topology: Topology): Promise<RealRun> {
  const dir = tempDir();
  const port = await freePort();
  const adminToken = randomBytes(32).toString('base64url');
  const engine = topology.kind === 'start' ? topology.engine : undefined;
  const prepared = engine ? await engine.prepare() : null;
  const env = cleanEnv({
    ONSALE_DATA_DIR: dir.path,
    PORT: String(port),
    ONSALE_ADMIN_TOKEN: adminToken,
    LOG_LEVEL: 'warn',
    ...(topology.kind === 'start' ? { ONSALE_WEB: String(topology.web) } : {}),
    ...prepared?.env,
  });
  const onsale = spawnNode(CLI, [topology.kind], env);
  let stopBeside: (() => void) | null = null;
  try {
    const base = `http://127.0.0.1:${port}`;
    await waitForHttp(`${base}/readyz`, onsale);
    stopBeside = engine?.whileRunning?.(base, adminToken) ?? null;
    const admin = { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' };
    const target = await createEvent(base, admin);

    // Read after the warm-up: by then every child of `onsale start` has forked and named its role.
    let roles = { web: [] as number[], worker: [] as number[] };
    let cpuBefore = { web: 0, worker: 0 };
    let serversBefore = new Map<number, number>();
    const wrk = await warmThenMeasure(plan, base, target, () => {
      roles = rolesOf(onsale, topology);
      cpuBefore = cpuOf(roles);
      serversBefore = serverCpuByPid(engine?.servers ?? []);
    });
    const cpuAfter = cpuOf(roles);
    const serversUsed = serverCpuUsed(engine?.servers ?? [], serversBefore);
    const rss = roles.web.map(peakRssMb).filter((x): x is number => x !== null);

    const stats = await fetch(`${base}/api/events/${target.eventId}/stats`, { headers: admin });
    const { purchases } = (await stats.json()) as { purchases: { queued: number } };
    return {
      wrk,
      rssMb: rss.length > 0 ? Math.max(...rss) : null,
      cpuMsPer202: {
        web: perAccepted(cpuAfter.web - cpuBefore.web, wrk),
        worker: perAccepted(cpuAfter.worker - cpuBefore.worker, wrk),
      },
      cpu: {
        web: (cpuAfter.web - cpuBefore.web) / wrk.durationSec,
        worker: (cpuAfter.worker - cpuBefore.worker) / wrk.durationSec,
      },
      serverCpuMsPer202: Object.fromEntries(
        [...serversUsed].map(([name, seconds]) => [name, perAccepted(seconds, wrk)]),
      ),
      queuedAtEnd: purchases.queued,
    };
  } finally {
    stopBeside?.();
    await onsale.stop();
    dir.remove();
    await prepared?.cleanup();
  }
}

/** An event with capacity at the API's maximum: nothing is refused for stock during the bench. */
export async function createEvent(
  base: string,
  headers: Record<string, string>,
): Promise<{ eventId: string; ticketTypeId: string }> {
  const res = await fetch(`${base}/api/events`, {
    method: 'POST',
    headers,
    body: JSON.stringify({
      name: 'bench',
      ticketTypes: [{ name: 'General admission', priceCents: 5000, capacity: 10_000_000, maxPerBuyer: 4 }],
    }),
  });
  if (res.status !== 201) throw new Error(`creating the bench event: ${res.status} ${await res.text()}`);
  const event = (await res.json()) as { id: string; ticketTypes: Array<{ id: string }> };
  return { eventId: event.id, ticketTypeId: event.ticketTypes[0]!.id };
}

/** The pids of the web servers and workers: the supervisor's children named by role, or `serve` itself. */
function rolesOf(onsale: BenchProcess, topology: Topology): { web: number[]; worker: number[] } {
  if (topology.kind === 'serve') return { web: [onsale.pid], worker: [] };
  const children = childrenOf(onsale.pid);
  return {
    web: children.filter((c) => c.title === 'onsale-web').map((c) => c.pid),
    worker: children.filter((c) => c.title === 'onsale-worker').map((c) => c.pid),
  };
}

function cpuOf(roles: { web: number[]; worker: number[] }): { web: number; worker: number } {
  return { web: cpuSecondsOf(roles.web), worker: cpuSecondsOf(roles.worker) };
}

/** CPU seconds so far of every process of the servers `names`, by pid. */
function serverCpuByPid(names: readonly string[]): Map<number, number> {
  const pids = [...processesNamed(names).values()].flat();
  return new Map(pids.map((pid) => [pid, cpuSeconds(pid)]));
}

/**
 * CPU seconds the servers `names` used since `before`, by name. A process started since (a PostgreSQL backend
 * for a new connection) counts all it used; one that exited since is lost, with what it used.
 */
function serverCpuUsed(names: readonly string[], before: Map<number, number>): Map<string, number> {
  const used = new Map<string, number>();
  for (const [name, pids] of processesNamed(names)) {
    used.set(
      name,
      pids.reduce((total, pid) => total + cpuSeconds(pid) - (before.get(pid) ?? 0), 0),
    );
  }
  return used;
}

/** CPU seconds spent over a run, in milliseconds per 202 of that run. */
function perAccepted(seconds: number, run: WrkResult): number {
  const accepted = run.statuses['202'] ?? 0;
  return accepted > 0 ? (seconds * 1000) / accepted : Number.NaN;
}
