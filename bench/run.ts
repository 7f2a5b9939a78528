import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { availableParallelism, loadavg, totalmem } from 'node:os';
import { loadConfig } from '../src/config.js';
import { BalancerMissingError, findBalancer } from '../src/processes/lb/balancer.js';
import { PARTS, type BenchOptions, type Part } from './options.js';
import { BENCH_PARTS, GOALS, JSON_ORDER, type Need, type Plans, type Row, type ServerUrls } from './parts.js';
import { int } from '../src/shared/format.js';
import { cleanUpOnExit } from './processes.js';
import { stopContenders } from './sale.js';
import {
  assertPostgresReachable,
  assertRabbitReachable,
  assertRedisReachable,
  ServiceUnreachableError,
} from '../test/support/services.js';
import { assertWrkInstalled, WrkMissingError } from './wrk.js';
import { renderResultsSection, writeResultsFile } from './results-file.js';

export const DEFAULT_URLS = {
  postgres: process.env.ONSALE_BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  redis: process.env.ONSALE_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379',
  rabbitmq: process.env.ONSALE_BENCH_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
} as const;

function progress(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

const round = (n: number, digits: number) => Number(n.toFixed(digits));

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

/** A server's check at the start of a run, in CHECKS' order: null when the server is there, else what to say. */
type Check = (urls: ServerUrls) => Promise<string | null>;

/** Runs `assert`; what to say when the server it asserts does not answer. */
async function reachable(assert: () => Promise<void>): Promise<string | null> {
  try {
    await assert();
    return null;
  } catch (error) {
    if (!(error instanceof ServiceUnreachableError)) throw error;
    // Never skipped silently: a part asked for and not measured is a failed bench.
    return `[bench] ${error.message}; start it, or leave its part out with --only`;
  }
}

/** Every need a part may declare, checked in this order, each once, before anything is measured. */
const CHECKS: ReadonlyArray<[Need, Check]> = [
  [
    'wrk',
    async () => {
      try {
        assertWrkInstalled();
        return null;
      } catch (error) {
        if (!(error instanceof WrkMissingError)) throw error;
        return error.message;
      }
    },
  ],
  ['postgres', (urls) => reachable(() => assertPostgresReachable(urls.postgres))],
  ['redis', (urls) => reachable(() => assertRedisReachable(urls.redis))],
  ['rabbitmq', (urls) => reachable(() => assertRabbitReachable(urls.rabbitmq))],
  [
    'nginx',
    async () =>
      balancerMissing(
        'nginx',
        (m) => `[bench] the simulator part needs nginx: ${m} Or leave it out with --only.`,
      ),
  ],
  [
    'haproxy',
    async () => balancerMissing('haproxy', (m) => `[bench] ${m} Or leave the cluster part out with --only.`),
  ],
];

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

/** The plans every part measures with; --quick shortens them. */
function plansFor(options: BenchOptions, urls: ServerUrls): Plans {
  const quick = options.quick ?? false;
  const defaults = loadConfig({}, {});
  return {
    options,
    quick,
    urls,
    defaults,
    accept: {
      // Full runs alternate bare and real three times and report the medians: the machine may be shared.
      rounds: quick ? 1 : 3,
      load: {
        threads: options.threads ?? 1,
        connections: options.connections ?? 256,
        durationSec: options.duration ?? (quick ? 5 : 20),
      },
      warmupSec: quick ? 1 : 3,
    },
    allocation: {
      purchases: quick ? 30_000 : 100_000,
      naivePurchases: quick ? 15_000 : 40_000,
      naiveSeconds: quick ? 3 : 10,
    },
    pgAllocation: {
      adminUrl: urls.postgres,
      purchases: quick ? 30_000 : 100_000,
      naivePurchases: quick ? 10_000 : 20_000,
      naiveSeconds: quick ? 3 : 10,
      batchSize: defaults.batchSize,
    },
  };
}

/**
 * `npm run bench`: the accept path of `onsale start` against a bare Fastify handler (and, to show what the
 * worker beside it costs, one `onsale serve` without a worker against one bare process), then the worker
 * against a naive one-transaction-per-purchase allocator; then the same comparisons on the scale-out
 * engines (PostgreSQL allocation; the accept path with a Redis or RabbitMQ queue), and the other parts of
 * BENCH_PARTS. `options.only` chooses the parts. Progress goes to stderr; a table, then one JSON line, to
 * stdout. Returns the exit status.
 */
export async function runBench(options: BenchOptions): Promise<number> {
  const parts = new Set<Part>(options.only ?? PARTS);
  const chosen = BENCH_PARTS.filter((p) => parts.has(p.name));
  const urls: ServerUrls = {
    postgres: options.postgresUrl ?? DEFAULT_URLS.postgres,
    redis: options.redisUrl ?? DEFAULT_URLS.redis,
    rabbitmq: options.rabbitmqUrl ?? DEFAULT_URLS.rabbitmq,
  };
  for (const [need, check] of CHECKS) {
    if (!chosen.some((p) => p.needs.includes(need))) continue;
    const missing = await check(urls);
    if (missing !== null) {
      process.stderr.write(`${missing}\n`);
      return 1;
    }
  }
  // Ctrl+C or SIGTERM during the sale part: its contender's throw-away database and keys are removed too.
  cleanUpOnExit(async () => {
    const removed = await stopContenders();
    if (removed.length > 0) progress(`removed: ${removed.join(', ')}`);
  });
  const plans = plansFor(options, urls);
  const { quick, accept, defaults } = plans;
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

  const rows: Row[] = [];
  const json = new Map<Part, Record<string, unknown>>();
  let goalsMet: Record<string, boolean> = {};
  const files: Record<string, string> = {};
  for (const part of chosen) {
    const report = await part.run(plans, progress);
    Object.assign(files, report.files);
    rows.push(...report.rows);
    json.set(part.name, report.json);
    goalsMet = { ...goalsMet, ...report.goalsMet };
  }
  // Other work on the machine moves every figure: the load average before and after tells whether there was.
  machine.loadAverage1mAtEnd = round(loadavg()[0] ?? 0, 2);
  progress(`load average ${machine.loadAverage1mAtEnd} at the end`);

  const result = {
    ...Object.fromEntries(JSON_ORDER.flatMap((name) => Object.entries(json.get(name) ?? {}))),
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
      allocPurchases: plans.allocation.purchases,
      pgAllocPurchases: plans.pgAllocation.purchases,
      engineStorage: 'postgres',
    },
    machine,
    elapsedSec: Math.round((Date.now() - started) / 1000),
  };

  const width = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(`\n${rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n')}\n\n`);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  if (resultsFile) {
    // The bench's own arguments: its entry point is argv[1].
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
    for (const [name, content] of Object.entries(files)) {
      writeFileSync(join(dirname(resultsFile), name), content);
      progress(`${name} written next to them`);
    }
  }
  return 0;
}
