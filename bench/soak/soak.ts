import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { findBalancer } from '../../src/processes/lb/balancer.js';
import { simulate, type SimulationReport } from '../../src/simulate/run.js';
import { startPrivatePostgres, type PrivatePostgres } from '../../test/helpers/private-postgres.js';
import { freePort } from '../../test/helpers/processes.js';
import { startPrivateRabbit, type PrivateRabbit } from '../../test/helpers/rabbitmq.js';
import { startPrivateRedis, type PrivateRedis } from '../../test/helpers/redis.js';
import { makeSmallDisk, type SmallDisk } from './disk.js';
import { residentMiB, rssTrend, type RssSeries, type RssTrend } from './memory.js';
import { alive, descendants, RunningOnsale, waitReady, type OnsaleProcess, type Topology } from './onsale.js';

export const ENGINE_SETS = ['embedded', 'postgres+redis', 'postgres+rabbitmq'] as const;
export type EngineSet = (typeof ENGINE_SETS)[number];

export const FAULT_KINDS = [
  'kill-web',
  'kill-worker',
  'kill-autoscaler',
  'kill-supervisor',
  'kill-lb',
  'kill-balancer',
  'restart-postgres',
  'restart-redis',
  'restart-rabbitmq',
  'disk-full',
  'pause',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface SoakOptions {
  minutes: number;
  engines: EngineSet;
  seed: number;
  /** Which topologies to run, in order (default: start, then cluster when HAProxy is installed). */
  topologies?: Topology[];
  /** Progress lines (stderr in the CLI). */
  log: (line: string) => void;
}

export interface FaultRecord {
  kind: FaultKind;
  topology: Topology;
  atSec: number;
  detail: string;
  /** Seconds from the end of the fault until /readyz answered 200 again; null: it never did (in 120 s). */
  recoveredSec: number | null;
}

export interface RoundRecord {
  topology: Topology;
  eventId: string;
  durationSec: number;
  requests: number;
  accepted: number;
  confirmed: number;
  rejected: number;
  notFinal: number;
  gaveUp: number;
  refusals: Record<string, number>;
  invariantsOk: boolean;
  violations: SimulationReport['invariants']['violations'];
}

export interface SoakReport {
  ok: boolean;
  engines: EngineSet;
  minutes: number;
  seed: number;
  startedAt: string;
  durationSec: number;
  /** Load averages (1, 5, 15 min) of the machine, before and after: it is shared. */
  loadBefore: number[];
  loadAfter: number[];
  topologies: Topology[];
  disk: SmallDisk['kind'] | 'not used';
  faults: FaultRecord[];
  perKind: Partial<Record<FaultKind, { injected: number; survived: number }>>;
  /** Fault kinds this run could not inject, and why. */
  skipped: Partial<Record<FaultKind, string>>;
  rounds: RoundRecord[];
  /** 500s the web servers logged ("request failed"), on any route. */
  serverErrorsLogged: number;
  /** Clean stops (SIGTERM) of each topology at the end of its phase: exit codes. */
  stops: Array<{ topology: Topology; code: number | null; signal: string | null }>;
  memory: RssTrend[];
  /** Everything that did not hold; empty when ok. */
  problems: string[];
}

/** Refusal codes that are a 5xx other than the contract's 503s (api.md: "a 5xx other than 503 is a bug"). */
export function isForbidden5xx(code: string): boolean {
  return code === 'internal_error' || (/^http_5\d\d$/.test(code) && code !== 'http_503');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The chaos soak: for `minutes`, the simulator sells one event after another against onsale (`onsale start`
 * for the first 60 % of the time, then `onsale cluster` behind HAProxy), while a chaos loop injects one fault
 * at a time: SIGKILL of a web server, a worker, the autoscaler, the supervisor (restarted as an operator
 * would: the same command again), the balancer or its wrapper; a restart of the soak's own PostgreSQL,
 * Redis or RabbitMQ; a full disk under the embedded engine's data; SIGSTOP of a process for a few seconds. Each round's
 * invariants are checked by the simulator; then 500s, purchases not final, recovery after each fault and the
 * memory trend of the processes that lived longest.
 */
export async function runSoak(opts: SoakOptions): Promise<SoakReport> {
  const totalMs = opts.minutes * 60_000;
  const soakSec = totalMs / 1000;
  const started = Date.now();
  const at = () => Math.round((Date.now() - started) / 100) / 10;
  const log = (line: string) => opts.log(`[soak ${at().toFixed(1)}s] ${line}`);
  let random = opts.seed >>> 0 || 1;
  const rand = () => {
    // xorshift32: the schedule of faults replays from --seed (their effect depends on timing all the same).
    random ^= random << 13;
    random ^= random >>> 17;
    random ^= random << 5;
    return (random >>> 0) / 2 ** 32;
  };
  const between = (lo: number, hi: number) => lo + rand() * (hi - lo);

  const report: SoakReport = {
    ok: false,
    engines: opts.engines,
    minutes: opts.minutes,
    seed: opts.seed,
    startedAt: new Date(started).toISOString(),
    durationSec: 0,
    loadBefore: loadavg().map((n) => Math.round(n * 100) / 100),
    loadAfter: [],
    topologies: [],
    disk: 'not used',
    faults: [],
    perKind: {},
    skipped: {},
    rounds: [],
    serverErrorsLogged: 0,
    stops: [],
    memory: [],
    problems: [],
  };
  const problem = (text: string) => {
    report.problems.push(text);
    log(`PROBLEM: ${text}`);
  };

  const work = mkdtempSync(join(tmpdir(), 'onsale-soak-'));
  let disk: SmallDisk | null = null;
  let postgres: PrivatePostgres | null = null;
  let redis: PrivateRedis | null = null;
  let rabbit: PrivateRabbit | null = null;
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const adminToken = randomBytes(24).toString('hex');
  const env: Record<string, string> = {
    PORT: String(port),
    ONSALE_ADMIN_TOKEN: adminToken,
    ONSALE_WEB: '2',
    ONSALE_WORKERS_MIN: '2',
    ONSALE_WORKERS_MAX: '3',
    ONSALE_LB: 'haproxy',
    // The whole crowd comes from this machine: as one address it would be rate-limited as one client.
    ONSALE_RATE_LIMIT_EXEMPT: '127.0.0.1,::1,::ffff:127.0.0.1',
  };
  if (opts.engines === 'embedded') {
    disk = makeSmallDisk(96);
    report.disk = disk.kind;
    env.ONSALE_DATA_DIR = disk.path;
    report.skipped['restart-postgres'] = 'the embedded engine has no PostgreSQL';
    report.skipped['restart-redis'] = 'the embedded engine has no Redis';
    report.skipped['restart-rabbitmq'] =
      'the embedded engine has no RabbitMQ (see --engines postgres+rabbitmq)';
    if (disk.unavailable) report.skipped['disk-full'] = disk.unavailable;
  } else {
    env.ONSALE_DATA_DIR = join(work, 'data');
    const queue = opts.engines === 'postgres+redis' ? 'Redis' : 'RabbitMQ';
    if (queue === 'Redis')
      report.skipped['restart-rabbitmq'] = 'the queue is Redis here (see --engines postgres+rabbitmq)';
    else report.skipped['restart-redis'] = 'the queue is RabbitMQ here (see --engines postgres+redis)';
    report.skipped['disk-full'] =
      `the data is in PostgreSQL and ${queue} (a full disk under them is their own operations matter)`;
  }
  let topologies: Topology[] = opts.topologies ?? ['start', 'cluster'];
  if (topologies.includes('cluster')) {
    try {
      findBalancer('haproxy');
    } catch (error) {
      topologies = topologies.filter((t) => t !== 'cluster');
      report.skipped['kill-lb'] = `no onsale cluster: ${(error as Error).message}`;
    }
  } else report.skipped['kill-lb'] = 'onsale cluster not run (--topologies)';
  if (!topologies.includes('start'))
    report.skipped['kill-supervisor'] = 'onsale start not run (--topologies)';
  if (report.skipped['kill-lb']) report.skipped['kill-balancer'] = report.skipped['kill-lb'];
  report.topologies = topologies;

  const instances: RunningOnsale[] = [];
  let onsale = null as RunningOnsale | null;
  const paused = new Set<number>();
  const series = new Map<number, RssSeries>();
  let sampling = true;
  let sampler: Promise<void> = Promise.resolve();

  const launch = async (topology: Topology): Promise<RunningOnsale> => {
    // As an operator would: run the command again if it exits before it is ready (a port still closing,
    // a database still restarting); three minutes at most, for a loaded machine.
    const deadline = Date.now() + 180_000;
    for (;;) {
      const next = new RunningOnsale(topology, env);
      instances.push(next);
      onsale = next;
      while (!next.exited() && Date.now() < deadline) {
        if (await waitReady(base, 1_000)) return next;
      }
      const tail = next.tail(10);
      if (!next.exited()) {
        await next.stop(2_000);
        throw new Error(`onsale ${topology} did not become ready in 3 minutes:\n${tail}`);
      }
      log(`onsale ${topology} exited before it was ready, running it again:\n${tail}`);
      await sleep(2_000);
    }
  };

  try {
    if (opts.engines === 'postgres+redis') {
      postgres = await startPrivatePostgres();
      redis = await startPrivateRedis();
      env.ONSALE_DATABASE_URL = await postgres.createDatabase('onsale_soak');
      env.ONSALE_QUEUE_URL = redis.url;
      log(`private PostgreSQL on ${postgres.port}, private Redis on ${redis.port}`);
    } else if (opts.engines === 'postgres+rabbitmq') {
      // PostgreSQL holds the storage and the queue's index; the broker holds the messages.
      postgres = await startPrivatePostgres();
      env.ONSALE_DATABASE_URL = await postgres.createDatabase('onsale_soak');
      const brokerStart = Date.now();
      rabbit = await startPrivateRabbit();
      env.ONSALE_QUEUE_URL = rabbit.url;
      log(
        `private PostgreSQL on ${postgres.port}, private RabbitMQ at ${rabbit.url} ` +
          `(started in ${((Date.now() - brokerStart) / 1000).toFixed(1)} s)`,
      );
    } else {
      log(`embedded engine on a ${disk!.kind} disk at ${disk!.path}`);
    }

    // Memory: every process of the running onsale, sampled every few seconds.
    const sampleEveryMs = Math.min(5_000, Math.max(1_000, totalMs / 120));
    sampler = (async () => {
      while (sampling) {
        for (const p of onsale?.processes() ?? []) {
          const rss = residentMiB(p.pid);
          if (rss === null) continue;
          const s = series.get(p.pid) ?? { pid: p.pid, role: p.role, samples: [] };
          s.samples.push({ atSec: at(), rssMiB: rss });
          series.set(p.pid, s);
        }
        await sleep(sampleEveryMs);
      }
    })();

    const shares = topologies.length === 1 ? [1] : [0.6, 0.4];
    for (const [i, topology] of topologies.entries()) {
      log(`phase ${topology}: starting onsale ${topology}`);
      await launch(topology);
      // The phase's time counts from ready: on a loaded machine `onsale cluster` may take longer to start
      // than a short soak's whole phase, which would then sell nothing under it.
      const phaseEnd = Date.now() + totalMs * shares[i]!;
      log(`phase ${topology}: onsale ready, until +${Math.round((phaseEnd - started) / 1000)} s`);
      let phaseOver = false;
      const chaos = chaosLoop(topology, phaseEnd, () => phaseOver);
      await salesUntil(topology, phaseEnd);
      phaseOver = true;
      await chaos;
      // The phase ends with a clean stop: SIGTERM, everything drained within the deadline.
      const last = onsale!;
      const code = await new Promise<{ code: number | null; signal: string | null }>((resolve) => {
        if (last.exited()) resolve({ code: last.child.exitCode, signal: last.child.signalCode });
        else last.child.once('exit', (c, s) => resolve({ code: c, signal: s }));
        void last.stop(20_000);
      });
      report.stops.push({ topology, ...code });
      if (code.code !== 0) problem(`onsale ${topology} stopped with ${code.code ?? code.signal} on SIGTERM`);
      await waitGone(last.pid, 20_000);
      // Nothing of it may be left running: every onsale process had the supervisor as parent, and the
      // balancer's command line names the data folder.
      await untilTrue(() => leftovers().length === 0, 15_000);
      for (const p of leftovers()) {
        problem(`left running after onsale ${topology} stopped: ${p.pid} ${p.args}`);
        signal(p.pid, 'SIGKILL');
      }
    }
  } catch (error) {
    problem(`the soak itself failed: ${(error as Error).stack ?? String(error)}`);
  } finally {
    sampling = false;
    await sampler;
    for (const pid of paused) signal(pid, 'SIGCONT');
    disk?.free();
    for (const instance of instances) {
      for (const p of instance.processes()) signal(p.pid, 'SIGKILL');
    }
    await postgres?.remove();
    await redis?.remove();
    await rabbit?.destroy();
    disk?.remove();
    rmSync(work, { recursive: true, force: true });
  }

  // The verdicts.
  report.serverErrorsLogged = instances.reduce((n, i) => n + i.failedRequests, 0);
  if (report.serverErrorsLogged > 0)
    problem(
      `the web servers answered ${report.serverErrorsLogged} requests with a 500 (logged "request failed")`,
    );
  for (const f of report.faults) {
    const k = (report.perKind[f.kind] ??= { injected: 0, survived: 0 });
    k.injected++;
    if (f.recoveredSec !== null) k.survived++;
    else problem(`onsale did not come back (readyz) after ${f.kind} at ${f.atSec} s: ${f.detail}`);
  }
  for (const t of topologies)
    if (!report.rounds.some((r) => r.topology === t)) problem(`no sale round completed under onsale ${t}`);
  for (const r of report.rounds) {
    if (!r.invariantsOk)
      problem(`event ${r.eventId} (${r.topology}): invariants broken: ${JSON.stringify(r.violations)}`);
    if (r.notFinal > 0) problem(`event ${r.eventId}: ${r.notFinal} accepted purchases not final`);
    const bad = Object.entries(r.refusals).filter(([code]) => isForbidden5xx(code));
    if (bad.length > 0) problem(`event ${r.eventId}: answers outside the contract: ${JSON.stringify(bad)}`);
  }
  // A fifth of the soak, from 20 s (less is a process warming up, not a trend) to 180 s.
  const minSpanSec = Math.min(180, Math.max(20, soakSec * 0.2));
  report.memory = [...series.values()]
    .map((s) => rssTrend(s, { minSamples: 6, minSpanSec }))
    .filter((t): t is RssTrend => t !== null);
  if (report.memory.length === 0) problem(`no process lived ${minSpanSec} s or more: memory not judged`);
  for (const t of report.memory.filter((m) => !m.flat))
    problem(
      `memory of ${t.role} ${t.pid} grows: ${t.firstMiB} → ${t.lastMiB} MiB over ${t.spanSec} s ` +
        `(${t.slopeMiBPerMin} MiB/min)`,
    );
  report.loadAfter = loadavg().map((n) => Math.round(n * 100) / 100);
  report.durationSec = Math.round((Date.now() - started) / 1000);
  report.ok = report.problems.length === 0;
  return report;

  /** Processes of this soak's onsale still running: any whose command line names its data folder. */
  function leftovers(): Array<{ pid: number; args: string }> {
    return descendants(1).filter((p) => p.args.includes(env.ONSALE_DATA_DIR!) && p.pid !== process.pid);
  }

  /** Sells one event after another until `end` (the last one is followed until all its purchases are final). */
  async function salesUntil(topology: Topology, end: number): Promise<void> {
    const roundSec = soakSec < 240 ? 12 : 40;
    // About 25 purchases a second on average: the machine is shared, and faults, not load, are the point.
    const buyers = 25 * roundSec;
    let failures = 0;
    while (Date.now() < end) {
      const eventId = await createEventWithRetries(Math.floor(buyers / 4));
      let sale: SimulationReport;
      try {
        sale = await simulate({
          url: base,
          adminToken,
          eventId,
          buyers,
          repeat: 0.1,
          arrival: 'ramp',
          durationSec: roundSec,
          ticketTypes: 2,
          tickets: Math.floor(buyers / 4),
          maxPerBuyer: 4,
          maxQuantity: 2,
          connections: 16,
          followers: 64,
          follow: 'sse',
          settleSec: 240,
          // Patient buyers: a supervisor killed and restarted takes seconds, a crash loop's backoff more.
          retries: 40,
          seed: opts.seed + report.rounds.length,
          processes: 2,
        });
      } catch (error) {
        failures++;
        problem(`a sale round on ${topology} failed: ${(error as Error).message}`);
        if (failures >= 3) throw new Error('three sale rounds failed', { cause: error });
        continue;
      }
      // What a purchase the buyer never saw final (or never saw at all) is now, read afresh: final late (its
      // follower missed the change or never got an answer), still queued (stuck), or unknown (lost).
      const lateReads: string[] = [];
      for (const v of sale.invariants.violations) {
        const id = /purchase (\S+) (?:is still|was accepted but is unknown)/.exec(v.detail)?.[1];
        if (!id) continue;
        try {
          const res = await fetch(`${base}/api/purchases/${id}`, { signal: AbortSignal.timeout(10_000) });
          const body = (await res.json()) as { status?: string; updatedAt?: string };
          lateReads.push(`${id} is ${body.status ?? res.status} now (updatedAt ${body.updatedAt ?? '?'})`);
        } catch (error) {
          lateReads.push(`${id}: ${(error as Error).message}`);
        }
      }
      if (lateReads.length > 0)
        problem(`event ${eventId}: read again after the round: ${lateReads.join('; ')}`);
      const round: RoundRecord = {
        topology,
        eventId,
        durationSec: Math.round(sale.durationSec),
        requests: sale.totals.requests,
        accepted: sale.totals.accepted,
        confirmed: sale.totals.confirmed,
        rejected: sale.totals.rejected,
        notFinal: sale.totals.notFinal,
        gaveUp: sale.totals.gaveUp,
        refusals: sale.refusals,
        invariantsOk: sale.invariants.ok,
        violations: sale.invariants.violations,
      };
      report.rounds.push(round);
      log(
        `round ${report.rounds.length} (${topology}): ${round.accepted} accepted, ${round.confirmed} confirmed, ` +
          `${round.rejected} rejected, ${round.notFinal} not final, ${round.gaveUp} gave up; invariants ` +
          `${round.invariantsOk ? 'held' : 'BROKEN'}; refusals ${JSON.stringify(round.refusals)}`,
      );
    }
  }

  async function createEventWithRetries(tickets: number): Promise<string> {
    const deadline = Date.now() + 180_000;
    for (;;) {
      try {
        const res = await fetch(`${base}/api/events`, {
          method: 'POST',
          headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            name: `Soak sale ${new Date().toISOString()}`,
            ticketTypes: [
              { name: 'Floor', priceCents: 4000, capacity: Math.ceil(tickets / 2), maxPerBuyer: 4 },
              { name: 'Balcony', priceCents: 2500, capacity: Math.floor(tickets / 2), maxPerBuyer: 4 },
            ],
          }),
          signal: AbortSignal.timeout(10_000),
        });
        const body = (await res.json()) as { id?: string };
        if (res.status === 201 && body.id) return body.id;
      } catch {
        // a fault under way: try again
      }
      if (Date.now() > deadline) throw new Error('could not create an event for three minutes');
      await sleep(1_000);
    }
  }

  /** One fault at a time, a few seconds apart, until the phase ends. */
  async function chaosLoop(topology: Topology, end: number, over: () => boolean): Promise<void> {
    const phaseStart = Date.now();
    let supervisorKilled = topology !== 'start';
    const weights: Array<[FaultKind, number]> = [
      ['kill-web', 3],
      ['kill-worker', 3],
      ['kill-autoscaler', 1],
      ['pause', 2],
      ...(topology === 'cluster'
        ? ([
            ['kill-lb', 1],
            ['kill-balancer', 1],
          ] as Array<[FaultKind, number]>)
        : []),
      ...(postgres ? ([['restart-postgres', 2]] as Array<[FaultKind, number]>) : []),
      ...(redis ? ([['restart-redis', 2]] as Array<[FaultKind, number]>) : []),
      ...(rabbit ? ([['restart-rabbitmq', 2]] as Array<[FaultKind, number]>) : []),
      ...(disk && !disk.unavailable ? ([['disk-full', 2]] as Array<[FaultKind, number]>) : []),
    ];
    const total = weights.reduce((n, [, w]) => n + w, 0);
    const gap = soakSec < 240 ? [1_500, 3_000] : [3_000, 8_000];
    await sleep(between(gap[0]!, gap[1]!));
    while (!over() && Date.now() < end) {
      let kind: FaultKind;
      // The supervisor once, a quarter into the phase: the processes it starts again then live long enough
      // for their memory to be judged.
      if (!supervisorKilled && Date.now() - phaseStart > (end - phaseStart) / 4) {
        kind = 'kill-supervisor';
        supervisorKilled = true;
      } else {
        let r = rand() * total;
        kind = weights.find(([, w]) => (r -= w) < 0)?.[0] ?? 'kill-web';
      }
      const atSec = at();
      let detail: string | null;
      try {
        detail = await inject(kind, topology);
      } catch (error) {
        detail = `injection failed: ${(error as Error).message}`;
      }
      if (detail !== null) {
        const readyAfter = Date.now();
        const ready = await waitReady(base, 120_000);
        const fault: FaultRecord = {
          kind,
          topology,
          atSec,
          detail,
          recoveredSec: ready ? Math.round((Date.now() - readyAfter) / 100) / 10 : null,
        };
        report.faults.push(fault);
        log(`${kind}: ${detail}; ready again after ${fault.recoveredSec ?? 'never'} s`);
      }
      await sleep(between(gap[0]!, gap[1]!));
    }
  }

  /**
   * Injects one fault and returns what it did once it is over (the process killed, the server back, the disk
   * freed, the process resumed), or null when there was nothing to aim at.
   */
  async function inject(kind: FaultKind, topology: Topology): Promise<string | null> {
    const now = onsale!;
    const procs = now.processes();
    const of = (role: OnsaleProcess['role']) => procs.filter((p) => p.role === role);
    /** A random process of `role`, sparing the oldest (lowest pid) when there are two or more: a witness
     * whose memory is judged at the end. */
    const victim = (role: OnsaleProcess['role'], spareOldest: boolean) => {
      const all = of(role).sort((a, b) => a.pid - b.pid);
      const pool = spareOldest && all.length > 1 ? all.slice(1) : all;
      return pool.length === 0 ? null : pool[Math.floor(rand() * pool.length)]!;
    };
    switch (kind) {
      case 'kill-web':
      case 'kill-worker':
      case 'kill-autoscaler':
      case 'kill-lb':
      case 'kill-balancer': {
        const role = (
          {
            'kill-web': 'web',
            'kill-worker': 'worker',
            'kill-autoscaler': 'autoscaler',
            'kill-lb': 'lb',
            'kill-balancer': 'balancer',
          } as const
        )[kind];
        const p = victim(role, role === 'web' || role === 'worker');
        if (!p) return null;
        signal(p.pid, 'SIGKILL');
        // Back when the supervisor has started another: readiness alone does not show a worker restarted.
        await untilTrue(
          () =>
            of(role).length <= now.processes().filter((q) => q.role === role).length &&
            !now.processes().some((q) => q.pid === p.pid),
          60_000,
        );
        return `SIGKILL ${role} ${p.pid}`;
      }
      case 'kill-supervisor': {
        const old = now.pid;
        const children = descendants(old).map((c) => c.pid);
        signal(old, 'SIGKILL');
        await waitGone(old, 10_000);
        // Its children go when their IPC channel closes; an operator runs the same command again.
        const left = await waitAllGone(children, 20_000);
        await launch(topology);
        return `SIGKILL supervisor ${old} (${children.length} children${left > 0 ? `, ${left} still alive after 20 s` : ''}); onsale ${topology} run again`;
      }
      case 'pause': {
        const p = victim(rand() < 0.5 ? 'web' : 'worker', false);
        if (!p) return null;
        const ms = between(3_000, 8_000);
        paused.add(p.pid);
        signal(p.pid, 'SIGSTOP');
        await sleep(ms);
        signal(p.pid, 'SIGCONT');
        paused.delete(p.pid);
        return `SIGSTOP ${p.role} ${p.pid} for ${(ms / 1000).toFixed(1)} s, then SIGCONT`;
      }
      case 'restart-postgres': {
        const mode = rand() < 0.5 ? 'immediate' : 'fast';
        const ms = between(2_000, 6_000);
        postgres!.stop(mode);
        await sleep(ms);
        postgres!.start();
        return `pg_ctl stop -m ${mode}, down ${(ms / 1000).toFixed(1)} s, started`;
      }
      case 'restart-redis': {
        const how = rand() < 0.5 ? 'SIGKILL' : 'SIGTERM';
        const ms = between(2_000, 6_000);
        await redis!.stop(how);
        await sleep(ms);
        await redis!.start();
        return `redis-server ${how}, down ${(ms / 1000).toFixed(1)} s, started (appendfsync always)`;
      }
      case 'restart-rabbitmq': {
        const how = rand() < 0.5 ? 'kill' : 'stop';
        const ms = between(2_000, 6_000);
        await (how === 'kill' ? rabbit!.kill() : rabbit!.stop());
        await sleep(ms);
        const starting = Date.now();
        await rabbit!.start();
        const what = how === 'kill' ? 'SIGKILL of its Erlang VM' : 'rabbitmqctl stop';
        return (
          `RabbitMQ ${what}, down ${(ms / 1000).toFixed(1)} s, started on the same data ` +
          `(${((Date.now() - starting) / 1000).toFixed(1)} s to take connections)`
        );
      }
      case 'disk-full': {
        const ms = between(3_000, 8_000);
        const mib = disk!.fill();
        await sleep(ms);
        disk!.free();
        return `disk filled (${mib} MiB filler) for ${(ms / 1000).toFixed(1)} s, then freed`;
      }
      default:
        return null;
    }
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

async function untilTrue(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await sleep(250);
  }
  return false;
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  return untilTrue(() => !alive(pid), timeoutMs);
}

/** Waits for every pid to exit; returns how many are still alive at the deadline. */
async function waitAllGone(pids: number[], timeoutMs: number): Promise<number> {
  await untilTrue(() => pids.every((p) => !alive(p)), timeoutMs);
  return pids.filter(alive).length;
}
