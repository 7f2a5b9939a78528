/** Latency percentiles of a sample, in milliseconds, rounded to a hundredth. */
export interface Percentiles {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** Nearest-rank percentiles; all zero for an empty sample. */
export function percentiles(sample: readonly number[]): Percentiles {
  const sorted = Float64Array.from(sample).sort();
  const at = (q: number) =>
    sorted.length === 0
      ? 0
      : Math.round(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]! * 100) / 100;
  return { count: sorted.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: at(1) };
}
