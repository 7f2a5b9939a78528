import type { Config } from '../config.js';

/**
 * Everything onsale's processes say to their parent or their children, in one place: what a child is
 * handed when it starts, and every IPC message with the guard its receiver checks it with. An IPC message
 * arrives as `unknown` (any JSON another process sent), so a receiver acts only on what a guard accepts.
 */

// ── At start: what a parent hands each child ──────────────────────────────────────────────────────────

type ChildRole = 'web' | 'worker' | 'autoscaler' | 'lb';

/**
 * What `onsale start` (to its node:cluster children) and `onsale cluster` (to the processes it spawns)
 * hand each child, as JSON in the environment variable CHILD_SPEC_ENV.
 */
export interface ChildSpec {
  role: ChildRole;
  config: Config;
  workerId?: string;
  /** The autoscaler's: how many workers run when it starts. */
  workers?: number;
  /** The load balancer wrapper's (onsale cluster): the balancer's command line. */
  command?: string[];
  /** The load balancer wrapper's: where it keeps the balancer's pid, to stop one a killed wrapper left. */
  pidFile?: string;
}

export const CHILD_SPEC_ENV = 'ONSALE_CHILD_SPEC';
/** '1' in the environment of a child of `onsale cluster` (one of `onsale start` is a node:cluster worker). */
export const CLUSTER_CHILD_ENV = 'ONSALE_CLUSTER_CHILD';

// ── Scaling: the autoscaler and its parent ────────────────────────────────────────────────────────────

/** The autoscaler → its parent (the supervisor of `start` or `cluster`): run this many workers. */
export interface ScaleMessage {
  type: 'onsale-scale';
  workers: number;
  reason: string;
}

export function isScaleMessage(message: unknown): message is ScaleMessage {
  return (
    typeof message === 'object' &&
    message !== null &&
    (message as ScaleMessage).type === 'onsale-scale' &&
    Number.isInteger((message as ScaleMessage).workers)
  );
}

/**
 * Between `onsale cluster` and its autoscaler (for onsale_workers) and its web servers (for the admin's
 * stats): each asks once it listens, and the cluster tells it the worker processes it runs, then again each
 * time that number changes.
 */
export interface WorkersMessage {
  type: 'onsale-workers';
  /** Absent in the autoscaler's question. */
  workers?: number;
}

export function isWorkersMessage(message: unknown): message is WorkersMessage {
  return (
    typeof message === 'object' &&
    message !== null &&
    (message as WorkersMessage).type === 'onsale-workers' &&
    ((message as WorkersMessage).workers === undefined ||
      Number.isInteger((message as WorkersMessage).workers))
  );
}

// ── Machine-wide metrics under `onsale start` (machine-metrics.ts) ────────────────────────────────────

/** A web server child → the primary: the machine's metrics, please. `id` pairs the answer with it. */
export interface MetricsAskMessage {
  type: 'onsale:metrics:ask';
  id: number;
}

/** The primary → every child: your registry, for collection round `id`. */
export interface MetricsCollectMessage {
  type: 'onsale:metrics:collect';
  id: number;
}

/** A child → the primary: its registry as JSON (prom-client's getMetricsAsJSON), for round `id`. */
export interface MetricsRegistryMessage {
  type: 'onsale:metrics:registry';
  id: number;
  metrics: object[];
}

/** The primary → the asking child: the aggregated text for its question `id`, or why there is none. */
export type MetricsAnswerMessage = { type: 'onsale:metrics:answer'; id: number } & (
  { text: string } | { error: string }
);

function hasTypeAndId(message: unknown, type: string): message is { type: string; id: number } {
  return (
    typeof message === 'object' &&
    message !== null &&
    (message as { type?: unknown }).type === type &&
    typeof (message as { id?: unknown }).id === 'number'
  );
}

export function isMetricsAskMessage(message: unknown): message is MetricsAskMessage {
  return hasTypeAndId(message, 'onsale:metrics:ask');
}

export function isMetricsCollectMessage(message: unknown): message is MetricsCollectMessage {
  return hasTypeAndId(message, 'onsale:metrics:collect');
}

export function isMetricsRegistryMessage(message: unknown): message is MetricsRegistryMessage {
  return (
    hasTypeAndId(message, 'onsale:metrics:registry') &&
    Array.isArray((message as { metrics?: unknown }).metrics)
  );
}

export function isMetricsAnswerMessage(message: unknown): message is MetricsAnswerMessage {
  if (!hasTypeAndId(message, 'onsale:metrics:answer')) return false;
  const { text, error } = message as { text?: unknown; error?: unknown };
  return typeof text === 'string' || typeof error === 'string';
}
