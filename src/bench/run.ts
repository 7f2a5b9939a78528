import { availableParallelism, loadavg, totalmem } from 'node:os';
import { loadConfig } from '../config.js';
import { measureAccept, type AcceptPlan } from './accept.js';
import { measureAllocation, type AllocationPlan } from './allocation.js';
import { cleanUpOnExit } from './processes.js';
import { assertWrkInstalled, WrkMissingError } from './wrk.js';

/** The goals of issue 2. */
export const GOALS = { ackVsBare: 0.7, allocVsNaive: 50 } as const;

export interface BenchOptions {
  quick?: boolean;
  duration?: number;
  connections?: number;
  threads?: number;
}

function progress(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

const round = (n: number, digits: number) => Number(n.toFixed(digits));
const int = (n: number) => Math.round(n).toLocaleString('en-US');
const mb = (n: number | null) => (n === null ? null : round(n, 1));

/**
 * `onsale bench`: the accept path of `onsale start` against a bare Fastify handler (and, to show what the
 * worker beside it costs, one `onsale serve` without a worker against one bare process), then the worker
 * against a naive one-transaction-per-purchase allocator. Progress goes to stderr; a table, then one JSON
 * line, to stdout. Returns the exit status.
 */
export async function runBench(options: BenchOptions): Promise<number> {
  try {
    assertWrkInstalled();
  } catch (error) {
    if (!(error instanceof WrkMissingError)) throw error;
    process.stderr.write(`${error.message}\n`);
    return 1;
  }
  cleanUpOnExit();
  const quick = options.quick ?? false;
  const defaults = loadConfig({}, {});
  const accept: AcceptPlan = {
    // Full runs alternate bare and real three times and report the medians: the machine may be shared.
    rounds: quick ? 1 : 3,
    load: {
      threads: options.threads ?? 1,
      connections: options.connections ?? 256,
      durationSec: options.duration ?? (quick ? 10 : 20),
    },
    warmupSec: quick ? 2 : 3,
  };
  const allocation: AllocationPlan = {
    purchases: quick ? 30_000 : 100_000,
    naivePurchases: quick ? 15_000 : 40_000,
    naiveSeconds: quick ? 3 : 10,
  };
  const machine = {
    cpus: availableParallelism(),
    memoryMb: Math.round(totalmem() / 2 ** 20),
    node: process.version,
    loadAverage1m: round(loadavg()[0] ?? 0, 2),
    loadAverage1mAtEnd: 0,
  };
  const started = Date.now();
  progress(
    `machine: ${machine.cpus} CPUs, ${int(machine.memoryMb)} MB, node ${machine.node}, ` +
      `load average ${machine.loadAverage1m} before starting`,
  );
  progress(
    `accept: wrk ${accept.load.threads} thread(s), ${accept.load.connections} connections, ` +
      `${accept.load.durationSec} s per run after ${accept.warmupSec} s of warm-up`,
  );

  const start = await measureAccept(accept, { kind: 'start', web: defaults.web }, progress);
  const serve = await measureAccept(accept, { kind: 'serve' }, progress);
  const alloc = await measureAllocation(allocation, progress);
  const allocVsNaive = alloc.allocPerSec / alloc.naivePerSec;
  // Other work on the machine moves every figure: the load average before and after tells whether there was.
  machine.loadAverage1mAtEnd = round(loadavg()[0] ?? 0, 2);
  progress(`load average ${machine.loadAverage1mAtEnd} at the end`);

  const result = {
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
    goals: GOALS,
    goalsMet: { ackVsBare: start.ratio >= GOALS.ackVsBare, allocVsNaive: allocVsNaive >= GOALS.allocVsNaive },
    setup: {
      quick,
      rounds: accept.rounds,
      wrkThreads: accept.load.threads,
      connections: accept.load.connections,
      durationSec: accept.load.durationSec,
      webProcesses: defaults.web,
      workerBatchSize: defaults.batchSize,
      allocPurchases: allocation.purchases,
    },
    machine,
    elapsedSec: Math.round((Date.now() - started) / 1000),
  };

  const goal = (ratio: number, target: number) =>
    `${ratio.toFixed(2)}  (goal ≥ ${target}: ${ratio >= target ? 'met' : 'MISSED'})`;
  const ms = (p50: number, p99: number) => `${p50.toFixed(1)} / ${p99.toFixed(1)}`;
  const rows: Array<[string, string]> = [
    [`accepted/s, onsale start (${defaults.web} web + worker)`, int(start.real.acceptedPerSec)],
    [`accepted/s, bare Fastify (${defaults.web} processes)`, int(start.bare.acceptedPerSec)],
    ['ackVsBare', goal(start.ratio, GOALS.ackVsBare)],
    [
      'ack latency p50 / p99 ms, onsale / bare',
      `${ms(start.real.p50Ms, start.real.p99Ms)}  /  ${ms(start.bare.p50Ms, start.bare.p99Ms)}`,
    ],
    [
      'accepted/s, onsale serve (no worker) / bare',
      `${int(serve.real.acceptedPerSec)} / ${int(serve.bare.acceptedPerSec)} = ${serve.ratio.toFixed(2)}`,
    ],
    ['allocated/s, onsale worker', int(alloc.allocPerSec)],
    ['allocated/s, naive allocator', int(alloc.naivePerSec)],
    ['allocVsNaive', goal(allocVsNaive, GOALS.allocVsNaive)],
    ['peak RSS MB, web / worker', `${result.webPeakRssMb ?? 'n/a'} / ${result.workerPeakRssMb ?? 'n/a'}`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(`\n${rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n')}\n\n`);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  return 0;
}
