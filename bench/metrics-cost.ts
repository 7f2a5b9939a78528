import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { realRun, type AcceptPlan, type Engine, type RealRun } from './accept.js';

/**
 * How often the "on" side is scraped: the interval of deploy/prometheus/prometheus.yml. A scrape is not
 * free (every process's registry, the queue and stock read from the database), so this is part of the
 * cost: scraped every second, it measured about a fifth more web CPU per 202 (docs/benchmarks.md).
 */
export const SCRAPE_EVERY_MS = 5_000;

interface MetricsCost {
  on: RealRun;
  off: RealRun;
  /**
   * Accepted/s with metrics on (and scraped) over accepted/s with metrics off: the median of each round's
   * ratio, the two runs of a round being back to back, so that a shared machine's slow drift cancels out.
   */
  ratio: number;
  /** Each round's on/off ratio. */
  roundRatios: number[];
  /**
   * Nanoseconds the web server's recorders take per accepted purchase (the request histogram and the
   * accepted counter), timed in this process: the part of the cost no other load on the machine can blur.
   */
  recordingNsPer202: number;
  /**
   * CPU milliseconds the web servers spent per 202, on and off (medians over the rounds): less moved by
   * other work on a shared machine than throughput is, since it counts only what onsale itself used.
   */
  webCpuMsPer202: { on: number; off: number };
  scrapes: number;
}

/**
 * The cost of metrics on the accept path: `onsale start` on the embedded engine under wrk, with metrics on
 * and /metrics scraped every SCRAPE_EVERY_MS, against the same with ONSALE_METRICS=off, back to back,
 * alternating which goes first each round (a shared machine drifts); the ratio is the median of the rounds'.
 */
export async function measureMetricsCost(
  plan: AcceptPlan,
  web: number,
  progress: (line: string) => void,
): Promise<MetricsCost> {
  let scrapes = 0;
  const on: Engine = {
    name: 'metrics on',
    prepare: async () => ({ env: { ONSALE_METRICS: 'on' }, cleanup: async () => undefined }),
    whileRunning: (base, adminToken) => {
      const timer = setInterval(() => {
        // /metrics asks for the admin token, as Prometheus sends it.
        fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${adminToken}` } }).then(
          async (res) => {
            await res.text();
            if (res.ok) scrapes += 1;
          },
          () => undefined,
        );
      }, SCRAPE_EVERY_MS);
      return () => clearInterval(timer);
    },
  };
  const off: Engine = {
    name: 'metrics off',
    prepare: async () => ({ env: { ONSALE_METRICS: 'off' }, cleanup: async () => undefined }),
  };
  const runs = { on: [] as RealRun[], off: [] as RealRun[] };
  // Five rounds at least (one with --quick): the difference sought is a few percent, the noise of one
  // 20 s run on a shared 2-core machine is more than that.
  const rounds = plan.rounds === 1 ? 1 : Math.max(plan.rounds, 5);
  for (let r = 1; r <= rounds; r++) {
    for (const side of r % 2 === 1 ? (['off', 'on'] as const) : (['on', 'off'] as const)) {
      const run = await realRun(plan, { kind: 'start', web, engine: side === 'on' ? on : off });
      progress(
        `metrics ${r}/${rounds}: onsale start, metrics ${side}: ` +
          `${Math.round(run.wrk.acceptedPerSec).toLocaleString('en-US')} 202/s, ` +
          `p50 ${run.wrk.p50Ms.toFixed(1)} ms, p99 ${run.wrk.p99Ms.toFixed(1)} ms, ` +
          `web CPU ${cpuPer202(run).toFixed(3)} ms per 202`,
      );
      runs[side].push(run);
    }
  }
  const median = (xs: RealRun[]) =>
    [...xs].sort((a, b) => a.wrk.acceptedPerSec - b.wrk.acceptedPerSec)[Math.floor((xs.length - 1) / 2)]!;
  const [onRun, offRun] = [median(runs.on), median(runs.off)];
  const medianOf = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
  const roundRatios = runs.on.map((on, i) => on.wrk.acceptedPerSec / runs.off[i]!.wrk.acceptedPerSec);
  return {
    on: onRun,
    off: offRun,
    ratio: medianOf(roundRatios),
    roundRatios,
    recordingNsPer202: timeRecording(),
    webCpuMsPer202: { on: medianOf(runs.on.map(cpuPer202)), off: medianOf(runs.off.map(cpuPer202)) },
    scrapes,
  };
}

/** Nanoseconds the web server's recorders take per accepted purchase, timed in a process of its own. */
function timeRecording(): number {
  const script = fileURLToPath(new URL('./metrics-recording.js', import.meta.url));
  return Number(execFileSync(process.execPath, [script], { encoding: 'utf8' }).trim());
}

function cpuPer202(run: RealRun): number {
  return (run.cpu.web / run.wrk.acceptedPerSec) * 1000;
}
