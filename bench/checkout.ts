import { openStorage } from '../src/adapters/index.js';
import type { CheckoutMix } from '../src/simulate/checkout.js';
import { simulate, type SimulationReport } from '../src/simulate/run.js';
import { contenderName, saleCrowd, startContender, type Contender } from './sale.js';

/**
 * The bench's `checkout` part: the standard sale with holds and a realistic buyer mix, beside the same sale
 * without holds, on the embedded engine and on PostgreSQL + Redis, in one run. The holds are 10 s for the
 * run (the API takes 30 s at the least; the event is made in storage directly), so that the abandoned
 * holds come back, and the waitlist is served, within the run.
 */

/** 70 % pay, 20 % abandon, 10 % are declined and pay again. */
export const REALISTIC_MIX: CheckoutMix = {
  pay: 0.7,
  abandon: 0.2,
  decline_then_pay: 0.1,
  three_d_secure: 0,
  cancel: 0,
};
export const BENCH_HOLD_SECONDS = 10;

/** One run's figures: tickets confirmed per second, the time until every purchase is final, and checks. */
export interface CheckoutRun {
  ticketsConfirmed: number;
  ticketsConfirmedPerSec: number;
  allFinalSec: number | null;
  requestsPerSec: number;
  ackP99Ms: number;
  /** The simulator's CPU per request and the machine's busy cores while sending (who was the limit). */
  clientCpuMsPerRequest: number;
  machineBusyCores: number | null;
  checkout: SimulationReport['checkout'];
  invariantsOk: boolean;
  violated: string[];
  /** What broke them, as the checks say it (the first few). */
  violations: string[];
}

export interface CheckoutEngineFigures {
  engine: string;
  withoutHolds: CheckoutRun;
  withHolds: CheckoutRun;
  /** Tickets confirmed per second with holds ÷ without. */
  ratio: number;
}

/** Violations a run keeps in its figures and prints: enough to start looking. */
const SHOWN_VIOLATIONS = 5;

function runOf(r: SimulationReport): CheckoutRun {
  return {
    ticketsConfirmed: r.checkout.ticketsConfirmed,
    ticketsConfirmedPerSec: r.checkout.ticketsConfirmedPerSec,
    allFinalSec: r.checkout.allFinalSec,
    requestsPerSec: Math.round(r.requestsPerSec),
    ackP99Ms: r.ackLatencyMs.p99,
    clientCpuMsPerRequest: r.clientCpuMsPerRequest,
    machineBusyCores: r.clientCpu.machineBusyCores,
    checkout: r.checkout,
    invariantsOk: r.invariants.ok,
    violated: [...new Set(r.invariants.violations.map((v) => v.invariant))],
    violations: r.invariants.violations.slice(0, SHOWN_VIOLATIONS).map((v) => `${v.invariant}: ${v.detail}`),
  };
}

/** The standard sale's event (3 types sharing `tickets`, as the simulator makes it), with `holdSeconds`. */
async function createSaleEvent(databaseUrl: string, tickets: number, holdSeconds: number): Promise<string> {
  const storage = await openStorage(databaseUrl);
  try {
    const each = Math.floor(tickets / 3);
    const event = await storage.createEvent({
      name: `Checkout bench, holds ${holdSeconds} s`,
      salesOpenAt: new Date().toISOString(),
      holdSeconds,
      ticketTypes: ['General admission', 'Early entry', 'Balcony'].map((name, i) => ({
        name,
        priceCents: 2500 * (i + 1),
        capacity: each + (i === 0 ? tickets - each * 3 : 0),
        maxPerBuyer: 4,
      })),
    });
    return event.id;
  } finally {
    await storage.close();
  }
}

/** One sale on a fresh `onsale start`: with holds and the mix, or without holds. */
async function playOne(
  c: Contender,
  plan: { buyers: number; tickets: number },
  holds: boolean,
  urls: { postgres: string; redis: string },
): Promise<CheckoutRun> {
  const running = await startContender(c, urls);
  try {
    const eventId = await createSaleEvent(running.databaseUrl!, plan.tickets, holds ? BENCH_HOLD_SECONDS : 0);
    const report = await simulate({
      ...saleCrowd(plan.buyers, plan.tickets),
      url: running.url,
      adminToken: running.adminToken,
      eventId,
      ...(holds ? { checkout: REALISTIC_MIX } : {}),
    });
    return runOf(report);
  } finally {
    await running.stop();
  }
}

export async function measureCheckout(
  plan: { buyers: number; tickets: number },
  urls: { postgres: string; redis: string },
  progress: (line: string) => void,
): Promise<CheckoutEngineFigures[]> {
  const contenders: Contender[] = [
    { kind: 'onsale', engine: 'embedded' },
    { kind: 'onsale', engine: 'postgres+redis' },
  ];
  const figures: CheckoutEngineFigures[] = [];
  for (const c of contenders) {
    const name = contenderName(c);
    const line = (label: string, r: CheckoutRun) =>
      progress(
        `checkout: ${name}, ${label}: ${r.ticketsConfirmed} tickets confirmed, ${r.ticketsConfirmedPerSec}/s, ` +
          `all final after ${r.allFinalSec ?? 'never'} s, invariants ` +
          `${r.invariantsOk ? 'kept' : `BROKEN (${r.violated.join(', ')})`}` +
          r.violations.map((v) => `\n  ${v}`).join(''),
      );
    const withoutHolds = await playOne(c, plan, false, urls);
    line('without holds', withoutHolds);
    const withHolds = await playOne(c, plan, true, urls);
    line(`holds ${BENCH_HOLD_SECONDS} s + mix`, withHolds);
    figures.push({
      engine: name,
      withoutHolds,
      withHolds,
      ratio: withHolds.ticketsConfirmedPerSec / Math.max(withoutHolds.ticketsConfirmedPerSec, 1),
    });
  }
  return figures;
}
