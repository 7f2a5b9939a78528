import { readFileSync } from 'node:fs';

/** One process's resident memory over its life: seconds since the soak began, and MiB. */
export interface RssSeries {
  pid: number;
  role: string;
  samples: Array<{ atSec: number; rssMiB: number }>;
}

export interface RssTrend {
  pid: number;
  role: string;
  samples: number;
  /** Seconds between the first and the last sample judged (after the warm-up). */
  spanSec: number;
  firstMiB: number;
  lastMiB: number;
  /** Least-squares slope over the judged samples, MiB per minute. */
  slopeMiBPerMin: number;
  /** What that slope adds over the span judged. */
  growthMiB: number;
  flat: boolean;
}

/** The resident set of `pid` in MiB (VmRSS), or null once it has gone. */
export function residentMiB(pid: number): number | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
    return kb === undefined ? null : Number(kb) / 1024;
  } catch {
    return null;
  }
}

/**
 * Whether a process's memory grows: the first quarter of its samples is left out (V8 compiles, pools and caches
 * fill), then a least-squares line through the rest. Flat when what the line adds over the span is at most
 * `allowMiB` or `allowShare` of the median, whichever is larger: a garbage-collected heap saws up and down by
 * several MiB, a leak climbs steadily. A series with fewer than `minSamples` judged samples is not judged
 * (null): too short-lived to tell.
 */
export function rssTrend(
  series: RssSeries,
  opts: { minSamples?: number; minSpanSec?: number; allowMiB?: number; allowShare?: number } = {},
): RssTrend | null {
  const { minSamples = 8, minSpanSec = 30, allowMiB = 24, allowShare = 0.25 } = opts;
  const judged = series.samples.slice(Math.floor(series.samples.length / 4));
  if (judged.length < minSamples) return null;
  const spanSec = judged[judged.length - 1]!.atSec - judged[0]!.atSec;
  if (spanSec < minSpanSec) return null;
  const n = judged.length;
  const meanX = judged.reduce((s, p) => s + p.atSec, 0) / n;
  const meanY = judged.reduce((s, p) => s + p.rssMiB, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (const p of judged) {
    sxy += (p.atSec - meanX) * (p.rssMiB - meanY);
    sxx += (p.atSec - meanX) ** 2;
  }
  const slopePerSec = sxx === 0 ? 0 : sxy / sxx;
  const sorted = judged.map((p) => p.rssMiB).sort((a, b) => a - b);
  const median = sorted[Math.floor(n / 2)]!;
  const growthMiB = slopePerSec * spanSec;
  const round = (x: number) => Math.round(x * 10) / 10;
  return {
    pid: series.pid,
    role: series.role,
    samples: n,
    spanSec: Math.round(spanSec),
    firstMiB: round(judged[0]!.rssMiB),
    lastMiB: round(judged[n - 1]!.rssMiB),
    slopeMiBPerMin: round(slopePerSec * 60),
    growthMiB: round(growthMiB),
    flat: growthMiB <= Math.max(allowMiB, allowShare * median),
  };
}
