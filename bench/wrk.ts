import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('./purchase.lua', import.meta.url));
const MARKER = 'WRK_RESULT ';

export interface LoadShape {
  threads: number;
  connections: number;
  durationSec: number;
  /** A pause before each request of a connection (purchase.lua's delay()), to run below full load. */
  delayMs?: number;
}

/** One wrk run, as its Lua `done` function reports it. */
export interface WrkResult {
  durationSec: number;
  requests: number;
  /** Responses by HTTP status. */
  statuses: Record<string, number>;
  /** Requests that got no response at all (socket errors and timeouts). */
  socketErrors: number;
  /** 202s per second: only those count as accepted purchases. */
  acceptedPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

interface RawResult {
  durationUs: number;
  requests: number;
  p50Us: number;
  p99Us: number;
  statuses: Record<string, number>;
  errors: { connect: number; read: number; write: number; timeout: number };
}

export class WrkMissingError extends Error {
  override name = 'WrkMissingError';
  constructor() {
    super(
      [
        'npm run bench needs wrk, the HTTP load generator, and it is not on the PATH. Install it with:',
        '  Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y wrk',
        '  macOS:         brew install wrk',
        'then run the bench again.',
      ].join('\n'),
    );
  }
}

/** Throws WrkMissingError unless a `wrk` binary can be run. */
export function assertWrkInstalled(): void {
  // `wrk --version` prints its usage and exits 1; only "not found" matters here.
  const probe = spawnSync('wrk', ['--version'], { stdio: 'ignore' });
  if ((probe.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') throw new WrkMissingError();
}

/**
 * Runs wrk with purchase.lua against `baseUrl`: every request a purchase of one ticket of `ticketTypeId` by a
 * new buyer whose id starts with `buyerPrefix`.
 */
export async function runWrk(
  baseUrl: string,
  target: { eventId: string; ticketTypeId: string; buyerPrefix: string },
  load: LoadShape,
): Promise<WrkResult> {
  const args = [
    `--threads=${load.threads}`,
    `--connections=${load.connections}`,
    `--duration=${load.durationSec}s`,
    // Long enough that a slow 202 is measured as latency rather than dropped as a timeout.
    '--timeout=10s',
    `--script=${SCRIPT}`,
    baseUrl,
    '--',
    `/api/events/${target.eventId}/purchases`,
    target.ticketTypeId,
    target.buyerPrefix,
    ...(load.delayMs === undefined ? [] : [String(load.delayMs)]),
  ];
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
    (resolve, reject) => {
      const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.once('error', reject);
      child.once('close', (exitCode) => resolve({ code: exitCode, stdout: out, stderr: err }));
    },
  );
  const line = stdout.split('\n').find((l) => l.startsWith(MARKER));
  if (code !== 0 || !line) {
    throw new Error(`wrk ${args.join(' ')} failed (exit ${code}):\n${stdout}${stderr}`);
  }
  const raw = JSON.parse(line.slice(MARKER.length)) as RawResult;
  const durationSec = raw.durationUs / 1e6;
  const { connect, read, write, timeout } = raw.errors;
  return {
    durationSec,
    requests: raw.requests,
    statuses: raw.statuses,
    socketErrors: connect + read + write + timeout,
    acceptedPerSec: (raw.statuses['202'] ?? 0) / durationSec,
    p50Ms: raw.p50Us / 1000,
    p99Ms: raw.p99Us / 1000,
  };
}
