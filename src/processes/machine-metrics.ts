import cluster, { type Worker as ClusterChild } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import { enableMetrics, registry } from '../metrics/metrics.js';
import {
  isMetricsAnswerMessage,
  isMetricsAskMessage,
  isMetricsCollectMessage,
  isMetricsRegistryMessage,
  type MetricsAnswerMessage,
  type MetricsAskMessage,
  type MetricsCollectMessage,
  type MetricsRegistryMessage,
} from './messages.js';

/**
 * Whole-machine metrics under `onsale start`. A web server scraped on /metrics asks the supervisor (the
 * cluster primary) over IPC; the supervisor collects every live child's registry as JSON, adds its own
 * (onsale_workers), and answers with the sum (prom-client's AggregatorRegistry: counters and histograms
 * add up; process defaults are aggregated the way prom-client declares for each).
 *
 * A child that dies between two scrapes takes its counts with it, so a sum can go down: Prometheus's
 * rate() treats that as a counter reset, which is what a restarted process is anyway.
 */

/** How long the supervisor waits for the children; one that does not answer in time is left out. */
const COLLECT_TIMEOUT_MS = 2_000;
/** How long a web server waits for the supervisor before its /metrics fails (503). */
const ASK_TIMEOUT_MS = 5_000;

let nextId = 0;
const waiting = new Map<number, { resolve: (text: string) => void; reject: (error: Error) => void }>();

/** Starts this process's metrics; a child of `onsale start` also hands them to the supervisor. */
export function startProcessMetrics(): void {
  enableMetrics();
  if (cluster.isWorker) answerClusterCollection();
}

/** In a cluster child: answers the supervisor's collection requests, and receives its answers. */
function answerClusterCollection(): void {
  const reply = (id: number, metrics: object[]) =>
    process.send?.({ type: 'onsale:metrics:registry', id, metrics } satisfies MetricsRegistryMessage);
  process.on('message', (message: unknown) => {
    if (isMetricsCollectMessage(message)) {
      registry.getMetricsAsJSON().then(
        (metrics) => reply(message.id, metrics),
        () => reply(message.id, []),
      );
    } else if (isMetricsAnswerMessage(message)) {
      const pending = waiting.get(message.id);
      waiting.delete(message.id);
      if ('error' in message) pending?.reject(new Error(message.error));
      else pending?.resolve(message.text);
    }
  });
}

/** In a web server child: the whole machine's metrics, in the text exposition format. */
export function machineMetrics(): Promise<string> {
  return new Promise((resolve, reject) => {
    const id = nextId++;
    const timer = setTimeout(() => {
      waiting.delete(id);
      reject(new Error('the supervisor did not answer with the metrics in time'));
    }, ASK_TIMEOUT_MS);
    waiting.set(id, {
      resolve: (text) => (clearTimeout(timer), resolve(text)),
      reject: (error) => (clearTimeout(timer), reject(error)),
    });
    process.send?.({ type: 'onsale:metrics:ask', id } satisfies MetricsAskMessage);
  });
}

/** In the supervisor: answers its web servers' requests for the machine's metrics. */
export function serveMachineMetrics(): void {
  let round = 0;
  cluster.on('message', (asker: ClusterChild, message: unknown) => {
    if (!isMetricsAskMessage(message)) return;
    const id = round++;
    void aggregate(id).then(
      (text) => send(asker, { type: 'onsale:metrics:answer', id: message.id, text }),
      (error: unknown) =>
        send(asker, { type: 'onsale:metrics:answer', id: message.id, error: String(error) }),
    );
  });
}

async function aggregate(id: number): Promise<string> {
  const children = Object.values(cluster.workers ?? {}).filter(
    (c): c is ClusterChild => c !== undefined && c.isConnected(),
  );
  const parts = await Promise.all(children.map((child) => collectFrom(child, id)));
  parts.push(await registry.getMetricsAsJSON());
  return AggregatorRegistry.aggregate(parts).metrics();
}

function collectFrom(child: ClusterChild, id: number): Promise<object[]> {
  return new Promise((resolve) => {
    const done = (metrics: object[]) => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(metrics);
    };
    const onMessage = (message: unknown) => {
      if (isMetricsRegistryMessage(message) && message.id === id) done(message.metrics);
    };
    const onExit = () => done([]);
    const timer = setTimeout(() => done([]), COLLECT_TIMEOUT_MS);
    child.on('message', onMessage);
    child.on('exit', onExit);
    send(child, { type: 'onsale:metrics:collect', id });
  });
}

function send(child: ClusterChild, message: MetricsCollectMessage | MetricsAnswerMessage): void {
  try {
    if (child.isConnected()) child.send(message);
  } catch {
    // The child is going away; its part is left out.
  }
}
