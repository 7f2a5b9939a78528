import type { Config } from '../src/config.js';
import { BENCH_HOLD_SECONDS, measureCheckout, REALISTIC_MIX } from './checkout.js';
import { measureAccept, type AcceptFigures, type AcceptPlan, type Engine } from './accept.js';
import { measureAllocation, type AllocationPlan } from './allocation.js';
import { CLUSTER_WEB, measureCluster } from './cluster.js';
import { measureMetricsCost, SCRAPE_EVERY_MS } from './metrics-cost.js';
import type { BenchOptions, Part } from './options.js';
import { measurePages } from './pages.js';
import { measurePostgresAllocation, type PostgresAllocationPlan } from './postgres-allocation.js';
import { measureSale } from './sale.js';
import {
  describeContender,
  heldUp,
  measureOverload,
  OVERLOAD_PLAN,
  overloadJson,
  QUICK_OVERLOAD_PLAN,
} from './overload.js';
import { renderOverloadHtml } from './overload-html.js';
import { loadavg } from 'node:os';
import { describeSetting, measureRabbitCeiling, type RabbitCeilingFigures } from './rabbit-ceiling.js';
import { measureScaleOut } from './scale-out.js';
import { measureSimulator, type LoadGeneratorFigures } from './simulator.js';
import { measureWaitingRoom, type RoomSaleFigures } from './waiting-room.js';
import {
  createDatabase,
  deleteRabbitTopology,
  deleteRedisKeys,
  uniqueName,
} from '../test/support/services.js';
import { int } from '../src/shared/format.js';

/**
 * The bench's parts, one entry each in the table BENCH_PARTS: what a part needs, how it measures, and the
 * table rows, JSON keys and goals it reports. run.ts checks the needs of the chosen parts, then walks the
 * table in its order.
 */

/** The goals the figures are held to: the embedded engine, the scale-out engines and the cost of metrics. */
export const GOALS = {
  ackVsBare: 0.55,
  serveAckVsBare: 0.7,
  cpuPer202VsBare: 2.0,
  serveCpuPer202VsBare: 1.4,
  webPeakRssMb: 150,
  /** The worker's allocation rate ÷ the storage's own ceiling (bench/ceiling.ts), SQLite and PostgreSQL. */
  allocVsCeiling: 0.5,
  metricsMaxCost: 0.05,
  redisAckVsBare: 0.6,
  rabbitAckVsBare: 0.5,
  /** Holds may cost at most 30 % of the confirmed-tickets rate. */
  holdsVsNone: 0.7,
} as const;

/** A server or program a part runs against; run.ts checks each one needed, once, before measuring. */
export type Need = 'wrk' | 'postgres' | 'redis' | 'rabbitmq' | 'nginx' | 'haproxy';

export interface ServerUrls {
  postgres: string;
  redis: string;
  rabbitmq: string;
}

/** What every part measures with: the options, the servers and the plans that --quick shortens. */
export interface Plans {
  options: BenchOptions;
  quick: boolean;
  urls: ServerUrls;
  /** The defaults of `onsale start`: its web processes and batch size. */
  defaults: Config;
  accept: AcceptPlan;
  allocation: AllocationPlan;
  pgAllocation: PostgresAllocationPlan;
}

/** A row of the printed table (and of the results file): a label and its figures. */
export type Row = [string, string];

/** What a part adds to the output. */
interface PartReport {
  rows: Row[];
  json: Record<string, unknown>;
  goalsMet?: Record<string, boolean>;
  /** Files written next to the results file, when there is one (name → content). */
  files?: Record<string, string>;
}

type Progress = (line: string) => void;

/** A part as declared: `measure` returns its figures, `report` turns them into output. */
interface PartDefinition<Figures> {
  name: Part;
  needs: readonly Need[];
  measure: (plans: Plans, progress: Progress) => Promise<Figures>;
  report: (figures: Figures, plans: Plans) => PartReport;
}

/** A part as the runner walks it. */
interface BenchPart {
  name: Part;
  needs: readonly Need[];
  run: (plans: Plans, progress: Progress) => Promise<PartReport>;
}

function definePart<Figures>(part: PartDefinition<Figures>): BenchPart {
  return {
    name: part.name,
    needs: part.needs,
    run: async (plans, progress) => part.report(await part.measure(plans, progress), plans),
  };
}

const round = (n: number, digits: number) => Number(n.toFixed(digits));
const mb = (n: number | null) => (n === null ? null : round(n, 1));
const goal = (ratio: number, target: number) =>
  `${ratio.toFixed(2)}  (goal ≥ ${target}: ${ratio >= target ? 'met' : 'MISSED'})`;
const atMost = (value: number, target: number) =>
  `${value.toFixed(2)}  (goal ≤ ${target}: ${value <= target ? 'met' : 'MISSED'})`;
const cpuRow = (name: string, f: AcceptFigures, who: string): Row => [
  `CPU ms per 202, ${name} / bare`,
  `${f.cpuMsPer202.web.toFixed(4)}${who} / ${f.cpuMsPer202.bare.toFixed(4)}`,
];
const ms = (p50: number, p99: number) => `${p50.toFixed(1)} / ${p99.toFixed(1)}`;
const latencyRow = (name: string, f: AcceptFigures): Row => [
  `ack latency p50 / p99 ms, ${name} / bare`,
  `${ms(f.real.p50Ms, f.real.p99Ms)}  /  ${ms(f.bare.p50Ms, f.bare.p99Ms)}`,
];

/** A queue server for the accept path, with PostgreSQL storage: a fresh database and prefix per run. */
function queueEngine(name: 'redis' | 'rabbitmq', postgresUrl: string, serverUrl: string): Engine {
  return {
    name,
    servers: [name === 'redis' ? 'redis-server' : 'beam.smp', 'postgres'],
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

/** The embedded engine: the accept path of `onsale start` and `onsale serve`, then the worker's allocation. */
const core = definePart({
  name: 'core',
  needs: ['wrk'],
  measure: async ({ accept, allocation, defaults }, progress) => ({
    start: await measureAccept(accept, { kind: 'start', web: defaults.web }, progress),
    serve: await measureAccept(accept, { kind: 'serve' }, progress),
    alloc: await measureAllocation(allocation, progress),
  }),
  report: ({ start, serve, alloc }, { defaults }) => {
    const allocVsNaive = alloc.allocPerSec / alloc.naivePerSec;
    const peaks = [start.webPeakRssMb, serve.webPeakRssMb].filter((x): x is number => x !== null);
    const webPeakRssMb = peaks.length > 0 ? Math.max(...peaks) : null;
    const cpuMs = (f: AcceptFigures) => ({
      web: round(f.cpuMsPer202.web, 4),
      worker: round(f.cpuMsPer202.worker, 4),
      bare: round(f.cpuMsPer202.bare, 4),
    });
    const allocVsCeiling = alloc.allocPerSec / alloc.ceilingPerSec;
    return {
      json: {
        cpuPer202VsBare: round(start.cpuPer202VsBare, 3),
        ackVsBare: round(start.ratio, 3),
        allocVsCeiling: round(allocVsCeiling, 2),
        allocVsNaive: round(allocVsNaive, 1),
        ackPerSec: Math.round(start.real.acceptedPerSec),
        bareAckPerSec: Math.round(start.bare.acceptedPerSec),
        allocPerSec: Math.round(alloc.allocPerSec),
        naivePerSec: Math.round(alloc.naivePerSec),
        ceilingPerSec: Math.round(alloc.ceilingPerSec),
        workerCpuUsPerPurchase: Math.round(alloc.workerCpuUsPerPurchase),
        ceilingCpuUsPerPurchase: Math.round(alloc.ceilingCpuUsPerPurchase),
        ackLatencyP50Ms: round(start.real.p50Ms, 2),
        ackLatencyP99Ms: round(start.real.p99Ms, 2),
        bareLatencyP50Ms: round(start.bare.p50Ms, 2),
        bareLatencyP99Ms: round(start.bare.p99Ms, 2),
        ackNon202: start.non202,
        webPeakRssMb: mb(webPeakRssMb),
        workerPeakRssMb: mb(alloc.workerPeakRssMb),
        ackCpu: { web: round(start.cpu.web, 2), worker: round(start.cpu.worker, 2) },
        ackCpuMsPer202: cpuMs(start),
        serveOnly: {
          cpuPer202VsBare: round(serve.cpuPer202VsBare, 3),
          ackVsBare: round(serve.ratio, 3),
          ackPerSec: Math.round(serve.real.acceptedPerSec),
          bareAckPerSec: Math.round(serve.bare.acceptedPerSec),
          ackLatencyP50Ms: round(serve.real.p50Ms, 2),
          ackLatencyP99Ms: round(serve.real.p99Ms, 2),
          non202: serve.non202,
          webPeakRssMb: mb(serve.webPeakRssMb),
          cpuMsPer202: cpuMs(serve),
        },
      },
      goalsMet: {
        cpuPer202VsBare: start.cpuPer202VsBare <= GOALS.cpuPer202VsBare,
        serveCpuPer202VsBare: serve.cpuPer202VsBare <= GOALS.serveCpuPer202VsBare,
        ackVsBare: start.ratio >= GOALS.ackVsBare,
        serveAckVsBare: serve.ratio >= GOALS.serveAckVsBare,
        webPeakRssMb: webPeakRssMb !== null && webPeakRssMb <= GOALS.webPeakRssMb,
        allocVsCeiling: allocVsCeiling >= GOALS.allocVsCeiling,
      },
      rows: [
        cpuRow(
          `onsale start (${defaults.web} web + worker)`,
          start,
          ` + ${start.cpuMsPer202.worker.toFixed(4)}`,
        ),
        ['cpuPer202VsBare', atMost(start.cpuPer202VsBare, GOALS.cpuPer202VsBare)],
        [`accepted/s, onsale start (${defaults.web} web + worker)`, int(start.real.acceptedPerSec)],
        [`accepted/s, bare Fastify (${defaults.web} processes)`, int(start.bare.acceptedPerSec)],
        ['ackVsBare', goal(start.ratio, GOALS.ackVsBare)],
        latencyRow('onsale', start),
        cpuRow('onsale serve (no worker)', serve, ''),
        ['serveOnly.cpuPer202VsBare', atMost(serve.cpuPer202VsBare, GOALS.serveCpuPer202VsBare)],
        [
          'accepted/s, onsale serve (no worker) / bare',
          `${int(serve.real.acceptedPerSec)} / ${int(serve.bare.acceptedPerSec)}`,
        ],
        ['serveOnly.ackVsBare', goal(serve.ratio, GOALS.serveAckVsBare)],
        ['allocated/s, onsale worker', int(alloc.allocPerSec)],
        ['allocated/s, the same rows set-based in one transaction', int(alloc.ceilingPerSec)],
        ['allocVsCeiling', goal(allocVsCeiling, GOALS.allocVsCeiling)],
        ['allocated/s, naive allocator', int(alloc.naivePerSec)],
        ['allocVsNaive (information)', allocVsNaive.toFixed(1)],
        [
          'peak RSS MB, web (start / serve) / worker',
          `${mb(start.webPeakRssMb) ?? 'n/a'} / ${mb(serve.webPeakRssMb) ?? 'n/a'} / ` +
            `${mb(alloc.workerPeakRssMb) ?? 'n/a'}`,
        ],
        ['webPeakRssMb', webPeakRssMb === null ? 'n/a' : atMost(webPeakRssMb, GOALS.webPeakRssMb)],
      ],
    };
  },
});

/** The worker loop on PostgreSQL against a naive allocator on the same server. */
const postgres = definePart({
  name: 'postgres',
  needs: ['postgres'],
  measure: ({ pgAllocation }, progress) => measurePostgresAllocation(pgAllocation, progress),
  report: (pgAlloc) => {
    const ratio = pgAlloc.allocPerSec / pgAlloc.naivePerSec;
    const vsCeiling = pgAlloc.allocPerSec / pgAlloc.ceilingPerSec;
    return {
      json: {
        pgAllocVsCeiling: round(vsCeiling, 2),
        pgAllocPerSec: Math.round(pgAlloc.allocPerSec),
        pgCeilingPerSec: Math.round(pgAlloc.ceilingPerSec),
        pgNaivePerSec: Math.round(pgAlloc.naivePerSec),
        pgWorkerCpuUsPerPurchase: Math.round(pgAlloc.workerCpuUsPerPurchase),
        pgServerCpuUsPerPurchase: Math.round(pgAlloc.serverCpuUsPerPurchase),
        pgCeilingCpuUsPerPurchase: Math.round(pgAlloc.ceilingCpuUsPerPurchase),
        pgAllocVsNaive: round(ratio, 1),
      },
      goalsMet: { pgAllocVsCeiling: vsCeiling >= GOALS.allocVsCeiling },
      rows: [
        ['allocated/s, PostgreSQL worker loop', int(pgAlloc.allocPerSec)],
        ['allocated/s, PostgreSQL, the same rows set-based in one transaction', int(pgAlloc.ceilingPerSec)],
        ['pgAllocVsCeiling', goal(vsCeiling, GOALS.allocVsCeiling)],
        ['allocated/s, PostgreSQL naive allocator', int(pgAlloc.naivePerSec)],
        ['pgAllocVsNaive (information)', ratio.toFixed(1)],
      ],
    };
  },
});

/** The accept path of `onsale start` with the `name` queue and PostgreSQL storage, against bare Fastify. */
function queuePart(name: 'redis' | 'rabbitmq'): BenchPart {
  const key = name === 'redis' ? 'redis' : 'rabbit';
  return definePart({
    name,
    needs: ['wrk', 'postgres', name],
    measure: async ({ accept, defaults, quick, urls }, progress) => ({
      accept: await measureAccept(
        accept,
        { kind: 'start', web: defaults.web, engine: queueEngine(name, urls.postgres, urls[name]) },
        progress,
      ),
      ceiling:
        name === 'rabbitmq'
          ? await measureRabbitCeiling(urls.rabbitmq, { seconds: quick ? 2 : 5 }, progress)
          : null,
    }),
    report: ({ accept: f, ceiling }) => {
      const target = GOALS[`${key}AckVsBare`];
      // CPU per 202 of onsale's processes ÷ the bare server's: what the accept path costs beyond answering.
      const { web, bare } = f.cpuMsPer202;
      const webVsBare = web / Math.max(bare, 1e-12);
      const allVsBare = f.cpuPer202VsBare;
      const perProcess: Array<[string, number]> = [
        ['web', f.cpuMsPer202.web],
        ['worker', f.cpuMsPer202.worker],
        ...Object.entries(f.serverCpuMsPer202),
        ['bare', bare],
      ];
      const rows: Row[] = [
        [
          `accepted/s, onsale start on ${name} + PostgreSQL / bare`,
          `${int(f.real.acceptedPerSec)} / ${int(f.bare.acceptedPerSec)}`,
        ],
        [`${key}AckVsBare`, goal(f.ratio, target)],
        [
          `CPU per 202 ÷ bare's, ${name}: web / web + workers`,
          `${webVsBare.toFixed(2)} / ${allVsBare.toFixed(2)}`,
        ],
        [
          `CPU ms per 202, ${name}: ${perProcess.map(([n]) => n).join(' / ')}`,
          perProcess.map(([, v]) => v.toFixed(4)).join(' / '),
        ],
        latencyRow(`${name}`, f),
      ];
      const json: Record<string, unknown> = {
        [`${key}AckPerSec`]: Math.round(f.real.acceptedPerSec),
        [`${key}AckVsBare`]: round(f.ratio, 3),
        [`${key}WebCpuPer202VsBare`]: round(webVsBare, 2),
        [`${key}CpuPer202VsBare`]: round(allVsBare, 2),
        [`${key}CpuMsPer202`]: Object.fromEntries(perProcess.map(([n, v]) => [n, round(v, 4)])),
        [`${key}BareAckPerSec`]: Math.round(f.bare.acceptedPerSec),
        [`${key}AckLatencyP50Ms`]: round(f.real.p50Ms, 2),
        [`${key}AckLatencyP99Ms`]: round(f.real.p99Ms, 2),
        [`${key}AckNon202`]: f.non202,
        [`${key}AckCpu`]: { web: round(f.cpu.web, 2), worker: round(f.cpu.worker, 2) },
      };
      if (ceiling) {
        const figures = rabbitCeilingReport(ceiling, f);
        Object.assign(json, figures.json);
        rows.push(...figures.rows);
      }
      return { json, goalsMet: { [`${key}AckVsBare`]: f.ratio >= target }, rows };
    },
  });
}

/** RabbitMQ's own ceiling beside onsale's accept rate on it: JSON keys and rows. */
function rabbitCeilingReport(
  ceiling: RabbitCeilingFigures,
  f: AcceptFigures,
): { json: Record<string, unknown>; rows: Row[] } {
  const vsCeiling = f.real.acceptedPerSec / ceiling.perSec;
  const brokerCpu = ceiling.brokerCpuUsPerPurchase;
  // What the broker spent per 202 under `onsale start` (publish, deliver and ack together), in µs.
  const brokerInStart = (f.serverCpuMsPer202['beam.smp'] ?? 0) * 1000;
  const json = {
    rabbitCeilingPerSec: Math.round(ceiling.perSec),
    rabbitCeilingSetting: ceiling.setting,
    rabbitCeilingConsumedPerSec: Math.round(ceiling.consumedPerSec),
    rabbitBrokerCpuUsPerPurchase: brokerCpu && {
      publish: round(brokerCpu.publish, 1),
      consume: round(brokerCpu.consume, 1),
    },
    rabbitCeilingVsBare: round(ceiling.perSec / f.bare.acceptedPerSec, 3),
    rabbitAckVsCeiling: round(vsCeiling, 3),
  };
  const rows: Row[] = [
    [
      `purchases confirmed/s, RabbitMQ alone (${describeSetting(ceiling.setting)}) / ÷ bare`,
      `${int(ceiling.perSec)} / ${(ceiling.perSec / f.bare.acceptedPerSec).toFixed(2)}`,
    ],
    [
      'broker CPU µs per purchase, RabbitMQ alone: publish / deliver and ack; under onsale start',
      brokerCpu === null
        ? 'not on this machine'
        : `${brokerCpu.publish.toFixed(1)} / ${brokerCpu.consume.toFixed(1)}; ${brokerInStart.toFixed(1)}`,
    ],
    ['rabbitAckVsCeiling (information)', vsCeiling.toFixed(2)],
  ];
  return { json, rows };
}

/** The accept path of `onsale start` with metrics on and scraped, against off. */
const metrics = definePart({
  name: 'metrics',
  needs: ['wrk'],
  measure: ({ accept, defaults }, progress) => measureMetricsCost(accept, defaults.web, progress),
  report: (cost) => {
    const share = 1 - cost.ratio;
    return {
      json: {
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
      },
      goalsMet: { metricsCost: share <= GOALS.metricsMaxCost },
      rows: [
        [
          `accepted/s, onsale start, metrics on (scraped every ${SCRAPE_EVERY_MS / 1000} s) / off, medians`,
          `${int(cost.on.wrk.acceptedPerSec)} / ${int(cost.off.wrk.acceptedPerSec)}`,
        ],
        [
          'metricsOnVsOff (median of the rounds)',
          `${cost.ratio.toFixed(3)}  (cost ${(share * 100).toFixed(1)}%, goal ≤ ${GOALS.metricsMaxCost * 100}%: ` +
            `${share <= GOALS.metricsMaxCost ? 'met' : 'MISSED'})`,
        ],
        [
          'on/off ratio of each round (back-to-back runs)',
          cost.roundRatios.map((r) => r.toFixed(3)).join(' '),
        ],
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
      ],
    };
  },
});

/** The whole sale, driven by the simulator, against the baseline shops on PostgreSQL. */
const sale = definePart({
  name: 'sale',
  needs: ['postgres'],
  measure: async ({ quick, urls }, progress) => {
    const plan = quick ? { buyers: 2_000, tickets: 500 } : { buyers: 40_000, tickets: 10_000 };
    return { plan, figures: await measureSale(plan, urls, progress) };
  },
  report: ({ plan, figures }) => {
    const [advisory, skipLocked, onsalePg, onsaleEmbedded] = figures as [
      (typeof figures)[number],
      (typeof figures)[number],
      (typeof figures)[number],
      (typeof figures)[number],
    ];
    const vs = (a: number, b: number) => round(a / Math.max(b, 1), 2);
    return {
      json: {
        sale: {
          loadGenerator: 'onsale simulate (undici keep-alive pools, in the bench process)',
          ...plan,
          contenders: figures,
          onsalePgVsAdvisoryLock: vs(onsalePg.ticketsPerSec, advisory.ticketsPerSec),
          onsalePgVsSkipLocked: vs(onsalePg.ticketsPerSec, skipLocked.ticketsPerSec),
          onsaleEmbeddedVsAdvisoryLock: vs(onsaleEmbedded.ticketsPerSec, advisory.ticketsPerSec),
        },
      },
      rows: [
        ...figures.map((f): Row => [
          `sale tickets/s, ${f.name}`,
          `${int(f.ticketsPerSec)}  (ack p99 ${f.ackP99Ms.toFixed(1)} ms, final p99 ${f.finalP99Ms.toFixed(1)} ms, ` +
            `errors ${f.errors}, invariants ${f.invariantsOk ? 'kept' : `BROKEN: ${f.violated.join(', ')}`})`,
        ]),
        [
          'sale: onsale (PostgreSQL) / advisory-lock shop',
          vs(onsalePg.ticketsPerSec, advisory.ticketsPerSec).toFixed(2),
        ],
        [
          'sale: onsale (PostgreSQL) / SKIP LOCKED shop',
          vs(onsalePg.ticketsPerSec, skipLocked.ticketsPerSec).toFixed(2),
        ],
      ],
    };
  },
});

/** The waiting room: reading a place against a bare JSON GET (with CPU per request), and joins. */
const waitingRoom = definePart({
  name: 'waiting-room',
  needs: ['wrk'],
  measure: ({ accept, quick }, progress) =>
    measureWaitingRoom(
      {
        rounds: accept.rounds,
        load: accept.load,
        // A fresh server's first seconds are its JIT's, not its steady cost: 5 s at least, even with --quick.
        warmupSec: Math.max(5, accept.warmupSec),
        // The standard sale (issue's figures), or --quick's crowd of the same proportions and the same timing
        // (the estimate is judged on buyers who join after the opening: a shorter ramp leaves none whose
        // estimate could see the line move before they joined); minutes long, so
        // ONSALE_BENCH_ROOM_SALE=off leaves it out (for measuring the reads alone).
        sale:
          process.env.ONSALE_BENCH_ROOM_SALE === 'off'
            ? null
            : quick
              ? { buyers: 4_000, tickets: 1_000, maxActiveBuyers: 40, prequeueSec: 30, arrivalSec: 120 }
              : {
                  buyers: 200_000,
                  tickets: 50_000,
                  maxActiveBuyers: 2_000,
                  prequeueSec: 30,
                  arrivalSec: 120,
                },
      },
      progress,
    ),
  report: (f) => ({
    json: {
      waitingRoom: {
        placeReadsPerSec: Math.round(f.placeReadsPerSec),
        bareGetsPerSec: Math.round(f.bareGetsPerSec),
        ratio: round(f.ratio, 3),
        placeP99Ms: round(f.placeP99Ms, 2),
        bareP99Ms: round(f.bareP99Ms, 2),
        eventGetsPerSec: Math.round(f.eventGetsPerSec),
        placeCpuUsPerRequest: round(f.placeCpuUsPerRequest, 1),
        bareCpuUsPerRequest: round(f.bareCpuUsPerRequest, 1),
        joinsPerSec: Math.round(f.joinsPerSec),
        joinP99Ms: round(f.joinP99Ms, 2),
        sale: f.sale,
      },
    },
    rows: [
      [
        'place reads/s / bare JSON GET/s (1 web process each)',
        `${int(f.placeReadsPerSec)} / ${int(f.bareGetsPerSec)} = ${f.ratio.toFixed(2)}`,
      ],
      [
        "place reads/s / the event's JSON GET/s (same onsale serve)",
        `${int(f.placeReadsPerSec)} / ${int(f.eventGetsPerSec)} = ${(f.placeReadsPerSec / f.eventGetsPerSec).toFixed(2)}`,
      ],
      [
        'CPU µs per request, place read / bare GET',
        `${f.placeCpuUsPerRequest.toFixed(0)} / ${f.bareCpuUsPerRequest.toFixed(0)}`,
      ],
      ['waiting-room joins/s (durable, SQLite, 1 web process)', int(f.joinsPerSec)],
      ...(f.sale ? saleRows(f.sale) : []),
    ],
    goalsMet: {
      placeReadsVsBare: f.ratio >= 0.8,
      ...(f.sale
        ? {
            roomEstimateError: f.sale.estimateErrorPct !== null && f.sale.estimateErrorPct <= 20,
            roomNoneAdmittedAfterSoldOut: f.sale.admittedAfterSoldOut === 0 && f.sale.checksOk,
          }
        : {}),
    },
  }),
});

/** The rows of the standard sale behind the room. */
function saleRows(sale: RoomSaleFigures): Row[] {
  return [
    [
      `room sale (${int(sale.buyers)} buyers, ${int(sale.tickets)} tickets, maxActiveBuyers ${int(sale.maxActiveBuyers)}): estimate error`,
      sale.estimateErrorPct === null
        ? 'none told'
        : `${sale.medianAbsErrorSec} s median = ${sale.estimateErrorPct} % of the median wait ` +
          `${sale.medianWaitSec} s (${int(sale.estimateBuyers)} buyers)`,
    ],
    [
      'room sale: sold out after opening; purchases after sold out (admitted after)',
      `${sale.timeToSellOutSec === null ? 'never' : `${sale.timeToSellOutSec} s`}; ` +
        `${int(sale.purchasesAfterSoldOut)} (${int(sale.admittedAfterSoldOut)}); ` +
        `${int(sale.admissionsPerMinute)} admissions/min; waits p50/p90/max ${sale.waitP50Sec}/` +
        `${sale.waitP90Sec}/${sale.waitMaxSec} s; checks ${sale.checksOk ? 'held' : 'BROKEN'}`,
    ],
  ];
}

/** The standard sale with holds and a buyer mix, beside the same sale without holds, on two engines. */
const checkoutPart = definePart({
  name: 'checkout',
  needs: ['postgres', 'redis'],
  measure: async ({ quick, urls }, progress) => {
    const plan = quick ? { buyers: 2_000, tickets: 500 } : { buyers: 200_000, tickets: 50_000 };
    return { plan, figures: await measureCheckout(plan, urls, progress) };
  },
  report: ({ plan, figures }) => {
    const key = (engine: string) => (engine.includes('postgres') ? 'postgresRedis' : 'embedded');
    const final = (s: number | null) => (s === null ? 'never' : `${s.toFixed(1)} s`);
    return {
      json: {
        checkout: {
          ...plan,
          holdSeconds: BENCH_HOLD_SECONDS,
          mix: REALISTIC_MIX,
          engines: figures.map((f) => ({ ...f, ratio: round(f.ratio, 3) })),
        },
      },
      goalsMet: Object.fromEntries(
        figures.map((f) => [`${key(f.engine)}HoldsVsNone`, f.ratio >= GOALS.holdsVsNone]),
      ),
      rows: figures.flatMap((f): Row[] => [
        [
          `tickets confirmed/s, ${f.engine}, holds ${BENCH_HOLD_SECONDS} s + mix / no holds`,
          `${int(f.withHolds.ticketsConfirmedPerSec)} / ${int(f.withoutHolds.ticketsConfirmedPerSec)}  ` +
            goal(f.ratio, GOALS.holdsVsNone),
        ],
        [
          `every purchase final after, ${f.engine}, holds / no holds`,
          `${final(f.withHolds.allFinalSec)} / ${final(f.withoutHolds.allFinalSec)}`,
        ],
      ]),
    };
  },
});

/** The event page against the API's JSON of the same event. */
const pages = definePart({
  name: 'pages',
  needs: ['wrk'],
  measure: ({ accept }, progress) =>
    measurePages({ rounds: accept.rounds, load: accept.load, warmupSec: accept.warmupSec }, progress),
  report: (f) => {
    const w = f.weight;
    return {
      json: {
        pages: {
          ...f,
          pagePerSec: Math.round(f.pagePerSec),
          apiPerSec: Math.round(f.apiPerSec),
          ratio: round(f.ratio, 3),
          pageP99Ms: round(f.pageP99Ms, 2),
          apiP99Ms: round(f.apiP99Ms, 2),
        },
      },
      rows: [
        [
          'event pages/s, HTML / API JSON (onsale serve)',
          `${int(f.pagePerSec)} / ${int(f.apiPerSec)} = ${f.ratio.toFixed(2)}`,
        ],
        [
          'event page bytes, HTML + CSS + JS + icon',
          `${int(w.html)} + ${int(w.css)} + ${int(w.js)} + ${int(w.icon)} = ${int(w.total)} (${int(w.gzipTotal)} gzipped)`,
        ],
      ],
    };
  },
});

/** `onsale cluster` behind HAProxy with 1, 2, 3 web servers, and the balancer's hop against one server. */
const cluster = definePart({
  name: 'cluster',
  needs: ['wrk', 'haproxy'],
  measure: ({ accept }, progress) => measureCluster(accept, progress),
  report: (c) => {
    const hopCost = c.hop.acceptedPerSec / c.direct.acceptedPerSec;
    return {
      json: {
        clusterAckPerSec: Object.fromEntries(
          CLUSTER_WEB.map((w) => [w, Math.round(c.throughLb[w]!.acceptedPerSec)]),
        ),
        clusterDirectAckPerSec: Math.round(c.direct.acceptedPerSec),
        clusterHopAckPerSec: Math.round(c.hop.acceptedPerSec),
        clusterHopVsDirect: round(hopCost, 3),
        clusterHopLatencyP50Ms: { direct: round(c.direct.p50Ms, 2), haproxy: round(c.hop.p50Ms, 2) },
      },
      rows: [
        [
          `accepted/s through HAProxy, ${CLUSTER_WEB.join(' / ')} web`,
          CLUSTER_WEB.map((w) => int(c.throughLb[w]!.acceptedPerSec)).join(' / '),
        ],
        [
          'balancer hop, 1 web: HAProxy / straight',
          `${int(c.hop.acceptedPerSec)} / ${int(c.direct.acceptedPerSec)} = ${hopCost.toFixed(2)}; p50 ` +
            `${c.hop.p50Ms.toFixed(1)} / ${c.direct.p50Ms.toFixed(1)} ms`,
        ],
      ],
    };
  },
});

/** The send rate and CPU per request of `onsale simulate` against wrk, on an nginx stub. */
const simulator = definePart({
  name: 'simulator',
  needs: ['wrk', 'nginx'],
  measure: ({ quick, options }, progress) =>
    measureSimulator(
      {
        buyers: quick ? 30_000 : 150_000,
        connections: options.connections ?? 64,
        wrkSeconds: options.duration ?? (quick ? 5 : 10),
      },
      progress,
    ),
  report: (f) => {
    const [one, two, wrk1, wrk2] = f.runs as [
      LoadGeneratorFigures,
      LoadGeneratorFigures,
      LoadGeneratorFigures,
      LoadGeneratorFigures,
    ];
    const ratio = (a: number, b: number) => round(a / Math.max(b, 1e-9), 2);
    return {
      json: {
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
      },
      rows: [
        ...f.runs.map((r): Row => [
          `requests/s, ${r.name}`,
          `${int(r.requestsPerSec)}  (${r.cpuMsPerRequest.toFixed(4)} CPU ms/request; limit: ${r.limit})`,
        ]),
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
      ],
    };
  },
});

/** Sharding and read replicas: accept and allocation on 1 and 2 shards, reads from primary and replica. */
const scaleOut = definePart({
  name: 'scale-out',
  needs: ['postgres'],
  measure: ({ quick, urls }, progress) =>
    measureScaleOut(
      { adminUrl: urls.postgres, purchases: quick ? 10_000 : 40_000, readSeconds: quick ? 2 : 5 },
      progress,
    ),
  report: ({ runs, reads }) => {
    const at = (shards: number) => runs.find((r) => r.shards === shards)!;
    const perShard = (r: (typeof runs)[number]) =>
      r.cpuMsPerPurchase.perShard.map((ms) => ms.toFixed(3)).join(' + ');
    return {
      json: {
        scaleOut: {
          acceptPerSec: { 1: Math.round(at(1).acceptPerSec), 2: Math.round(at(2).acceptPerSec) },
          allocPerSec: { 1: Math.round(at(1).allocPerSec), 2: Math.round(at(2).allocPerSec) },
          cpuMsPerPurchase: Object.fromEntries(
            runs.map((r) => [
              r.shards,
              {
                node: round(r.cpuMsPerPurchase.node, 3),
                perShard: r.cpuMsPerPurchase.perShard.map((m) => round(m, 3)),
              },
            ]),
          ),
          eventPageReadsPerSec: {
            primary: Math.round(reads.primary.eventPagePerSec),
            replica: Math.round(reads.replica.eventPagePerSec),
          },
          statusReadsPerSec: {
            primary: Math.round(reads.primary.statusPerSec),
            replica: Math.round(reads.replica.statusPerSec),
          },
        },
      },
      rows: [
        ['accepted/s (enqueued), 1 / 2 shards', `${int(at(1).acceptPerSec)} / ${int(at(2).acceptPerSec)}`],
        [
          'allocated/s (2 worker loops), 1 / 2 shards',
          `${int(at(1).allocPerSec)} / ${int(at(2).allocPerSec)}`,
        ],
        [
          'CPU ms per purchase: node, PostgreSQL per shard (1 shard | 2 shards)',
          `${at(1).cpuMsPerPurchase.node.toFixed(3)}, ${perShard(at(1))} | ${at(2).cpuMsPerPurchase.node.toFixed(3)}, ${perShard(at(2))}`,
        ],
        [
          'event page reads/s, primary / replica',
          `${int(reads.primary.eventPagePerSec)} / ${int(reads.replica.eventPagePerSec)}`,
        ],
        [
          'status reads/s, primary / replica',
          `${int(reads.primary.statusPerSec)} / ${int(reads.replica.statusPerSec)}`,
        ],
      ],
    };
  },
});

/** The open-loop overload race: 3× the advisory-lock shop's rate against the shops and onsale. */
const overload = definePart({
  name: 'overload',
  needs: ['postgres', 'redis'],
  measure: async ({ quick, urls }, progress) => ({
    startedAt: new Date().toISOString(),
    loadAverage: (loadavg()[0] ?? 0).toFixed(2),
    figures: await measureOverload(quick ? QUICK_OVERLOAD_PLAN : OVERLOAD_PLAN, urls, progress),
  }),
  report: ({ startedAt, loadAverage, figures: f }) => {
    const json = overloadJson(f);
    return {
      json: { overload: json },
      goalsMet: { overload: json.onsale !== null && heldUp(json.onsale) },
      rows: [
        [
          'overload: open-loop rate (3× the advisory-lock shop)',
          `${int(f.ratePerSec)}/s for ${f.plan.durationSec} s (the shop sustains ${int(f.advisoryLockSustainedPerSec)}/s)`,
        ],
        ...f.contenders.map((c): Row => [`overload, ${c.name}`, describeContender(c)]),
      ],
      files: { 'overload.html': renderOverloadHtml(f, { startedAt, loadAverage }) },
    };
  },
});

/** Every part, in the order they run and their rows print (the order of PARTS). */
export const BENCH_PARTS: readonly BenchPart[] = [
  core,
  postgres,
  queuePart('redis'),
  queuePart('rabbitmq'),
  metrics,
  sale,
  pages,
  cluster,
  simulator,
  scaleOut,
  waitingRoom,
  overload,
  checkoutPart,
];

/**
 * The order of the parts' keys in the JSON line: the cluster's keys sit with the engines' (before the sale's),
 * where they have always been, so that the line reads as it did.
 */
export const JSON_ORDER: readonly Part[] = [
  'core',
  'postgres',
  'redis',
  'rabbitmq',
  'metrics',
  'cluster',
  'sale',
  'pages',
  'simulator',
  'scale-out',
  'waiting-room',
  'overload',
  'checkout',
];
