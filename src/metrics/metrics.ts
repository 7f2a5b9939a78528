import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { REJECT_REASONS } from '../domain/types.js';

/**
 * The metrics of one process: what it did (requests, accepts, refusals, batches). Under `onsale start`
 * these per-process registries are summed across the machine by the supervisor
 * (src/processes/machine-metrics.ts); the state every process shares (queue, stock, dead letters) is read
 * once at scrape time instead (shared-state.ts).
 *
 * Every recorder is a no-op until enableMetrics() runs (ONSALE_METRICS=off never calls it), and swallows
 * its own failures: a metric must never break a request or a batch.
 */
export const registry = new Registry();

let enabled = false;

/** Starts recording (and the process defaults: CPU, memory, event loop, GC). Idempotent. */
export function enableMetrics(): void {
  if (enabled) return;
  enabled = true;
  collectDefaultMetrics({ register: registry });
  // prom-client names these three gauges with a counter's _total suffix, which `promtool check metrics`
  // flags; they are the sums of nodejs_active_handles, _requests and _resources, which stay.
  for (const name of [
    'nodejs_active_handles_total',
    'nodejs_active_requests_total',
    'nodejs_active_resources_total',
  ])
    registry.removeSingleMetric(name);
  exportKnownSeriesAtZero();
}

/**
 * The reasons a purchase request is refused (metrics-plugin.ts folds api.md's error codes into these):
 * each is exported at 0 from the start.
 */
export const REFUSAL_REASONS = [
  'invalid',
  'not_found',
  'sales_not_open',
  'idempotency_conflict',
  'rate_limited',
  'overloaded',
  'unavailable',
  'error',
] as const;

/**
 * A labelled series exists only once it is first counted, and rate() or an alert over a series that
 * appears later sees nothing before it: every label set known in advance starts at 0 instead.
 */
function exportKnownSeriesAtZero(): void {
  for (const reason of REFUSAL_REASONS) refused.inc({ reason }, 0);
  finalized.inc({ outcome: 'confirmed' }, 0);
  for (const reason of REJECT_REASONS) finalized.inc({ outcome: 'rejected', reason }, 0);
  for (const result of ['created', 'existing']) roomJoins.inc({ result }, 0);
  for (const outcome of ['admitted', 'expired']) roomAdmissions.inc({ outcome }, 0);
  for (const target of READ_TARGETS) storageReads.inc({ target }, 0);
  for (const kind of EMAIL_FAILURE_KINDS) emailFailures.inc({ kind }, 0);
  for (const to of CHECKOUT_TRANSITIONS) checkoutTransitions.inc({ to }, 0);
  for (const outcome of PAYMENT_OUTCOMES) payments.inc({ outcome }, 0);
  refunds.inc(0);
  for (const reason of WEBHOOK_FAILURES) webhookFailures.inc({ reason }, 0);
}

/** Why a ticket email attempt failed: `transient` (retried later) or `rejected` (refused for good). */
export const EMAIL_FAILURE_KINDS = ['transient', 'rejected'] as const;

/** What a purchase of an event with holds can become: each is a label of onsale_checkout_transitions_total. */
export const CHECKOUT_TRANSITIONS = [
  'held',
  'waitlisted',
  'confirmed',
  'expired',
  'cancelled',
  'rejected',
] as const;
/** late: the provider confirmed a charge after the purchase had expired or was cancelled (it is refunded). */
export const PAYMENT_OUTCOMES = ['succeeded', 'declined', 'failed', 'late'] as const;
export const WEBHOOK_FAILURES = ['signature', 'error'] as const;

export function metricsEnabled(): boolean {
  return enabled;
}

const registers = [registry];

const httpDuration = new Histogram({
  name: 'onsale_http_request_duration_seconds',
  help: 'HTTP requests by route pattern (never the raw URL), method and status, and how long they took',
  labelNames: ['route', 'method', 'status'] as const,
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers,
});

const accepted = new Counter({
  name: 'onsale_purchases_accepted_total',
  help: 'Purchases answered 202: durably queued',
  registers,
});

const refused = new Counter({
  name: 'onsale_purchases_refused_total',
  help: 'Purchase requests not queued, by reason (rate_limited, overloaded, invalid, sales_not_open, ...)',
  labelNames: ['reason'] as const,
  registers,
});

const finalized = new Counter({
  name: 'onsale_purchases_finalized_total',
  help: 'Purchases that reached a final status, by outcome (and reason, for a rejection)',
  labelNames: ['outcome', 'reason'] as const,
  registers,
});

const endToEnd = new Histogram({
  name: 'onsale_purchase_end_to_end_seconds',
  help: 'From acceptance (the 202) to the final status being committed',
  buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
  registers,
});

const batchSize = new Histogram({
  name: 'onsale_allocation_batch_size',
  help: 'Purchases per allocated batch',
  buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
  registers,
});

const allocationDuration = new Histogram({
  name: 'onsale_allocation_duration_seconds',
  help: 'Time to allocate one batch: storage transaction and queue ack',
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  registers,
});

/** Where a buyer's read (event, availability, purchase, statuses, event list) was served. */
export const READ_TARGETS = ['primary', 'replica'] as const;

const storageReads = new Counter({
  name: 'onsale_storage_reads_total',
  help: 'Reads of events, availability and purchases that were sent to PostgreSQL replicas or primaries (counted when replicas are configured)',
  labelNames: ['target'] as const,
  registers,
});

const checkoutTransitions = new Counter({
  name: 'onsale_checkout_transitions_total',
  help: 'Purchases of events with holds entering a status: held, waitlisted, confirmed (paid), expired, cancelled, rejected (off the waitlist)',
  labelNames: ['to'] as const,
  registers,
});

const payments = new Counter({
  name: 'onsale_payments_total',
  help: 'Payment answers recorded, by outcome (late: succeeded after the purchase expired or was cancelled, then refunded)',
  labelNames: ['outcome'] as const,
  registers,
});

const refunds = new Counter({
  name: 'onsale_refunds_total',
  help: 'Refunds made (charges that came after their purchase could no longer be confirmed)',
  registers,
});

const webhookFailures = new Counter({
  name: 'onsale_webhook_failures_total',
  help: 'Payment webhooks refused (signature: bad, missing or stale signature) or failed (error)',
  labelNames: ['reason'] as const,
  registers,
});

const retries = new Counter({
  name: 'onsale_retries_total',
  help: 'Worker attempts that failed (a batch, or claiming one) and are retried after a back-off',
  registers,
});

const emailsSent = new Counter({
  name: 'onsale_emails_sent_total',
  help: 'Ticket emails the SMTP server took (a copy sent again after a crash counts again)',
  registers,
});

const emailFailures = new Counter({
  name: 'onsale_email_failures_total',
  help: 'Ticket email attempts that failed, by kind: transient (retried after a back-off) or rejected (refused for good)',
  labelNames: ['kind'] as const,
  registers,
});

// Registered by the first setWorkerCount() only: a process that does not know the count (a web server, a
// worker of a supervisor) exports no series, so that each cluster has one (see setWorkerCount).
const workers = new Gauge({
  name: 'onsale_workers',
  help: 'Live worker processes (set by whoever runs them: the supervisor, the autoscaler, or a standalone worker itself)',
  registers: [],
});

function safely(record: () => void): void {
  if (!enabled) return;
  try {
    record();
  } catch {
    // A metric is never worth a failed request or batch.
  }
}

/** Label children by "route method status": found in a map, rather than prom-client hashing labels each time. */
const httpChildren = new Map<string, Histogram.Internal<'route' | 'method' | 'status'>>();

export function observeRequest(route: string, method: string, status: number, seconds: number): void {
  safely(() => {
    const key = `${route} ${method} ${status}`;
    let child = httpChildren.get(key);
    if (!child) {
      child = httpDuration.labels({ route, method, status: String(status) });
      httpChildren.set(key, child);
    }
    child.observe(seconds);
  });
}

export function countAccepted(): void {
  safely(() => accepted.inc());
}

export function countRefused(reason: string): void {
  safely(() => refused.inc({ reason }));
}

export function countStorageRead(target: (typeof READ_TARGETS)[number]): void {
  safely(() => storageReads.inc({ target }));
}

export function countEmailSent(): void {
  safely(() => emailsSent.inc());
}

export function countEmailFailure(kind: (typeof EMAIL_FAILURE_KINDS)[number]): void {
  safely(() => emailFailures.inc({ kind }));
}

export function countRetry(): void {
  safely(() => retries.inc());
}

/** A batch the worker committed: its size, how long it took, and each fresh purchase's outcome. */
export function observeBatch(
  size: number,
  seconds: number,
  outcomes: ReadonlyArray<{ acceptedAt: string; outcome: string; reason: string | null }>,
): void {
  safely(() => {
    batchSize.observe(size);
    allocationDuration.observe(seconds);
    const now = Date.now();
    // Counted per outcome, then added once each: a batch is hundreds of purchases and a few outcomes, and
    // prom-client hashes the labels on every inc(). Purchases accepted in one millisecond share a parse.
    const counts = new Map<string, { outcome: string; reason: string | null; n: number }>();
    let acceptedAt = '';
    let acceptedMs = 0;
    for (const o of outcomes) {
      const key = `${o.outcome} ${o.reason ?? ''}`;
      const count = counts.get(key);
      if (count) count.n += 1;
      else counts.set(key, { outcome: o.outcome, reason: o.reason, n: 1 });
      // Held and waitlisted purchases are not final: their end is counted by the checkout metrics.
      if (o.outcome === 'held' || o.outcome === 'waitlisted') continue;
      if (o.acceptedAt !== acceptedAt) {
        acceptedAt = o.acceptedAt;
        acceptedMs = Date.parse(acceptedAt);
      }
      endToEnd.observe(Math.max(0, (now - acceptedMs) / 1000));
    }
    for (const { outcome, reason, n } of counts.values()) {
      if (outcome === 'held' || outcome === 'waitlisted') checkoutTransitions.inc({ to: outcome }, n);
      else finalized.inc(reason ? { outcome, reason } : { outcome }, n);
    }
  });
}

/**
 * The one place that says how many workers are alive: the supervisor of `onsale start` calls it when it
 * forks or loses one, the autoscaler of `onsale cluster` when its parent tells it, a standalone worker sets
 * 1 for itself. Only the process that calls it exports onsale_workers, so Prometheus's sum() counts each
 * worker once.
 */
export function setWorkerCount(count: number): void {
  safely(() => {
    if (!registry.getSingleMetric('onsale_workers')) registry.registerMetric(workers);
    workers.set(count);
  });
}

/** Status changes of checkout (expiry, cancel, payment, the waitlist served). */
export function countCheckoutChanges(changes: ReadonlyArray<{ to: string }>): void {
  safely(() => {
    for (const c of changes) checkoutTransitions.inc({ to: c.to });
  });
}

export function countPaymentOutcome(outcome: (typeof PAYMENT_OUTCOMES)[number]): void {
  safely(() => payments.inc({ outcome }));
}

export function countRefund(): void {
  safely(() => refunds.inc());
}

export function countWebhookFailure(reason: (typeof WEBHOOK_FAILURES)[number]): void {
  safely(() => webhookFailures.inc({ reason }));
}

const roomJoins = new Counter({
  name: 'onsale_room_joins_total',
  help: 'Joins of a waiting room answered: a new place (created) or the one the buyer had (existing)',
  labelNames: ['result'] as const,
  registers,
});

const roomAdmissions = new Counter({
  name: 'onsale_room_admissions_total',
  help: 'Places whose turn came in a waiting room: let in (admitted) or skipped as abandoned (expired)',
  labelNames: ['outcome'] as const,
  registers,
});

const roomEstimateError = new Histogram({
  name: 'onsale_room_estimate_error_seconds',
  help: 'For each admitted buyer told an estimate at join: |estimated wait - actual wait|',
  buckets: [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800],
  registers,
});

export function countRoomJoin(created: boolean): void {
  if (!enabled) return;
  roomJoins.inc({ result: created ? 'created' : 'existing' });
}

/** One step of a line: who was let in (with the wait seen and the one told at join) and who was skipped. */
export function observeRoomStep(
  admitted: ReadonlyArray<{ waitedSeconds: number; etaAtJoin: number | null }>,
  expired: number,
): void {
  if (!enabled) return;
  try {
    if (admitted.length > 0) roomAdmissions.inc({ outcome: 'admitted' }, admitted.length);
    if (expired > 0) roomAdmissions.inc({ outcome: 'expired' }, expired);
    for (const a of admitted) {
      if (a.etaAtJoin !== null) roomEstimateError.observe(Math.abs(a.etaAtJoin - a.waitedSeconds));
    }
  } catch {
    // A metric never breaks the line.
  }
}
