/**
 * Run as its own process by metrics-cost.ts: times what the web server records per accepted purchase (what
 * observability's onResponse hook does) and prints the nanoseconds per purchase. A process of its own because
 * enabling metrics also starts the process defaults (GC and event-loop observers), which must not run on in
 * the bench's process, where later parts play the simulator.
 */
import { countAccepted, enableMetrics, observeRequest } from '../src/metrics/metrics.js';

enableMetrics();
const record = () => {
  observeRequest('/api/events/:eventId/purchases', 'POST', 202, 0.003);
  countAccepted();
};
const n = 1_000_000;
for (let i = 0; i < n / 10; i++) record(); // warm-up: JIT, label children
const started = process.hrtime.bigint();
for (let i = 0; i < n; i++) record();
process.stdout.write(`${Number(process.hrtime.bigint() - started) / n}\n`);
// The default metrics' timers would keep the process alive.
process.exit(0);
