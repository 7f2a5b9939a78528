import { describe, expect, it } from 'vitest';
import { decide, defaultPolicy, type Observation, type ScalerState } from '../src/processes/autoscaler.js';

const policy = defaultPolicy(1, 4);
const idle: ScalerState = { workers: 1, changedAt: 0, quietSince: null };
const at = (now: number, depth: number, oldestAgeMs: number): Observation => ({ now, depth, oldestAgeMs });

/** Feeds observations one after another, returning the worker count after each. */
function run(state: ScalerState, observations: Observation[]): number[] {
  return observations.map((obs) => {
    state = decide(state, obs, policy).state;
    return state.workers;
  });
}

describe('the autoscaler decision', () => {
  it('keeps the workers on an empty or young queue', () => {
    expect(decide(idle, at(10_000, 0, 0), policy).change).toBeUndefined();
    expect(decide(idle, at(10_000, 300, 150), policy).change).toBeUndefined();
  });

  it('adds a worker when the oldest purchase waits a second, saying why', () => {
    const d = decide(idle, at(10_000, 800, 1_200), policy);
    expect(d.change).toEqual({ from: 1, to: 2, reason: 'backlog: 800 queued, the oldest waiting 1.2 s' });
    expect(d.state).toMatchObject({ workers: 2, changedAt: 10_000 });
  });

  it('scales to what a deep queue calls for, doubling at most, never above the maximum', () => {
    expect(decide(idle, at(10_000, 12_000, 100), policy).state.workers).toBe(2);
    expect(decide({ ...idle, workers: 2 }, at(10_000, 40_000, 100), policy).state.workers).toBe(4);
    expect(decide({ ...idle, workers: 4 }, at(10_000, 90_000, 9_000), policy).change).toBeUndefined();
  });

  it('waits for the cooldown between two scale-ups', () => {
    const up = decide(idle, at(10_000, 5_000, 2_000), policy).state;
    expect(decide(up, at(11_000, 5_000, 3_000), policy).change).toBeUndefined();
    expect(decide(up, at(12_000, 5_000, 4_000), policy).change?.to).toBe(3);
  });

  it('removes one worker per 5 quiet seconds, down to the minimum', () => {
    const busy: ScalerState = { workers: 3, changedAt: 0, quietSince: null };
    const seconds = Array.from({ length: 16 }, (_, i) => at(10_000 + i * 1_000, 0, 0));
    // quiet from 10 s: 3 → 2 at 15 s, 2 → 1 at 20 s, then stays at the minimum.
    expect(run(busy, seconds)).toEqual([3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1]);
  });

  it('does not flap: a queue that keeps waking up is never quiet long enough to lose a worker', () => {
    const busy: ScalerState = { workers: 2, changedAt: 0, quietSince: null };
    // Every fourth second the oldest purchase waits 500 ms: not a backlog, not quiet either.
    const waves = Array.from({ length: 30 }, (_, i) =>
      at(10_000 + i * 1_000, i % 4 === 3 ? 200 : 0, i % 4 === 3 ? 500 : 0),
    );
    expect(new Set(run(busy, waves))).toEqual(new Set([2]));
  });

  it('brings a count outside the bounds back within them', () => {
    expect(decide({ ...idle, workers: 0 }, at(1, 0, 0), policy).change).toMatchObject({ to: 1 });
    expect(decide({ ...idle, workers: 9 }, at(1, 0, 0), policy).change).toMatchObject({ to: 4 });
  });
});
