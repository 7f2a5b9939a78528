import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { simulate, type SimulateOptions, type SimulationReport } from '../src/simulate/run.js';
import { cleanEnv, freePort, spawnNode, tempDir, waitForHttp } from './processes.js';
import { createDatabase, deleteRedisKeys, uniqueName } from '../test/support/services.js';
import type { ShopKind } from './shops/shops.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const SHOP_SERVER = fileURLToPath(new URL('./shops/server.js', import.meta.url));

/** What sells in a whole-sale run: onsale on an engine, or one of the baseline shops (shops/shops.ts). */
export type Contender =
  { kind: 'onsale'; engine: 'embedded' | 'postgres' | 'postgres+redis' } | { kind: 'shop'; shop: ShopKind };

export function contenderName(c: Contender): string {
  if (c.kind === 'onsale') return `onsale start (${c.engine})`;
  return c.shop === 'advisory-lock'
    ? 'advisory-lock shop (Hi.Events, older pretix)'
    : 'SKIP LOCKED shop (alf.io)';
}

/** A running contender: its URL and admin token, and how to stop it and remove what it made. */
export interface Running {
  url: string;
  adminToken: string;
  /** onsale's storage (a throw-away PostgreSQL database or the temp folder's SQLite file); null for a shop. */
  databaseUrl: string | null;
  /** What stop() removes besides the processes: databases, Redis keys, data folders. */
  leaves: string[];
  stop: () => Promise<void>;
}

/** Contenders started and not yet stopped, for a clean-up on Ctrl+C (stopContenders). */
const started = new Set<Running>();

/**
 * Stops every contender still running and removes what it made; returns what was removed. For SIGINT and
 * SIGTERM, when the exit hook alone (which kills processes and temp folders) would leave databases behind.
 */
export async function stopContenders(): Promise<string[]> {
  const removed: string[] = [];
  for (const r of [...started]) {
    await r.stop();
    removed.push(...r.leaves);
  }
  return removed;
}

/**
 * Starts a contender fresh on this machine: `onsale start` (its default web servers and workers) in a temp data
 * folder, with a throw-away PostgreSQL database (and Redis prefix) for those engines; or a shop, with a
 * process per CPU, on its own throw-away database of the same PostgreSQL server.
 */
export async function startContender(
  c: Contender,
  urls: { postgres: string; redis: string },
  env: Record<string, string> = {},
): Promise<Running> {
  const port = await freePort();
  const adminToken = randomBytes(32).toString('base64url');
  const url = `http://127.0.0.1:${port}`;
  const needsDb = c.kind === 'shop' || c.engine !== 'embedded';
  const db = needsDb ? await createDatabase(urls.postgres, 'onsale_sale') : null;
  if (c.kind === 'shop') {
    const server = spawnNode(
      SHOP_SERVER,
      [c.shop, String(port), db!.url, adminToken, String(availableParallelism())],
      cleanEnv({}),
    );
    await waitForHttp(`${url}/healthz`, server).catch(async (error: unknown) => {
      await server.stop();
      await db!.drop();
      throw error;
    });
    return track({
      url,
      adminToken,
      databaseUrl: null,
      leaves: [`PostgreSQL database ${db!.name}`],
      stop: async () => {
        await server.stop();
        await db!.drop();
      },
    });
  }
  const dir = tempDir();
  const prefix = uniqueName('onsale_sale');
  const queue = new URL(urls.redis);
  queue.searchParams.set('prefix', prefix);
  const onsale = spawnNode(
    CLI,
    ['start'],
    cleanEnv({
      ONSALE_DATA_DIR: dir.path,
      PORT: String(port),
      ONSALE_ADMIN_TOKEN: adminToken,
      LOG_LEVEL: 'warn',
      ...env,
      ...(db ? { ONSALE_DATABASE_URL: db.url } : {}),
      ...(c.engine === 'postgres+redis' ? { ONSALE_QUEUE_URL: queue.toString() } : {}),
    }),
  );
  const stop = async () => {
    await onsale.stop();
    if (c.engine === 'postgres+redis') await deleteRedisKeys(urls.redis, `${prefix}:*`);
    await db?.drop();
    dir.remove();
  };
  try {
    await waitForHttp(`${url}/readyz`, onsale, 60_000);
  } catch (error) {
    await stop();
    throw error;
  }
  return track({
    url,
    adminToken,
    databaseUrl: db?.url ?? `sqlite:${dir.path}/onsale.db`,
    leaves: [
      ...(db ? [`PostgreSQL database ${db.name}`] : []),
      ...(c.engine === 'postgres+redis' ? [`Redis keys ${prefix}:*`] : []),
      `data folder ${dir.path}`,
    ],
    stop,
  });
}

/** Registers a running contender until it is stopped (once, however many times stop() is called). */
function track(r: Running): Running {
  started.add(r);
  let stopping: Promise<void> | null = null;
  const stop = r.stop;
  r.stop = () => {
    stopping ??= stop().finally(() => started.delete(r));
    return stopping;
  };
  return r;
}

/** One contender's figures in the whole-sale comparison. */
interface SaleFigures {
  name: string;
  ticketsPerSec: number;
  ticketsSold: number;
  capacity: number;
  timeToSellOutSec: number | null;
  ackP99Ms: number;
  finalP99Ms: number;
  requestsPerSec: number;
  /** Answers that were neither a purchase nor a rejection for stock or limit (429, 503, 5xx, no answer). */
  errors: number;
  invariantsOk: boolean;
  violated: string[];
}

function saleFigures(name: string, r: SimulationReport): SaleFigures {
  // Tickets sold per second until the sale sold out (or until the end, if it never did).
  const seconds = r.timeToSellOutSec ?? r.durationSec;
  return {
    name,
    ticketsPerSec: Math.round(r.totals.ticketsSold / Math.max(seconds, 0.001)),
    ticketsSold: r.totals.ticketsSold,
    capacity: r.totals.capacity,
    timeToSellOutSec: r.timeToSellOutSec,
    ackP99Ms: r.ackLatencyMs.p99,
    finalP99Ms: r.endToEndLatencyMs.p99,
    requestsPerSec: Math.round(r.requestsPerSec),
    errors: Object.values(r.refusals).reduce((a, b) => a + b, 0),
    invariantsOk: r.invariants.ok,
    violated: [...new Set(r.invariants.violations.map((v) => v.invariant))],
  };
}

type Crowd = Omit<SimulateOptions, 'url' | 'adminToken' | 'eventId'>;

/** The same crowd for every contender: a burst of `buyers` for `tickets` in three types. */
export function saleCrowd(buyers: number, tickets: number): Crowd {
  return {
    buyers,
    repeat: 0.1,
    arrival: 'burst',
    durationSec: 0,
    ticketTypes: 3,
    tickets,
    maxPerBuyer: 4,
    maxQuantity: 2,
    connections: 128,
    followers: 256,
    follow: 'sse',
    settleSec: 300,
    retries: 50,
    seed: 6,
  };
}

/** Starts the contender, plays the crowd against it with the simulator, stops it. */
export async function playSale(
  c: Contender,
  crowd: Crowd,
  urls: { postgres: string; redis: string },
  onProgress?: Parameters<typeof simulate>[1],
): Promise<SimulationReport> {
  const running = await startContender(c, urls);
  try {
    return await simulate({ ...crowd, url: running.url, adminToken: running.adminToken }, onProgress);
  } finally {
    await running.stop();
  }
}

/**
 * The bench's `sale` part: the same crowd against onsale (on PostgreSQL, and on the embedded default) and
 * against the two baseline shops on the same PostgreSQL server, one after the other on this machine. The
 * load generator is the simulator (undici, in the bench's process) for every figure.
 */
export async function measureSale(
  plan: { buyers: number; tickets: number },
  urls: { postgres: string; redis: string },
  progress: (line: string) => void,
): Promise<SaleFigures[]> {
  const contenders: Contender[] = [
    { kind: 'shop', shop: 'advisory-lock' },
    { kind: 'shop', shop: 'skip-locked' },
    { kind: 'onsale', engine: 'postgres' },
    { kind: 'onsale', engine: 'embedded' },
  ];
  const figures: SaleFigures[] = [];
  for (const c of contenders) {
    const name = contenderName(c);
    progress(
      `sale: ${name}: ${plan.buyers.toLocaleString('en-US')} buyers for ${plan.tickets.toLocaleString('en-US')} tickets`,
    );
    const f = saleFigures(name, await playSale(c, saleCrowd(plan.buyers, plan.tickets), urls));
    progress(
      `sale: ${name}: ${f.ticketsPerSec.toLocaleString('en-US')} tickets/s, sold ${f.ticketsSold}/${f.capacity}, ` +
        `ack p99 ${f.ackP99Ms} ms, final p99 ${f.finalP99Ms} ms, errors ${f.errors}, invariants ` +
        `${f.invariantsOk ? 'kept' : `BROKEN (${f.violated.join(', ')})`}`,
    );
    figures.push(f);
  }
  return figures;
}
