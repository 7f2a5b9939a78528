/**
 * Does a web server's memory grow under a steady crowd? One `onsale serve` (embedded defaults, fresh data
 * folder) gets wrk at full load for a few seconds (its rate), then purchases from new buyers at about half
 * that rate for MINUTES minutes, every request a new buyer (as in a rush: the per-buyer limiter sees each
 * once). Every SAMPLE seconds it prints the server's resident memory (VmRSS) and peak (VmHWM):
 *   npm run build:bench && node build/bench/memory-soak.js [MINUTES=5] [SAMPLE=15]
 * and a JSON line at the end. wrk is closed-loop; the pace comes from purchase.lua's delay between a
 * connection's requests, calibrated against the measured full rate (the achieved rate is printed).
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { createEvent } from './accept.js';
import {
  cleanEnv,
  cleanUpOnExit,
  cpuSeconds,
  freePort,
  peakRssMb,
  spawnNode,
  tempDir,
  waitForHttp,
} from './processes.js';
import { readFileSync } from 'node:fs';
import { assertWrkInstalled, runWrk } from './wrk.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const CONNECTIONS = 64;

function rssMb(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  const minutes = Number(process.argv[2] ?? '5');
  const sampleSec = Number(process.argv[3] ?? '15');
  if (!(minutes > 0) || !(sampleSec > 0)) {
    process.stderr.write('usage: memory-soak.js [MINUTES] [SAMPLE_SECONDS]\n');
    process.exit(2);
  }
  assertWrkInstalled();
  cleanUpOnExit();
  const dir = tempDir();
  const port = await freePort();
  const adminToken = randomBytes(32).toString('base64url');
  const env = cleanEnv({
    ONSALE_DATA_DIR: dir.path,
    PORT: String(port),
    ONSALE_ADMIN_TOKEN: adminToken,
    LOG_LEVEL: 'warn',
  });
  const onsale = spawnNode(CLI, ['serve'], env);
  const base = `http://127.0.0.1:${port}`;
  const log = (line: string) => process.stderr.write(`[soak] ${line}\n`);
  try {
    await waitForHttp(`${base}/readyz`, onsale);
    const target = await createEvent(base, {
      authorization: `Bearer ${adminToken}`,
      'content-type': 'application/json',
    });
    const prefix = () => randomBytes(4).toString('hex');
    const full = await runWrk(
      base,
      { ...target, buyerPrefix: prefix() },
      { threads: 1, connections: CONNECTIONS, durationSec: 10 },
    );
    const halfRate = full.acceptedPerSec / 2;
    // Each connection waits this long between its requests: CONNECTIONS of them make about half the rate.
    const delayMs = Math.max(1, Math.round((CONNECTIONS / halfRate) * 1000 - full.p50Ms));
    log(
      `full load: ${Math.round(full.acceptedPerSec)} 202/s; soak at about ${Math.round(halfRate)}/s ` +
        `(${delayMs} ms between a connection's requests), ${minutes} min; VmHWM after full load ` +
        `${peakRssMb(onsale.pid)?.toFixed(1)} MB`,
    );
    const samples: Array<{ sec: number; rssMb: number | null; hwmMb: number | null }> = [];
    const started = Date.now();
    const sample = () => {
      const s = {
        sec: Math.round((Date.now() - started) / 1000),
        rssMb: rssMb(onsale.pid),
        hwmMb: peakRssMb(onsale.pid),
      };
      samples.push(s);
      log(`${s.sec} s: VmRSS ${s.rssMb?.toFixed(1)} MB, VmHWM ${s.hwmMb?.toFixed(1)} MB`);
    };
    sample();
    const timer = setInterval(sample, sampleSec * 1000);
    const cpuBefore = cpuSeconds(onsale.pid);
    const soak = await runWrk(
      base,
      { ...target, buyerPrefix: prefix() },
      { threads: 1, connections: CONNECTIONS, durationSec: minutes * 60, delayMs },
    );
    clearInterval(timer);
    sample();
    const accepted = soak.statuses['202'] ?? 0;
    const result = {
      minutes,
      fullAckPerSec: Math.round(full.acceptedPerSec),
      soakAckPerSec: Math.round(soak.acceptedPerSec),
      accepted,
      other: Object.fromEntries(Object.entries(soak.statuses).filter(([s]) => s !== '202')),
      cpuMsPer202: Number((((cpuSeconds(onsale.pid) - cpuBefore) * 1000) / Math.max(1, accepted)).toFixed(4)),
      samples,
      // The second half against the first: growth shows as a higher resident set late in the run.
      rssFirstHalfMaxMb: maxOf(samples.slice(0, Math.ceil(samples.length / 2))),
      rssSecondHalfMaxMb: maxOf(samples.slice(Math.ceil(samples.length / 2))),
      peakRssMb: peakRssMb(onsale.pid),
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await onsale.stop();
    dir.remove();
  }
}

function maxOf(samples: Array<{ rssMb: number | null }>): number | null {
  const values = samples.map((s) => s.rssMb).filter((x): x is number => x !== null);
  return values.length > 0 ? Number(Math.max(...values).toFixed(1)) : null;
}

await main();
