import { Pool } from 'undici';
import { percentiles } from '../src/simulate/stats.js';

/**
 * An open-loop sender: purchases go out at a fixed rate whatever became of the earlier ones, as buyers arrive
 * at a sale. Each request's latency runs from the moment it was due, not from when it left, so a late send
 * (a slow sender, or every connection busy) counts against the server as a buyer would see it.
 */

/** What became of one request. */
export type Outcome =
  /** A purchase answer: 202 (accepted) or 200 (a synchronous shop's final purchase). */
  | 'accepted'
  /** A final refusal for stock or the buyer's limit (409): an answer, as good as an acceptance for latency. */
  | 'rejected'
  /** The contract's way to shed load: 429 or 503 with Retry-After. Not an error; the buyer knows when to retry. */
  | 'shed'
  /** No answer within the timeout. */
  | 'timeout'
  /** Anything else: a 5xx, a 429/503 without Retry-After, another status, a dropped connection. */
  | 'error';

export interface Answer {
  /** The request's number: its buyer and body were built from it. */
  index: number;
  /** Milliseconds after the start at which the request was due. */
  dueMs: number;
  /** From due to answer (the timeout for a timeout). */
  latencyMs: number;
  status: number;
  outcome: Outcome;
  /** The answer's body for 200/202 (a shop's final purchase, onsale's receipt). */
  body?: unknown;
}

export interface OpenLoopResult {
  answers: Answer[];
  ratePerSec: number;
  durationSec: number;
  /** How late the sender sent, p99 and max, in ms: near 0 means the sender kept to its rate. */
  sendLagP99Ms: number;
  sendLagMaxMs: number;
  /** CPU the sender's process used while sending, in cores, and per request in ms. */
  senderBusyCores: number;
  senderCpuMsPerRequest: number;
}

export interface OpenLoopPlan {
  /** The server's origin, such as http://127.0.0.1:8080. */
  origin: string;
  path: string;
  /** The JSON body of request number i. */
  body: (i: number) => string;
  ratePerSec: number;
  durationSec: number;
  timeoutMs: number;
  /** Keep-alive connections: enough that a slow server, not the sender, is what queues. */
  connections: number;
}

/** Sorts a status into an outcome: only the contract's 429/503 with Retry-After is shedding, not an error. */
export function outcomeOf(status: number, retryAfter: boolean): Outcome {
  if (status === 202 || status === 200) return 'accepted';
  if (status === 409) return 'rejected';
  if ((status === 429 || status === 503) && retryAfter) return 'shed';
  return 'error';
}

/** Sends `plan.ratePerSec` requests a second for `plan.durationSec`, then waits for the last answer or timeout. */
export async function sendOpenLoop(plan: OpenLoopPlan): Promise<OpenLoopResult> {
  const pool = new Pool(plan.origin, {
    connections: plan.connections,
    pipelining: 1,
    // The timeout is the plan's, counted from when each request was due (below).
    headersTimeout: 0,
    bodyTimeout: 0,
  });
  const total = Math.round(plan.ratePerSec * plan.durationSec);
  const answers: Answer[] = [];
  const lags: number[] = [];
  const pending: Array<Promise<void>> = [];
  const cpuBefore = process.cpuUsage();
  const t0 = performance.now();

  const send = async (i: number, dueMs: number) => {
    const signal = AbortSignal.timeout(
      Math.max(1, Math.ceil(plan.timeoutMs - (performance.now() - t0 - dueMs))),
    );
    let status = 0;
    let outcome: Outcome;
    let body: unknown;
    try {
      const res = await pool.request({
        method: 'POST',
        path: plan.path,
        headers: { 'content-type': 'application/json' },
        body: plan.body(i),
        signal,
      });
      status = res.statusCode;
      const text = await res.body.text();
      outcome = outcomeOf(status, res.headers['retry-after'] !== undefined);
      if (outcome === 'accepted') body = JSON.parse(text) as unknown;
    } catch {
      outcome = signal.aborted ? 'timeout' : 'error';
    }
    const latencyMs = outcome === 'timeout' ? plan.timeoutMs : performance.now() - t0 - dueMs;
    answers.push({ index: i, dueMs, latencyMs, status, outcome, ...(body === undefined ? {} : { body }) });
  };

  // Every millisecond or so, send what has come due: timers are coarse, so requests go out in small bursts.
  let sent = 0;
  while (sent < total) {
    const now = performance.now() - t0;
    const due = Math.min(total, Math.floor((now * plan.ratePerSec) / 1000) + 1);
    for (; sent < due; sent++) {
      const dueMs = (sent * 1000) / plan.ratePerSec;
      lags.push(now - dueMs);
      pending.push(send(sent, dueMs));
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  const sendingMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpuBefore);
  await Promise.all(pending);
  await pool.destroy();
  const cpuMs = (cpu.user + cpu.system) / 1000;
  const lag = percentiles(lags);
  return {
    answers: answers.sort((a, b) => a.dueMs - b.dueMs),
    ratePerSec: plan.ratePerSec,
    durationSec: plan.durationSec,
    sendLagP99Ms: lag.p99,
    sendLagMaxMs: lag.max,
    senderBusyCores: cpuMs / sendingMs,
    senderCpuMsPerRequest: cpuMs / Math.max(1, total),
  };
}

/** Per contender: what the open-loop crowd saw. */
export interface OverloadCounts {
  requests: number;
  /** Answered (anything but a timeout) within the timeout. */
  answered: number;
  accepted: number;
  rejected: number;
  shed: number;
  timeouts: number;
  errors: number;
  /** Over every request, a timeout counted at the timeout: a shop that drops requests cannot look fast. */
  ackP50Ms: number;
  ackP99Ms: number;
}

export function countAnswers(answers: readonly Answer[]): OverloadCounts {
  const n = (o: Outcome) => answers.filter((a) => a.outcome === o).length;
  const p = percentiles(answers.map((a) => a.latencyMs));
  return {
    requests: answers.length,
    answered: answers.length - n('timeout'),
    accepted: n('accepted'),
    rejected: n('rejected'),
    shed: n('shed'),
    timeouts: n('timeout'),
    errors: n('error'),
    ackP50Ms: p.p50,
    ackP99Ms: p.p99,
  };
}

/** p50 and p99 latency of each second of due times, for the chart. */
export function latencyPerSecond(
  answers: readonly Answer[],
  durationSec: number,
): Array<{ p50: number; p99: number } | null> {
  const seconds: number[][] = Array.from({ length: Math.ceil(durationSec) }, () => []);
  for (const a of answers)
    seconds[Math.min(seconds.length - 1, Math.floor(a.dueMs / 1000))]!.push(a.latencyMs);
  return seconds.map((s) => {
    if (s.length === 0) return null;
    const p = percentiles(s);
    return { p50: p.p50, p99: p.p99 };
  });
}
