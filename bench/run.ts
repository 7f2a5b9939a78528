import { existsSync } from 'node:fs';
import { availableParallelism, loadavg, totalmem } from 'node:os';
import { loadConfig } from '../src/config.js';
import { measureAccept, type AcceptFigures, type AcceptPlan, type Engine } from './accept.js';
import { measureAllocation, type AllocationPlan } from './allocation.js';
import { measureMetricsCost, SCRAPE_EVERY_MS } from './metrics-cost.js';
import { BalancerMissingError, findBalancer } from '../src/cluster/lb.js';
import { CLUSTER_WEB, measureCluster } from './cluster.js';
import { PARTS, type BenchOptions, type Part } from './options.js';
import { measurePages } from './pages.js';
import { measurePostgresAllocation } from './postgres-allocation.js';
import { cleanUpOnExit } from './processes.js';
import { measureSale, stopContenders } from './sale.js';
import { measureSimulator, type LoadGeneratorFigures } from './simulator.js';
import {
  assertPostgresReachable,
  assertRabbitReachable,
  assertRedisReachable,
  createDatabase,
  deleteRabbitTopology,
  deleteRedisKeys,
  ServiceUnreachableError,
  uniqueName,
} from '../test/support/services.js';
import { assertWrkInstalled, WrkMissingError } from './wrk.js';
import { renderResultsSection, writeResultsFile } from './results-file.js';

/** The goals of issue 2 (the embedded engine), issue 3 (the scale-out engines) and issue 5 (metrics' cost). */
export const GOALS = {
  ackVsBare: 0.7,
  allocVsNaive: 50,
  pgAllocPerSec: 50_000,
  metricsMaxCost: 0.05,
} as const;

export const DEFAULT_URLS = {
  postgres: process.env.ONSALE_BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  redis: process.env.ONSALE_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379',
  rabbitmq: process.env.ONSALE_BENCH_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
} as const;

function progress(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

const round = (n: number, digits: number) => Number(n.toFixed(digits));
const int = (n: number) => Math.round(n).toLocaleString('en-US');
const mb = (n: number | null) => (n === null ? null : round(n, 1));

/** A queue server for the accept path, with PostgreSQL storage: a fresh database and prefix per run. */
function queueEngine(name: 'redis' | 'rabbitmq', postgresUrl: string, serverUrl: string): Engine {
  return {
    name,
    prepare: async () => {
      const db = await createDatabase(postgresUrl, 'onsale_bench');
      const prefix = uniqueName('onsale_bench');
      const queueUrl = new URL(serverUrl);
      queueUrl.searchParams.set('prefix', prefix);
      return {
        env: { ONSALE_DATABASE_URL: db.url, ONSALE_QUEUE_URL: queueUrl.toString() },
        cleanup: async () => {
          if (name === 'redis') await deleteRedisKeys(serverUrl, `${prefix}:*`);
          else await deleteRabbitTopology(serverUrl, prefix);
          await db.drop();
        },
      };
    },
  };
}

/** Fails with ServiceUnreachableError, before anything is measured, if a server the parts need is down. */
async function assertServers(
  parts: ReadonlySet<Part>,
  urls: Record<Exclude<Part, 'core' | 'metrics' | 'sale' | 'pages' | 'cluster' | 'simulator'>, string>,
) {
  if (parts.has('postgres') || parts.has('redis') || parts.has('rabbitmq') || parts.has('sale'))
    await assertPostgresReachable(urls.postgres);
  if (parts.has('redis')) await assertRedisReachable(urls.redis);
  if (parts.has('rabbitmq')) await assertRabbitReachable(urls.rabbitmq);
}

/** Null when the `kind` balancer is installed; otherwise what to say (`say` given how to install it). */
function balancerMissing(kind: 'haproxy' | 'nginx', say: (howToInstall: string) => string): string | null {
  try {
    findBalancer(kind);
    return null;
  } catch (error) {
    if (!(error instanceof BalancerMissingError)) throw error;
    return say(error.message);
  }
}

/** Where the results go: --write FILE, none with --no-write, else docs/benchmarks.md after a full run. */
function whereToWrite(options: BenchOptions, quick: boolean, parts: ReadonlySet<Part>): string | null {
  if (options.write === false) return null;
  if (typeof options.write === 'string') return options.write;
  if (quick || parts.size < PARTS.length) return null;
  const docs = 'docs/benchmarks.md';
  if (existsSync(docs)) return docs;
  progress(
    `not run from the repository (no ${docs} here): the results are not written; --write FILE writes them`,
  );
  return null;
}

/**
 * `npm run bench`: the accept path of `onsale start` against a bare Fastify handler (and, to show what the
 * worker beside it costs, one `onsale serve` without a worker against one bare process), then the worker
 * against a naive one-transaction-per-purchase allocator; then the same comparisons on the scale-out
 * engines (PostgreSQL allocation; the accept path with a Redis or RabbitMQ queue). `options.only` chooses
 * the parts. Progress goes to stderr; a table, then one JSON line, to stdout. Returns the exit status.
 */
export async function runBench(options: BenchOptions): Promise<number> {
  try {
    assertWrkInstalled();
  } catch (error) {
    if (!(error instanceof WrkMissingError)) throw error;
    process.stderr.write(`${error.message}\n`);
    return 1;
  }
  const parts = new Set<Part>(options.only ?? PARTS);
  const urls = {
    postgres: options.postgresUrl ?? DEFAULT_URLS.postgres,
    redis: options.redisUrl ?? DEFAULT_URLS.redis,
    rabbitmq: options.rabbitmqUrl ?? DEFAULT_URLS.rabbitmq,
  };
  try {
    await assertServers(parts, urls);
  } catch (error) {
    if (!(error instanceof ServiceUnreachableError)) throw error;
    // Never skipped silently: a part asked for and not measured is a failed bench.
    process.stderr.write(`[bench] ${error.message}; start it, or leave its part out with --only\n`);
    return 1;
  }
  const missing =
    (parts.has('simulator') &&
      balancerMissing('nginx', (m) => `the simulator part needs nginx: ${m} Or leave it out with --only.`)) ||
    (parts.has('cluster') &&
      balancerMissing('haproxy', (m) => `${m} Or leave the cluster part out with --only.`));
  if (missing) {
    process.stderr.write(`[bench] ${missing}\n`);
    return 1;
  }
  // Ctrl+C or SIGTERM during the sale part: its contender's throw-away database and keys are removed too.
  cleanUpOnExit(async () => {
    const removed = await stopContenders();
    if (removed.length > 0) progress(`removed: ${removed.join(', ')}`);
  });
  const quick = options.quick ?? false;
  const defaults = loadConfig({}, {});
  const accept: AcceptPlan = {
    // Full runs alternate bare and real three times and report the medians: the machine may be shared.
    rounds: quick ? 1 : 3,
    load: {
      threads: options.threads ?? 1,
      connections: options.connections ?? 256,
      durationSec: options.duration ?? (quick ? 5 : 20),
    },
    warmupSec: quick ? 1 : 3,
  };
  const allocation: AllocationPlan = {
    purchases: quick ? 30_000 : 100_000,
    naivePurchases: quick ? 15_000 : 40_000,
    naiveSeconds: quick ? 3 : 10,
  };
  const pgAllocation = {
    adminUrl: urls.postgres,
    purchases: quick ? 30_000 : 100_000,
    naivePurchases: quick ? 10_000 : 20_000,
    naiveSeconds: quick ? 3 : 10,
    batchSize: defaults.batchSize,
  };
  const machine = {
    cpus: availableParallelism(),
    memoryMb: Math.round(totalmem() / 2 ** 20),
    node: process.version,
    loadAverage1m: round(loadavg()[0] ?? 0, 2),
    loadAverage1mAtEnd: 0,
  };
  const started = Date.now();
  const resultsFile = whereToWrite(options, quick, parts);
  progress(
    `machine: ${machine.cpus} CPUs, ${int(machine.memoryMb)} MB, node ${machine.node}, ` +
      `load average ${machine.loadAverage1m} before starting; parts: ${[...parts].join(', ')}`,
  );
  progress(
    `accept: wrk ${accept.load.threads} thread(s), ${accept.load.connections} connections, ` +
      `${accept.load.durationSec} s per run after ${accept.warmupSec} s of warm-up`,
  );

  const rows: Array<[string, string]> = [];
  const goal = (ratio: number, target: number) =>
    `${ratio.toFixed(2)}  (goal ≥ ${target}: ${ratio >= target ? 'met' : 'MISSED'})`;
  const ms = (p50: number, p99: number) => `${p50.toFixed(1)} / ${p99.toFixed(1)}`;
  const latencyRow = (name: string, f: AcceptFigures): [string, string] => [
    `ack latency p50 / p99 ms, ${name} / bare`,
    `${ms(f.real.p50Ms, f.real.p99Ms)}  /  ${ms(f.bare.p50Ms, f.bare.p99Ms)}`,
  ];
  let core: Record<string, unknown> = {};
  let goalsMet: Record<string, boolean> = {};
  if (parts.has('core')) {
    const start = await measureAccept(accept, { kind: 'start', web: defaults.web }, progress);
    const serve = await measureAccept(accept, { kind: 'serve' }, progress);
    const alloc = await measureAllocation(allocation, progress);
    const allocVsNaive = alloc.allocPerSec / alloc.naivePerSec;
    core = {
      ackVsBare: round(start.ratio, 3),
      allocVsNaive: round(allocVsNaive, 1),
      ackPerSec: Math.round(start.real.acceptedPerSec),
      bareAckPerSec: Math.round(start.bare.acceptedPerSec),
      allocPerSec: Math.round(alloc.allocPerSec),
      naivePerSec: Math.round(alloc.naivePerSec),
      ackLatencyP50Ms: round(start.real.p50Ms, 2),
      ackLatencyP99Ms: round(start.real.p99Ms, 2),
      bareLatencyP50Ms: round(start.bare.p50Ms, 2),
      bareLatencyP99Ms: round(start.bare.p99Ms, 2),
      ackNon202: start.non202,
      webPeakRssMb: mb(start.webPeakRssMb),
      workerPeakRssMb: mb(alloc.workerPeakRssMb),
      ackCpu: { web: round(start.cpu.web, 2), worker: round(start.cpu.worker, 2) },
      serveOnly: {
        ackVsBare: round(serve.ratio, 3),
        ackPerSec: Math.round(serve.real.acceptedPerSec),
        bareAckPerSec: Math.round(serve.bare.acceptedPerSec),
        ackLatencyP50Ms: round(serve.real.p50Ms, 2),
        ackLatencyP99Ms: round(serve.real.p99Ms, 2),
        non202: serve.non202,
        webPeakRssMb: mb(serve.webPeakRssMb),
      },
    };
    goalsMet = {
      ackVsBare: start.ratio >= GOALS.ackVsBare,
      allocVsNaive: allocVsNaive >= GOALS.allocVsNaive,
    };
    rows.push(
      [`accepted/s, onsale start (${defaults.web} web + worker)`, int(start.real.acceptedPerSec)],
      [`accepted/s, bare Fastify (${defaults.web} processes)`, int(start.bare.acceptedPerSec)],
      ['ackVsBare', goal(start.ratio, GOALS.ackVsBare)],
      latencyRow('onsale', start),
      [
        'accepted/s, onsale serve (no worker) / bare',
        `${int(serve.real.acceptedPerSec)} / ${int(serve.bare.acceptedPerSec)} = ${serve.ratio.toFixed(2)}`,
      ],
      ['allocated/s, onsale worker', int(alloc.allocPerSec)],
      ['allocated/s, naive allocator', int(alloc.naivePerSec)],
      ['allocVsNaive', goal(allocVsNaive, GOALS.allocVsNaive)],
      [
        'peak RSS MB, web / worker',
        `${mb(start.webPeakRssMb) ?? 'n/a'} / ${mb(alloc.workerPeakRssMb) ?? 'n/a'}`,
      ],
    );
  }
  let engines: Record<string, unknown> = {};
  if (parts.has('postgres')) {
    const pgAlloc = await measurePostgresAllocation(pgAllocation, progress);
    const ratio = pgAlloc.allocPerSec / pgAlloc.naivePerSec;
    engines = {
      pgAllocPerSec: Math.round(pgAlloc.allocPerSec),
      pgNaivePerSec: Math.round(pgAlloc.naivePerSec),
      pgAllocVsNaive: round(ratio, 1),
    };
    goalsMet = {
      ...goalsMet,
      pgAllocPerSec: pgAlloc.allocPerSec >= GOALS.pgAllocPerSec,
      pgAllocVsNaive: ratio >= GOALS.allocVsNaive,
    };
    rows.push(
      [
        'allocated/s, PostgreSQL worker loop',
        `${int(pgAlloc.allocPerSec)}  (goal ≥ ${int(GOALS.pgAllocPerSec)}: ` +
          `${pgAlloc.allocPerSec >= GOALS.pgAllocPerSec ? 'met' : 'MISSED'})`,
      ],
      ['allocated/s, PostgreSQL naive allocator', int(pgAlloc.naivePerSec)],
      ['pgAllocVsNaive', goal(ratio, GOALS.allocVsNaive)],
    );
  }
  for (const name of ['redis', 'rabbitmq'] as const) {
    if (!parts.has(name)) continue;
    const engine = queueEngine(name, urls.postgres, urls[name]);
    const f = await measureAccept(accept, { kind: 'start', web: defaults.web, engine }, progress);
    const key = name === 'redis' ? 'redis' : 'rabbit';
    engines = {
      ...engines,
      [`${key}AckPerSec`]: Math.round(f.real.acceptedPerSec),
      [`${key}AckVsBare`]: round(f.ratio, 3),
      [`${key}BareAckPerSec`]: Math.round(f.bare.acceptedPerSec),
      [`${key}AckLatencyP50Ms`]: round(f.real.p50Ms, 2),
      [`${key}AckLatencyP99Ms`]: round(f.real.p99Ms, 2),
      [`${key}AckNon202`]: f.non202,
      [`${key}AckCpu`]: { web: round(f.cpu.web, 2), worker: round(f.cpu.worker, 2) },
    };
    goalsMet = { ...goalsMet, [`${key}AckVsBare`]: f.ratio >= GOALS.ackVsBare };
    rows.push(
      [
        `accepted/s, onsale start on ${name} + PostgreSQL / bare`,
        `${int(f.real.acceptedPerSec)} / ${int(f.bare.acceptedPerSec)}`,
      ],
      [`${key}AckVsBare`, goal(f.ratio, GOALS.ackVsBare)],
      latencyRow(`${name}`, f),
    );
  }
  if (parts.has('metrics')) {
    const cost = await measureMetricsCost(accept, defaults.web, progress);
    const share = 1 - cost.ratio;
    engines = {
      ...engines,
      metricsOnAckPerSec: Math.round(cost.on.wrk.acceptedPerSec),
      metricsOffAckPerSec: Math.round(cost.off.wrk.acceptedPerSec),
      metricsOnVsOff: round(cost.ratio, 3),
      metricsRoundRatios: cost.roundRatios.map((r) => round(r, 3)),
      metricsRecordingNsPer202: Math.round(cost.recordingNsPer202),
      metricsOnLatencyP99Ms: round(cost.on.wrk.p99Ms, 2),
      metricsOffLatencyP99Ms: round(cost.off.wrk.p99Ms, 2),
      metricsWebCpuMsPer202: {
        on: round(cost.webCpuMsPer202.on, 4),
        off: round(cost.webCpuMsPer202.off, 4),
      },
      metricsScrapes: cost.scrapes,
    };
    goalsMet = { ...goalsMet, metricsCost: share <= GOALS.metricsMaxCost };
    rows.push(
      [
        `accepted/s, onsale start, metrics on (scraped every ${SCRAPE_EVERY_MS / 1000} s) / off, medians`,
        `${int(cost.on.wrk.acceptedPerSec)} / ${int(cost.off.wrk.acceptedPerSec)}`,
      ],
      [
        'metricsOnVsOff (median of the rounds)',
        `${cost.ratio.toFixed(3)}  (cost ${(share * 100).toFixed(1)}%, goal ≤ ${GOALS.metricsMaxCost * 100}%: ` +
          `${share <= GOALS.metricsMaxCost ? 'met' : 'MISSED'})`,
      ],
      ['on/off ratio of each round (back-to-back runs)', cost.roundRatios.map((r) => r.toFixed(3)).join(' ')],
      [
        'recording per 202 (request histogram + counter)',
        `${Math.round(cost.recordingNsPer202)} ns = ` +
          `${((cost.recordingNsPer202 / 1e6 / cost.webCpuMsPer202.off) * 100).toFixed(1)}% of the web CPU per 202 (off)`,
      ],
      [
        'web CPU ms per 202, metrics on / off',
        `${cost.webCpuMsPer202.on.toFixed(3)} / ${cost.webCpuMsPer202.off.toFixed(3)} = ` +
          `${(cost.webCpuMsPer202.on / cost.webCpuMsPer202.off).toFixed(3)}`,
      ],
      [
        'ack latency p50 / p99 ms, metrics on / off',
        `${ms(cost.on.wrk.p50Ms, cost.on.wrk.p99Ms)}  /  ${ms(cost.off.wrk.p50Ms, cost.off.wrk.p99Ms)}`,
      ],
    );
  }
  let sale: Record<string, unknown> = {};
  if (parts.has('sale')) {
    const plan = quick ? { buyers: 2_000, tickets: 500 } : { buyers: 40_000, tickets: 10_000 };
    const figures = await measureSale(plan, urls, progress);
    const [advisory, skipLocked, onsalePg, onsaleEmbedded] = figures as [
      (typeof figures)[number],
      (typeof figures)[number],
      (typeof figures)[number],
      (typeof figures)[number],
    ];
    const vs = (a: number, b: number) => round(a / Math.max(b, 1), 2);
    sale = {
      sale: {
        loadGenerator: 'onsale simulate (undici keep-alive pools, in the bench process)',
        ...plan,
        contenders: figures,
        onsalePgVsAdvisoryLock: vs(onsalePg.ticketsPerSec, advisory.ticketsPerSec),
        onsalePgVsSkipLocked: vs(onsalePg.ticketsPerSec, skipLocked.ticketsPerSec),
        onsaleEmbeddedVsAdvisoryLock: vs(onsaleEmbedded.ticketsPerSec, advisory.ticketsPerSec),
      },
    };
    for (const f of figures) {
      rows.push([
        `sale tickets/s, ${f.name}`,
        `${int(f.ticketsPerSec)}  (ack p99 ${f.ackP99Ms.toFixed(1)} ms, final p99 ${f.finalP99Ms.toFixed(1)} ms, ` +
          `errors ${f.errors}, invariants ${f.invariantsOk ? 'kept' : `BROKEN: ${f.violated.join(', ')}`})`,
      ]);
    }
    rows.push(
      [
        'sale: onsale (PostgreSQL) / advisory-lock shop',
        vs(onsalePg.ticketsPerSec, advisory.ticketsPerSec).toFixed(2),
      ],
      [
        'sale: onsale (PostgreSQL) / SKIP LOCKED shop',
        vs(onsalePg.ticketsPerSec, skipLocked.ticketsPerSec).toFixed(2),
      ],
    );
  }
  let pages: Record<string, unknown> = {};
  if (parts.has('pages')) {
    const f = await measurePages(
      { rounds: accept.rounds, load: accept.load, warmupSec: accept.warmupSec },
      progress,
    );
    pages = {
      pages: {
        ...f,
        pagePerSec: Math.round(f.pagePerSec),
        apiPerSec: Math.round(f.apiPerSec),
        ratio: round(f.ratio, 3),
        pageP99Ms: round(f.pageP99Ms, 2),
        apiP99Ms: round(f.apiP99Ms, 2),
      },
    };
    const w = f.weight;
    rows.push(
      [
        'event pages/s, HTML / API JSON (onsale serve)',
        `${int(f.pagePerSec)} / ${int(f.apiPerSec)} = ${f.ratio.toFixed(2)}`,
      ],
      [
        'event page bytes, HTML + CSS + JS + icon',
        `${int(w.html)} + ${int(w.css)} + ${int(w.js)} + ${int(w.icon)} = ${int(w.total)} (${int(w.gzipTotal)} gzipped)`,
      ],
    );
  }
  if (parts.has('cluster')) {
    const c = await measureCluster(accept, progress);
    const hopCost = c.hop.acceptedPerSec / c.direct.acceptedPerSec;
    engines = {
      ...engines,
      clusterAckPerSec: Object.fromEntries(
        CLUSTER_WEB.map((w) => [w, Math.round(c.throughLb[w]!.acceptedPerSec)]),
      ),
      clusterDirectAckPerSec: Math.round(c.direct.acceptedPerSec),
      clusterHopAckPerSec: Math.round(c.hop.acceptedPerSec),
      clusterHopVsDirect: round(hopCost, 3),
      clusterHopLatencyP50Ms: { direct: round(c.direct.p50Ms, 2), haproxy: round(c.hop.p50Ms, 2) },
    };
    rows.push(
      [
        `accepted/s through HAProxy, ${CLUSTER_WEB.join(' / ')} web`,
        CLUSTER_WEB.map((w) => int(c.throughLb[w]!.acceptedPerSec)).join(' / '),
      ],
      [
        'balancer hop, 1 web: HAProxy / straight',
        `${int(c.hop.acceptedPerSec)} / ${int(c.direct.acceptedPerSec)} = ${hopCost.toFixed(2)}; p50 ` +
          `${c.hop.p50Ms.toFixed(1)} / ${c.direct.p50Ms.toFixed(1)} ms`,
      ],
    );
  }
  let simulator: Record<string, unknown> = {};
  if (parts.has('simulator')) {
    const f = await measureSimulator(
      {
        buyers: quick ? 30_000 : 150_000,
        connections: options.connections ?? 64,
        wrkSeconds: options.duration ?? (quick ? 5 : 10),
      },
      progress,
    );
    const [one, two, wrk1, wrk2] = f.runs as [
      LoadGeneratorFigures,
      LoadGeneratorFigures,
      LoadGeneratorFigures,
      LoadGeneratorFigures,
    ];
    const ratio = (a: number, b: number) => round(a / Math.max(b, 1e-9), 2);
    simulator = {
      simulator: {
        server: 'nginx, one worker, a final 409 sold_out from its configuration',
        ...f,
        runs: f.runs.map((r) => ({
          ...r,
          requestsPerSec: Math.round(r.requestsPerSec),
          cpuMsPerRequest: round(r.cpuMsPerRequest, 4),
          clientBusyCores: round(r.clientBusyCores, 2),
          serverBusyCores: round(r.serverBusyCores, 2),
          machineBusyCores: round(r.machineBusyCores, 2),
        })),
        processes2VsProcesses1: ratio(two.requestsPerSec, one.requestsPerSec),
        processes1VsWrk1: ratio(one.requestsPerSec, wrk1.requestsPerSec),
        processes2VsWrk2: ratio(two.requestsPerSec, wrk2.requestsPerSec),
        cpuPerRequestProcesses1VsWrk1: ratio(one.cpuMsPerRequest, wrk1.cpuMsPerRequest),
      },
    };
    for (const r of f.runs) {
      rows.push([
        `requests/s, ${r.name}`,
        `${int(r.requestsPerSec)}  (${r.cpuMsPerRequest.toFixed(4)} CPU ms/request; limit: ${r.limit})`,
      ]);
    }
    rows.push(
      [
        'simulator: 2 processes / 1, 1 process / wrk 1 thread, 2 / wrk 2 threads',
        `${ratio(two.requestsPerSec, one.requestsPerSec).toFixed(2)}, ` +
          `${ratio(one.requestsPerSec, wrk1.requestsPerSec).toFixed(2)}, ` +
          `${ratio(two.requestsPerSec, wrk2.requestsPerSec).toFixed(2)}`,
      ],
      [
        'simulator CPU per request / wrk (1 process, 1 thread)',
        ratio(one.cpuMsPerRequest, wrk1.cpuMsPerRequest).toFixed(1),
      ],
    );
  }
  // Other work on the machine moves every figure: the load average before and after tells whether there was.
  machine.loadAverage1mAtEnd = round(loadavg()[0] ?? 0, 2);
  progress(`load average ${machine.loadAverage1mAtEnd} at the end`);

  const result = {
    ...core,
    ...engines,
    ...sale,
    ...pages,
    ...simulator,
    goals: GOALS,
    goalsMet,
    setup: {
      quick,
      parts: [...parts],
      rounds: accept.rounds,
      wrkThreads: accept.load.threads,
      connections: accept.load.connections,
      durationSec: accept.load.durationSec,
      webProcesses: defaults.web,
      workerBatchSize: defaults.batchSize,
      allocPurchases: allocation.purchases,
      pgAllocPurchases: pgAllocation.purchases,
      engineStorage: 'postgres',
    },
    machine,
    elapsedSec: Math.round((Date.now() - started) / 1000),
  };

  const width = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(`\n${rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n')}\n\n`);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  if (resultsFile) {
    const args = process.argv.slice(2);
    writeResultsFile(
      resultsFile,
      renderResultsSection({
        startedAt: new Date(started),
        elapsedSec: (Date.now() - started) / 1000,
        command: `npm run bench${args.length > 0 ? ` -- ${args.join(' ')}` : ''}`,
        machine,
        rows,
        json: JSON.stringify(result),
      }),
    );
    progress(`results written to ${resultsFile}`);
  }
  return 0;
}
