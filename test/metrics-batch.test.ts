/**
 * What the worker records for a committed batch: each fresh purchase counted once in its outcome (with its
 * reason), held and waitlisted ones as checkout transitions, and the end-to-end time of the final ones. In
 * process, on the real prom-client registry the metrics endpoint serves.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { enableMetrics, observeBatch, registry } from '../src/metrics/metrics.js';
import { samples } from './helpers/prometheus.js';

beforeAll(() => enableMetrics());

async function snapshot(): Promise<Map<string, number>> {
  return samples(await registry.metrics());
}

/** How much each series grew between two snapshots. */
function growth(before: Map<string, number>, after: Map<string, number>, series: string): number {
  return (after.get(series) ?? 0) - (before.get(series) ?? 0);
}

describe('observeBatch', () => {
  it('counts every outcome and reason of a batch, and times only the final purchases', async () => {
    const now = Date.now();
    const at = (msAgo: number) => new Date(now - msAgo).toISOString();
    const outcomes = [
      { acceptedAt: at(4_000), outcome: 'confirmed', reason: null },
      { acceptedAt: at(4_000), outcome: 'confirmed', reason: null },
      { acceptedAt: at(3_000), outcome: 'rejected', reason: 'sold_out' },
      { acceptedAt: at(3_000), outcome: 'held', reason: null },
      { acceptedAt: at(2_000), outcome: 'rejected', reason: 'limit_exceeded' },
      { acceptedAt: at(2_000), outcome: 'confirmed', reason: null },
      { acceptedAt: at(1_000), outcome: 'waitlisted', reason: null },
      { acceptedAt: at(1_000), outcome: 'rejected', reason: 'sold_out' },
    ];
    const before = await snapshot();
    observeBatch(outcomes.length, 0.01, outcomes);
    const after = await snapshot();

    const finalized = 'onsale_purchases_finalized_total';
    expect(growth(before, after, `${finalized}{outcome="confirmed"}`)).toBe(3);
    expect(growth(before, after, `${finalized}{outcome="rejected",reason="sold_out"}`)).toBe(2);
    expect(growth(before, after, `${finalized}{outcome="rejected",reason="limit_exceeded"}`)).toBe(1);
    expect(growth(before, after, `${finalized}{outcome="rejected",reason="insufficient_inventory"}`)).toBe(0);
    expect(growth(before, after, 'onsale_checkout_transitions_total{to="held"}')).toBe(1);
    expect(growth(before, after, 'onsale_checkout_transitions_total{to="waitlisted"}')).toBe(1);

    // Six final purchases, accepted 4, 4, 3, 2, 2 and 1 s before: 16 s in all, each between 0.5 and 5 s.
    const endToEnd = 'onsale_purchase_end_to_end_seconds';
    expect(growth(before, after, `${endToEnd}_count`)).toBe(6);
    expect(growth(before, after, `${endToEnd}_bucket{le="0.5"}`)).toBe(0);
    expect(growth(before, after, `${endToEnd}_bucket{le="5"}`)).toBe(6);
    expect(growth(before, after, `${endToEnd}_sum`)).toBeGreaterThanOrEqual(16);
    expect(growth(before, after, `${endToEnd}_sum`)).toBeLessThan(17);
    expect(growth(before, after, 'onsale_allocation_batch_size_count')).toBe(1);
  });
});
