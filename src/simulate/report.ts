import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { SimulateFlags } from './flags.js';
import { mixOf } from './checkout.js';
import { checkoutLines } from './checkout-summary.js';
import { clientCpuLine } from './cost.js';
import { renderHtml } from './html.js';
import { simulate, type Progress, type SimulationReport } from './run.js';
import { int } from '../shared/format.js';

/** One line of live progress: what was sent, what became of it, how fast, how long, what is left. */
export function progressLine(p: Progress): string {
  return (
    `${p.elapsedSec.toFixed(1).padStart(6)} s  sent ${int(p.sent)}  accepted ${int(p.accepted)}  ` +
    `refused ${int(p.refused)}  queued ${int(p.queued)}  following ${int(p.following)}  ` +
    `confirmed ${int(p.confirmed)}  ` +
    `rejected ${int(p.rejected)}  ${int(p.requestsPerSec)} req/s  ` +
    `ack p50 ${p.ackP50Ms.toFixed(1)} / p99 ${p.ackP99Ms.toFixed(1)} ms  ` +
    `tickets left ${p.ticketsLeft === null ? '?' : int(p.ticketsLeft)}`
  );
}

/**
 * Progress on stderr: on a terminal, a bar and one line redrawn in place four times a second; otherwise a
 * plain log line every two seconds, which reads well in CI logs and files.
 */
function progressPrinter(): (p: Progress) => void {
  const tty = process.stderr.isTTY === true;
  let lastLog = 0;
  return (p) => {
    if (tty) {
      const width = 24;
      const done = Math.min(width, Math.round((width * p.answered) / Math.max(1, p.planned)));
      const bar = `[${'#'.repeat(done)}${'.'.repeat(width - done)}]`;
      const line = `${bar} ${progressLine(p)}`.slice(0, Math.max(40, (process.stderr.columns ?? 200) - 1));
      process.stderr.write(`\r\x1b[2K${line}`);
    } else if (p.elapsedSec - lastLog >= 2) {
      lastLog = p.elapsedSec;
      process.stderr.write(`[simulate] ${progressLine(p)}\n`);
    }
  };
}

/** The report in a few lines, for the terminal. */
export function summary(r: SimulationReport): string {
  const t = r.totals;
  const lines = [
    `event ${r.eventId} (${r.eventName}) at ${r.url}`,
    `${int(t.buyers)} buyers, ${int(t.requests)} purchases, ${int(t.attempts)} requests in ${r.durationSec.toFixed(1)} s ` +
      `(${int(r.requestsPerSec)} req/s while sending)`,
    `accepted ${int(t.accepted)}, confirmed ${int(t.confirmed)}, rejected ${int(t.rejected)}, not final ${int(t.notFinal)}, ` +
      `gave up ${int(t.gaveUp)}`,
    `tickets sold ${int(t.ticketsSold)} of ${int(t.capacity)}; sold out after ` +
      `${r.timeToSellOutSec === null ? 'never' : `${r.timeToSellOutSec.toFixed(2)} s`}`,
    clientCpuLine(r),
    `ack latency ms p50 ${r.ackLatencyMs.p50} p90 ${r.ackLatencyMs.p90} p99 ${r.ackLatencyMs.p99} max ${r.ackLatencyMs.max}`,
    `end-to-end ms p50 ${r.endToEndLatencyMs.p50} p90 ${r.endToEndLatencyMs.p90} p99 ${r.endToEndLatencyMs.p99} ` +
      `max ${r.endToEndLatencyMs.max}`,
    `refusals: ${JSON.stringify(r.refusals)}; rejections: ${JSON.stringify(r.rejections)}`,
    ...checkoutLines(r.checkout),
    r.invariants.ok
      ? `invariants: all held (${r.invariants.checked.join(', ')})`
      : `INVARIANTS BROKEN:\n${r.invariants.violations.map((v) => `  ${v.invariant}: ${v.detail}`).join('\n')}`,
  ];
  return `${lines.join('\n')}\n`;
}

/** The buyer mix the flags give (checked by the command: the rates add up to 1 at most). */
function checkoutOf(flags: SimulateFlags) {
  const mix = mixOf(flags);
  return 'tooMuch' in mix ? {} : { checkout: mix };
}

export function write(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

/** Runs `onsale simulate` and returns its exit status: 0 when every invariant held, 1 otherwise. */
export async function runSimulateCommand(
  flags: SimulateFlags,
  adminToken: string,
  tickets: number,
): Promise<number> {
  let report: SimulationReport;
  // Ctrl+C or SIGTERM: exiting runs the exit hook that stops the child processes (processes.ts).
  const interrupted = (signal: NodeJS.Signals) => {
    process.stderr.write(`\nonsale simulate: ${signal}: stopping\n`);
    process.exit(130);
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    report = await simulate(
      {
        url: flags.url,
        adminToken,
        ...(flags.event ? { eventId: flags.event } : {}),
        buyers: flags.buyers,
        repeat: flags.repeat,
        arrival: flags.arrival,
        durationSec: flags.duration,
        ticketTypes: flags.ticketTypes,
        tickets,
        maxPerBuyer: flags.maxPerBuyer,
        maxQuantity: flags.maxQuantity,
        connections: flags.connections,
        followers: flags.followers,
        follow: flags.follow,
        settleSec: flags.settle,
        retries: flags.retries,
        seed: flags.seed,
        processes: flags.processes,
        ...(flags.holdSeconds ? { holdSeconds: flags.holdSeconds } : {}),
        ...(flags.priceCents === undefined ? {} : { priceCents: flags.priceCents }),
        ...checkoutOf(flags),
      },
      progressPrinter(),
    );
  } catch (error) {
    process.stderr.write(`\nonsale simulate: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
  if (process.stderr.isTTY) process.stderr.write('\n');
  if (flags.reportJson) write(flags.reportJson, `${JSON.stringify(report, null, 2)}\n`);
  if (flags.reportHtml) write(flags.reportHtml, renderHtml(report));
  process.stdout.write(summary(report));
  return report.invariants.ok ? 0 : 1;
}
