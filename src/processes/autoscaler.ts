import type { Logger } from 'pino';
import { openQueue } from '../adapters/index.js';
import type { Config } from '../config.js';
import { serveProcessMetricsOrLog } from '../metrics/listener.js';
import { setWorkerCount } from '../metrics/metrics.js';
import { createLogger } from '../shared/logger.js';
import { onShutdown } from '../shared/shutdown.js';
import { startProcessMetrics } from './machine-metrics.js';
import { isWorkersMessage, type ScaleMessage, type WorkersMessage } from './messages.js';

/** What the autoscaler sees of the queue at one instant. */
export interface Observation {
  /** Queued purchases over all events. */
  depth: number;
  /** Age of the oldest queued purchase, 0 when the queue is empty. */
  oldestAgeMs: number;
  now: number;
}

/** What the autoscaler remembers between observations. */
export interface ScalerState {
  workers: number;
  /** When the worker count last changed. */
  changedAt: number;
  /** Since when the queue has been quiet without a break, or null. */
  quietSince: number | null;
}

interface ScalePolicy {
  min: number;
  max: number;
  /** A backlog is a queue whose oldest purchase waits this long, or this many purchases per worker. */
  upAgeMs: number;
  upDepthPerWorker: number;
  /** Between two scale-ups: time for the new workers to start and show their effect. */
  upCooldownMs: number;
  /** Quiet means: the oldest purchase waits less than this (an empty queue is quiet). */
  quietAgeMs: number;
  /** One worker is stopped after the queue has been quiet this long, and again after as long. */
  downAfterMs: number;
}

/**
 * The defaults. Hysteresis: a backlog (oldest ≥ 1 s) adds workers at once, but only a queue that stays
 * quiet (oldest < 200 ms) for 5 s without a break removes one, so a sale's waves do not make it flap.
 */
export function defaultPolicy(min: number, max: number): ScalePolicy {
  return {
    min,
    max,
    upAgeMs: 1_000,
    upDepthPerWorker: 5_000,
    upCooldownMs: 2_000,
    quietAgeMs: 200,
    downAfterMs: 5_000,
  };
}

interface Decision {
  state: ScalerState;
  /** Set when the worker count changes, with why. */
  change?: { from: number; to: number; reason: string };
}

/**
 * The autoscaler's rule, a pure function of what it saw and remembers. Up: on a backlog, to as many
 * workers as the depth calls for, at least one more (doubling at most), after the up cooldown. Down: one
 * worker at a time, after the queue has been quiet for `downAfterMs`. Always within [min, max].
 */
export function decide(state: ScalerState, obs: Observation, policy: ScalePolicy): Decision {
  const { min, max } = policy;
  const quiet = obs.depth === 0 || obs.oldestAgeMs < policy.quietAgeMs;
  const quietSince = quiet ? (state.quietSince ?? obs.now) : null;
  const next: ScalerState = { ...state, quietSince };
  const to = (workers: number, reason: string): Decision => ({
    state: {
      workers,
      changedAt: obs.now,
      quietSince: workers < state.workers ? (quiet ? obs.now : null) : null,
    },
    change: { from: state.workers, to: workers, reason },
  });

  if (state.workers < min) return to(min, `below the minimum of ${min}`);
  if (state.workers > max) return to(max, `above the maximum of ${max}`);

  const backlog =
    obs.depth > 0 &&
    (obs.oldestAgeMs >= policy.upAgeMs || obs.depth >= policy.upDepthPerWorker * state.workers);
  if (backlog) {
    if (state.workers >= max || obs.now - state.changedAt < policy.upCooldownMs) return { state: next };
    const wanted = Math.max(state.workers + 1, Math.ceil(obs.depth / policy.upDepthPerWorker));
    const workers = Math.min(max, wanted, state.workers * 2);
    return to(
      workers,
      `backlog: ${obs.depth} queued, the oldest waiting ${(obs.oldestAgeMs / 1000).toFixed(1)} s`,
    );
  }

  if (quiet && state.workers > min && quietSince !== null && obs.now - quietSince >= policy.downAfterMs) {
    return to(
      state.workers - 1,
      `quiet for ${Math.round((obs.now - quietSince) / 1000)} s: ${obs.depth} queued`,
    );
  }
  return { state: next };
}

const OBSERVE_EVERY_MS = 500;

/**
 * The autoscaler process: watches the queue and asks its parent, which owns the worker processes, for
 * more or fewer of them. `workers` is the count the parent runs now.
 */
export async function runAutoscaler(
  config: Config,
  workers: number,
  under: 'start' | 'cluster' = 'start',
): Promise<void> {
  process.title = 'onsale-autoscaler';
  const logger = createLogger(config.logLevel, 'autoscaler', undefined, config.logFormat);
  if (!process.send) throw new Error('the autoscaler runs as a child of onsale start or onsale cluster');
  // Under `onsale start` the supervisor collects every child's metrics for /metrics: this one answers too.
  if (config.metrics) startProcessMetrics();
  const listener =
    config.metrics && under === 'cluster' ? await exportWorkerCount(config, workers, logger) : null;
  const queue = await openQueue(config.queueUrl, config);
  const policy = defaultPolicy(config.workersMin, config.workersMax);
  let state: ScalerState = { workers, changedAt: 0, quietSince: null };
  let running = true;
  logger.info({ workers, min: policy.min, max: policy.max }, 'autoscaler started');

  const loop = (async () => {
    while (running) {
      try {
        const { depth, oldestAcceptedAt } = await queue.depth();
        const now = Date.now();
        const oldestAgeMs = oldestAcceptedAt ? Math.max(0, now - Date.parse(oldestAcceptedAt)) : 0;
        const decision = decide(state, { depth, oldestAgeMs, now }, policy);
        state = decision.state;
        if (decision.change) {
          const { from, to, reason } = decision.change;
          logger.info({ from, workers: to, reason }, `workers ${from} → ${to}: ${reason}`);
          process.send!({ type: 'onsale-scale', workers: to, reason } satisfies ScaleMessage);
        }
      } catch (error) {
        // A queue that does not answer changes nothing: the workers already running stay.
        logger.warn({ err: error }, 'cannot read the queue depth; keeping the workers as they are');
      }
      await new Promise((r) => setTimeout(r, OBSERVE_EVERY_MS));
    }
  })();

  // Its parent going away (the IPC channel closing) ends it too, so it never outlives its supervisor.
  process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'));
  onShutdown(logger, async () => {
    running = false;
    await loop;
    await Promise.all([queue.close(), listener?.close()]);
  });
}

/**
 * Under `onsale cluster`, where every process is scraped on its own: onsale_workers on this process's
 * /metrics (config.metricsPort), set from what the cluster tells it. It is the one process of the cluster
 * that exports it, so the count is never summed from several; the cluster (its parent) is the one that
 * knows how many worker processes are alive.
 */
async function exportWorkerCount(
  config: Config,
  workers: number,
  logger: Logger,
): Promise<{ close: () => Promise<void> } | null> {
  setWorkerCount(workers);
  process.on('message', (message: unknown) => {
    if (isWorkersMessage(message) && message.workers !== undefined) setWorkerCount(message.workers);
  });
  // Asked now that the answer is listened for: a change made while this process started is not missed.
  process.send!({ type: 'onsale-workers' } satisfies WorkersMessage);
  return config.metricsPort === null
    ? null
    : serveProcessMetricsOrLog(config.host, config.metricsPort, logger);
}
