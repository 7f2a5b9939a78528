import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  cleanEnv,
  cpuSeconds,
  freePort,
  spawnNode,
  tempDir,
  waitForHttp,
  type BenchProcess,
} from './processes.js';
import type { LoadShape } from './wrk.js';
import { simulateWaitingRoom } from '../src/simulate/waiting-room.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const BARE_SERVER = fileURLToPath(new URL('./bare-server.js', import.meta.url));
const JOIN_SCRIPT = fileURLToPath(new URL('./join.lua', import.meta.url));
const TOKEN = 'bench-admin-token-0123456789abcdef';

export interface WaitingRoomPlan {
  rounds: number;
  load: LoadShape;
  warmupSec: number;
  /** The standard sale behind the room (the simulator against `onsale start`, embedded); null: skipped. */
  sale: RoomSalePlan | null;
}

export interface RoomSalePlan {
  buyers: number;
  tickets: number;
  maxActiveBuyers: number;
  /** Seconds of pre-queue before the sales open, and of arrivals (a ramp) from the room's opening. */
  prequeueSec: number;
  arrivalSec: number;
}

/** The standard sale behind the room, from the simulator's report. */
export interface RoomSaleFigures extends RoomSalePlan {
  estimateBuyers: number;
  medianAbsErrorSec: number | null;
  medianWaitSec: number | null;
  /** The median absolute error of the join-time estimate as a share of the median wait (goal ≤ 20). */
  estimateErrorPct: number | null;
  waitP50Sec: number;
  waitP90Sec: number;
  waitMaxSec: number;
  admissionsPerMinute: number;
  timeToSellOutSec: number | null;
  purchasesAfterSoldOut: number;
  /** Of those, purchases of buyers admitted after sold out (goal 0). */
  admittedAfterSoldOut: number;
  ticketsSold: number;
  checksOk: boolean;
}

export interface WaitingRoomFigures {
  /** GET /api/queue/:placeId per second on one `onsale serve`, median of the rounds. */
  placeReadsPerSec: number;
  /** GET /healthz (a JSON answer, no work) per second on the bare Fastify server: the baseline. */
  bareGetsPerSec: number;
  ratio: number;
  placeP99Ms: number;
  bareP99Ms: number;
  /** GET /api/events/:id (the event's JSON, cached) per second on the same `onsale serve`: onsale's own GET. */
  eventGetsPerSec: number;
  /** CPU microseconds the serving process spent per request, place read and bare GET. */
  placeCpuUsPerRequest: number;
  bareCpuUsPerRequest: number;
  /** Joins (201, durable) per second on one `onsale serve` with the embedded SQLite. */
  joinsPerSec: number;
  joinP99Ms: number;
  sale: RoomSaleFigures | null;
}

interface Run {
  perSec: number;
  p99Ms: number;
  requests: number;
  statuses: Record<string, number>;
}

/**
 * The waiting room's hot path: reading a place (what every waiting buyer does every few seconds) against a
 * bare JSON GET of a Fastify server that does nothing, alternated `rounds` times, with the CPU each process
 * spent per request; then joins per second. One web process each side, SQLite embedded, no worker (the
 * place read is the same whether the line moves or not: the line's counters come from the process's cache).
 */
export async function measureWaitingRoom(
  plan: WaitingRoomPlan,
  progress: (line: string) => void,
): Promise<WaitingRoomFigures> {
  const places: Array<Run & { cpuUs: number }> = [];
  const eventGets: Run[] = [];
  const bares: Array<Run & { cpuUs: number }> = [];

  for (let r = 1; r <= plan.rounds; r++) {
    progress(`waiting-room: place reads, round ${r}/${plan.rounds}`);
    const real = await withOnsale('serve', async (base, server) => {
      const event = await createRoomEvent(base);
      const join = await fetch(`${base}/api/events/${event}/queue`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ buyerId: 'bench-buyer' }),
      });
      const { placeId } = (await join.json()) as { placeId: string };
      const url = `${base}/api/queue/${placeId}`;
      await wrk(url, { ...plan.load, durationSec: plan.warmupSec });
      const measured = await measuredWithCpu(server, () => wrk(url, plan.load));
      eventGets.push(await wrk(`${base}/api/events/${event}`, plan.load));
      return measured;
    });
    places.push(real);
    progress(`waiting-room: bare JSON GET, round ${r}/${plan.rounds}`);
    const bare = await withBare((url, server) => measuredWithCpu(server, () => wrk(url, plan.load)), plan);
    bares.push(bare);
    progress(
      `waiting-room: round ${r}: place reads ${Math.round(real.perSec)}/s at ${real.cpuUs.toFixed(1)} µs CPU, ` +
        `bare GETs ${Math.round(bare.perSec)}/s at ${bare.cpuUs.toFixed(1)} µs CPU`,
    );
  }
  progress('waiting-room: joins');
  const joins = await withOnsale('serve', async (base) => {
    const event = await createRoomEvent(base);
    return wrk(
      base,
      plan.load,
      ['--script', JOIN_SCRIPT],
      [`/api/events/${event}/queue`, `bench-${Date.now()}`],
    );
  });
  let sale: RoomSaleFigures | null = null;
  if (plan.sale) {
    progress(
      `waiting-room: the standard sale behind the room, ${plan.sale.buyers} buyers for ${plan.sale.tickets} ` +
        `tickets, maxActiveBuyers ${plan.sale.maxActiveBuyers}`,
    );
    sale = await measureRoomSale(plan.sale, progress);
  }
  const place = medianBy(places, (p) => p.perSec);
  const bare = medianBy(bares, (b) => b.perSec);
  const created = joins.statuses['201'] ?? 0;
  return {
    placeReadsPerSec: place.perSec,
    bareGetsPerSec: bare.perSec,
    ratio: place.perSec / bare.perSec,
    placeP99Ms: place.p99Ms,
    bareP99Ms: bare.p99Ms,
    eventGetsPerSec: medianBy(eventGets, (e) => e.perSec).perSec,
    placeCpuUsPerRequest: place.cpuUs,
    bareCpuUsPerRequest: bare.cpuUs,
    joinsPerSec: created / (joins.requests / joins.perSec),
    joinP99Ms: joins.p99Ms,
    sale,
  };
}

/**
 * The standard sale behind the room: `onsale start` fresh (embedded, its default processes), and the
 * simulator's crowd joining over a ramp, a pre-queue before the opening, 5 % of places abandoned, short
 * admissions (60 s) so that abandoned ones free their slot within the sale.
 */
async function measureRoomSale(
  plan: RoomSalePlan,
  progress: (line: string) => void,
): Promise<RoomSaleFigures> {
  const report = await withOnsale('start', async (base) => {
    let lastLog = 0;
    return simulateWaitingRoom(
      {
        url: base,
        adminToken: TOKEN,
        buyers: plan.buyers,
        arrival: 'ramp',
        durationSec: plan.arrivalSec,
        ticketTypes: 3,
        tickets: plan.tickets,
        maxPerBuyer: 4,
        maxQuantity: 2,
        maxActiveBuyers: plan.maxActiveBuyers,
        maxAdmittedPerMinute: null,
        prequeueSec: plan.prequeueSec,
        sessionSeconds: 60,
        abandonPlaceRate: 0.05,
        // Each person has a connection of their own: with 128 shared by 200,000 people, the simulator's own
        // queue for a connection made purchases wait seconds behind other people's reads at the ramp's peak.
        connections: 512,
        settleSec: 120,
        retries: 50,
        seed: 6,
      },
      (line) => {
        if (Date.now() - lastLog < 10_000) return;
        lastLog = Date.now();
        progress(`waiting-room sale: ${line}`);
      },
    );
  });
  for (const v of report.checks.violations) progress(`waiting-room sale: CHECK BROKEN: ${v.detail}`);
  return {
    ...plan,
    estimateBuyers: report.estimate.buyers,
    medianAbsErrorSec: report.estimate.medianAbsErrorSec,
    medianWaitSec: report.estimate.medianWaitSec,
    estimateErrorPct: report.estimate.errorPctOfWait,
    waitP50Sec: report.waitSec.p50,
    waitP90Sec: report.waitSec.p90,
    waitMaxSec: report.waitSec.max,
    admissionsPerMinute: report.admissionsPerMinute.mean,
    timeToSellOutSec: report.timeToSellOutSec,
    purchasesAfterSoldOut: report.afterSoldOut.purchases,
    admittedAfterSoldOut: report.afterSoldOut.admittedAfterSoldOut,
    ticketsSold: report.totals.ticketsSold,
    checksOk: report.checks.ok,
  };
}

async function measuredWithCpu(
  server: BenchProcess,
  run: () => Promise<Run>,
): Promise<Run & { cpuUs: number }> {
  const before = cpuSeconds(server.pid);
  const result = await run();
  const after = cpuSeconds(server.pid);
  return { ...result, cpuUs: ((after - before) * 1e6) / Math.max(1, result.requests) };
}

async function createRoomEvent(base: string): Promise<string> {
  const res = await fetch(`${base}/api/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({
      name: 'Bench night',
      ticketTypes: [{ name: 'General admission', priceCents: 5000, capacity: 50_000, maxPerBuyer: 4 }],
      waitingRoom: { maxActiveBuyers: 2000 },
    }),
  });
  return ((await res.json()) as { id: string }).id;
}

/** `onsale serve` (one web process) or `onsale start` (web servers and a worker), embedded, in a temp folder. */
async function withOnsale<T>(
  command: 'serve' | 'start',
  body: (base: string, server: BenchProcess) => Promise<T>,
): Promise<T> {
  const dir = tempDir();
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = spawnNode(
    CLI,
    [command],
    cleanEnv({
      ONSALE_DATA_DIR: dir.path,
      ONSALE_ADMIN_TOKEN: TOKEN,
      PORT: String(port),
      LOG_LEVEL: 'warn',
      // One client plays every buyer: the per-address limit (2,000 per 10 s per web process) would hold the
      // whole crowd to 400 requests a second, and measure itself.
      ONSALE_RATE_LIMIT_EXEMPT: '127.0.0.1',
    }),
  );
  try {
    // `start` readies its web servers and worker before answering: it is given longer.
    await waitForHttp(`${base}/readyz`, server, command === 'start' ? 60_000 : undefined);
    return await body(base, server);
  } finally {
    await server.stop();
    dir.remove();
  }
}

async function withBare<T>(
  body: (url: string, server: BenchProcess) => Promise<T>,
  plan: WaitingRoomPlan,
): Promise<T> {
  const port = await freePort();
  const server = spawnNode(BARE_SERVER, [String(port), '1'], cleanEnv({}));
  try {
    const url = `http://127.0.0.1:${port}/healthz`;
    await waitForHttp(url, server);
    await wrk(url, { ...plan.load, durationSec: plan.warmupSec });
    return await body(url, server);
  } finally {
    await server.stop();
  }
}

/** One wrk run: with a script, its WRK_RESULT line; without, wrk's own summary (every answer must be 2xx). */
async function wrk(
  url: string,
  load: LoadShape,
  extra: string[] = [],
  scriptArgs: string[] = [],
): Promise<Run> {
  const args = [
    `--threads=${load.threads}`,
    `--connections=${load.connections}`,
    `--duration=${load.durationSec}s`,
    '--timeout=10s',
    '--latency',
    ...extra,
    url,
    ...(scriptArgs.length > 0 ? ['--', ...scriptArgs] : []),
  ];
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr.on('data', (d: Buffer) => (text += d.toString()));
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0 ? resolve(text) : reject(new Error(`wrk ${args.join(' ')}:\n${text}`)),
    );
  });
  const marker = out.split('\n').find((l) => l.startsWith('WRK_RESULT '));
  if (marker) {
    const raw = JSON.parse(marker.slice('WRK_RESULT '.length)) as {
      durationUs: number;
      requests: number;
      p99Us: number;
      statuses: Record<string, number>;
    };
    return {
      perSec: raw.requests / (raw.durationUs / 1e6),
      p99Ms: raw.p99Us / 1000,
      requests: raw.requests,
      statuses: raw.statuses,
    };
  }
  const perSec = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const requests = /(\d+) requests in/.exec(out);
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s)\s*$/m.exec(out);
  if (!perSec || !p99 || !requests || /Non-2xx/.test(out))
    throw new Error(`wrk ${args.join(' ')} did not measure:\n${out}`);
  const unit = { us: 0.001, ms: 1, s: 1000 }[p99[2] as 'us' | 'ms' | 's'];
  return {
    perSec: Number(perSec[1]),
    p99Ms: Number(p99[1]) * unit,
    requests: Number(requests[1]),
    statuses: {},
  };
}

function medianBy<T>(values: T[], key: (v: T) => number): T {
  return [...values].sort((a, b) => key(a) - key(b))[Math.floor(values.length / 2)]!;
}
