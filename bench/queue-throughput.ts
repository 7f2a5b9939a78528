// Measures a queue adapter alone, from separate processes, as web servers and workers use it:
//   accept: W writer processes, each enqueuing group-commit batches of B purchases back to back for S s;
//   drain:  N purchases queued, then K worker processes claim (batches of 500) and ack until none is left.
// Storage is left out (no allocation): the figures are the queue's own ceiling.
//
//   npm run build:bench && node build/bench/queue-throughput.js QUEUE_URL DATABASE_URL [writers=1,2,4]
//     [batches=1,50,500] [seconds=5] [drain=50000] [workers=1,2]
// e.g. node build/bench/queue-throughput.js 'amqp://guest:guest@127.0.0.1:5672?prefix=bench1' postgres://postgres@127.0.0.1:5432/bench
// Redis Cluster: name its nodes, e.g. 'redis://127.0.0.1:7311,127.0.0.1:7312,127.0.0.1:7313?prefix=bench2'.
// The writers spread their purchases over 8 events, so a cluster's events land on its different masters.
import { fork } from 'node:child_process';
import console from 'node:console';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { setTimeout } from 'node:timers';
import { URL } from 'node:url';
import { openQueue } from '../src/adapters/index.js';
import type { AcceptedPurchase } from '../src/domain/types.js';

/** What a child sends its parent when done: a writer all fields but lastAckAt, a worker done and lastAckAt. */
interface ChildReport {
  done: number;
  refused?: number;
  latencies?: number[];
  errors?: string[];
  lastAckAt?: number;
  /** CPU time (user + system) the child spent writing or draining, in microseconds. */
  cpuMicros?: number;
}

const [role, queueUrl, databaseUrl, ...rest] = process.argv.slice(2);

function purchase(eventId: string): AcceptedPurchase {
  const buyerId = `buyer-${randomUUID()}`;
  return {
    purchaseId: randomUUID(),
    eventId,
    buyerId,
    canonicalBuyerId: buyerId,
    items: [{ ticketTypeId: 'tt', quantity: 1 }],
    acceptedAt: new Date().toISOString(),
  };
}

/** A child: writes for `seconds`, or drains, and reports its count to the parent. */
async function child() {
  const queue = await openQueue(queueUrl!, { databaseUrl: databaseUrl! });
  await queue.migrate();
  if (role === 'writer') {
    const [batch = 0, seconds = 0, events = 1] = rest.map(Number);
    const until = Date.now() + seconds * 1000;
    let done = 0;
    let refused = 0;
    const errors = new Set<string>();
    const latencies: number[] = [];
    const cpuAtStart = process.cpuUsage();
    while (Date.now() < until) {
      const requests = Array.from({ length: batch }, (_, i) => ({
        purchase: purchase(`event-${i % events}`),
      }));
      const started = performance.now();
      try {
        await queue.enqueue(requests);
        done += batch;
        latencies.push(performance.now() - started);
      } catch (error) {
        refused += batch;
        const cause =
          error instanceof Error && error.cause instanceof Error ? `: ${error.cause.message}` : '';
        errors.add(`${error instanceof Error ? error.message : String(error)}${cause}`);
        await new Promise((r) => setTimeout(r, 100)); // as a client told Retry-After would, roughly
      }
    }
    const cpu = process.cpuUsage(cpuAtStart);
    send({ done, refused, latencies, errors: [...errors], cpuMicros: cpu.user + cpu.system });
  } else if (role === 'fill') {
    const [count = 0, events = 1] = rest.map(Number);
    for (let left = count; left > 0; left -= 1000) {
      await queue.enqueue(
        Array.from({ length: Math.min(1000, left) }, (_, i) => ({
          purchase: purchase(`event-${i % events}`),
        })),
      );
    }
    send({ done: count });
  } else if (role === 'worker') {
    // A stable id per worker slot: the table queues keep a worker's lease on an event after its ack.
    const [slot] = rest;
    let done = 0;
    let lastAckAt = Date.now();
    while (Date.now() - lastAckAt < 1500) {
      const batch = await queue.claim(`w-${slot}`, 500, 30_000);
      if (!batch) {
        await new Promise((r) => setTimeout(r, 5));
        continue;
      }
      await queue.ack(batch);
      done += batch.purchases.length;
      lastAckAt = Date.now();
    }
    send({ done, lastAckAt });
  }
  await queue.close();
}

function send(report: ChildReport): void {
  process.send!(report);
}

function run(args: string[]): Promise<ChildReport> {
  return new Promise((resolve, reject) => {
    const p = fork(new URL(import.meta.url), args, { stdio: 'inherit' });
    let result: ChildReport | undefined;
    p.on('message', (m) => (result = m as ChildReport));
    p.on('exit', (code) =>
      code === 0 && result ? resolve(result) : reject(new Error(`child exited ${code}`)),
    );
  });
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? NaN;
}

async function main() {
  const [
    url,
    db,
    writersArg = '1,2,4',
    batchesArg = '1,50,500',
    secondsArg = '5',
    drainArg = '50000',
    workersArg = '1,2',
  ] = process.argv.slice(2);
  if (url === undefined || db === undefined) {
    console.error(
      'usage: node build/bench/queue-throughput.js QUEUE_URL DATABASE_URL [writers=1,2,4] [batches=1,50,500] ' +
        '[seconds=5] [drain=50000] [workers=1,2]',
    );
    process.exit(2);
  }
  const seconds = Number(secondsArg);
  console.log(`queue ${url.replace(/:[^:@/]*@/, ':***@')}, index/database ${db}`);
  for (const batch of batchesArg.split(',').map(Number)) {
    for (const writers of writersArg.split(',').map(Number)) {
      const results = await Promise.all(
        Array.from({ length: writers }, () => run(['writer', url, db, String(batch), String(seconds), '8'])),
      );
      const done = results.reduce((s, r) => s + r.done, 0);
      const latencies = results.flatMap((r) => r.latencies ?? []);
      console.log(
        `accept  batch ${String(batch).padStart(4)}  writers ${writers}: ${Math.round(done / seconds)
          .toString()
          .padStart(
            6,
          )} purchases/s, enqueue p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms, ` +
          `writer CPU ${(results.reduce((s, r) => s + (r.cpuMicros ?? 0), 0) / Math.max(1, done)).toFixed(0)} µs/purchase` +
          (results.some((r) => r.refused)
            ? `, refused ${results.reduce((s, r) => s + (r.refused ?? 0), 0)} (${[...new Set(results.flatMap((r) => r.errors ?? []))].join('; ')})`
            : ''),
      );
    }
  }
  // Drain whatever the accept runs left first, then measure on a known backlog.
  await Promise.all([run(['worker', url, db, '0']), run(['worker', url, db, '1'])]);
  for (const workers of workersArg.split(',').map(Number)) {
    await run(['fill', url, db, drainArg, '8']);
    // From the workers' start (their connecting included) to the last ack, without the idle wait after it.
    const started = Date.now();
    const results = await Promise.all(
      Array.from({ length: workers }, (_, i) => run(['worker', url, db, String(i)])),
    );
    const done = results.reduce((s, r) => s + r.done, 0);
    const seconds = (Math.max(...results.map((r) => r.lastAckAt ?? started)) - started) / 1000;
    console.log(
      `drain   ${done} purchases (8 events), workers ${workers}: ${Math.round(done / seconds)} purchases/s (${seconds.toFixed(1)} s)`,
    );
  }
}

if (role !== undefined && ['writer', 'fill', 'worker'].includes(role)) await child();
else await main();
