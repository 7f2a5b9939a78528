import type { SimulateFlags } from './flags.js';
import { documentHead, esc, lineChart } from './html.js';
import { write } from './report.js';
import { simulateWaitingRoom, type RoomReport } from './waiting-room.js';
import { int } from '../shared/format.js';

/** The report of `onsale simulate --waiting-room` for the terminal, as JSON and as one HTML page. */

const seconds = (n: number | null) => (n === null ? 'n/a' : `${n.toFixed(1)} s`);

/** The headline figures, as label and value: the terminal summary and the HTML cards show the same. */
function figures(r: RoomReport): Array<[string, string]> {
  const e = r.estimate;
  return [
    ['buyers', int(r.totals.buyers)],
    ['joined (pre-queue)', `${int(r.totals.joined)} (${int(r.totals.prequeued)})`],
    ['admitted (seen)', int(r.totals.admitted)],
    ['abandoned places', int(r.totals.abandoned)],
    ['told sold out', int(r.totals.soldOutTold)],
    ['wait p50 / p90 / max', `${r.waitSec.p50} / ${r.waitSec.p90} / ${r.waitSec.max} s`],
    [
      'estimate error (median)',
      e.medianAbsErrorSec === null
        ? `none told (${int(e.buyers)})`
        : `${e.medianAbsErrorSec.toFixed(1)} s = ${e.errorPctOfWait ?? 'n/a'} % of ${seconds(e.medianWaitSec)}`,
    ],
    [
      'admissions / minute',
      `mean ${int(r.admissionsPerMinute.mean)}, peak ${int(r.admissionsPerMinute.peak)}`,
    ],
    ['sold out after opening', seconds(r.timeToSellOutSec)],
    [
      'purchases after sold out',
      `${int(r.afterSoldOut.purchases)} (admitted after: ${int(r.afterSoldOut.admittedAfterSoldOut)})`,
    ],
    ['tickets sold', `${int(r.totals.ticketsSold)} / ${int(r.totals.capacity)}`],
  ];
}

export function roomSummary(r: RoomReport): string {
  const t = r.totals;
  const lines = [
    `event ${r.eventId} (${r.eventName}) at ${r.url}; sales opened ${r.salesOpenAt}`,
    ...figures(r).map(([k, v]) => `${k}: ${v}`),
    `place reads ${int(t.placeReads)}; purchases ${int(t.purchases)}, accepted ${int(t.accepted)}, ` +
      `confirmed ${int(t.confirmed)}, rejected ${int(t.rejected)}; unfinished ${int(t.unfinished)}, ` +
      `gave up ${int(t.gaveUp)}, expired ${int(t.expired)}`,
    r.server
      ? `the server's line: admitted ${int(r.server.admitted)}, expired ${int(r.server.expired)}, ` +
        `waiting ${int(r.server.waiting)}, active ${int(r.server.active)}, sold out ${r.server.soldOut}`
      : "the server's line: unreadable",
    r.checks.ok
      ? 'checks: all held (admission order, positions never grow, no oversell, nothing lost, no double effect, ' +
        'per-buyer limit, first come first served)'
      : `CHECKS BROKEN:\n${r.checks.violations
          .map((v) => `  ${'check' in v ? v.check : v.invariant}: ${v.detail}`)
          .join('\n')}`,
  ];
  return `${lines.join('\n')}\n`;
}

export function renderRoomHtml(r: RoomReport): string {
  const length = Math.max(1, ...r.timeline.map((s) => s.second + 1));
  const bySecond = (pick: (s: RoomReport['timeline'][number]) => number | null) => {
    const values: Array<number | null> = Array.from({ length }, () => null);
    for (const s of r.timeline) values[s.second] = pick(s);
    return values;
  };
  const violations = r.checks.violations
    .map(
      (v) =>
        `<li class="bad"><b>✗ ${esc('check' in v ? v.check : v.invariant)}</b><div class="detail">${esc(v.detail)}</div></li>`,
    )
    .join('');
  return `${documentHead(`Waiting room: ${r.eventName}`)}
<body>
<header>
<h1>Sale behind a waiting room</h1>
<p class="sub">${esc(r.eventName)} · ${esc(r.url)} · event ${esc(r.eventId)} · started ${esc(r.startedAt)} · sales opened ${esc(r.salesOpenAt)} · ${r.durationSec.toFixed(1)} s</p>
<p class="verdict ${r.checks.ok ? 'ok' : 'bad'}">${r.checks.ok ? 'Every check held' : `${r.checks.violations.length} check(s) broken`}</p>
</header>
<section class="cards">${figures(r)
    .map(([k, v]) => `<div class="card"><span>${esc(k)}</span><b>${esc(v)}</b></div>`)
    .join('')}</section>
<section><h2>The line</h2>${lineChart(
    length,
    [
      { name: 'waiting', values: bySecond((s) => s.waiting) },
      { name: 'admitted (total)', values: bySecond((s) => s.admitted) },
      { name: 'active buyers', values: bySecond((s) => s.active) },
    ],
    'places',
  )}</section>
<section><h2>Tickets left</h2>${lineChart(length, [{ name: 'tickets left', values: bySecond((s) => s.ticketsLeft) }], 'tickets')}</section>
<section><h2>Checks</h2><ul class="invariants">${violations || '<li class="ok"><b>✓ admission order, positions never grow, and the invariants of the API</b></li>'}</ul></section>
<footer>onsale simulate --waiting-room · ${esc(JSON.stringify(r.options))}</footer>
</body>
</html>
`;
}

/** Runs `onsale simulate --waiting-room`; its exit status: 0 when every check held, 1 otherwise. */
export async function runRoomCommand(
  flags: SimulateFlags,
  adminToken: string,
  tickets: number,
): Promise<number> {
  const interrupted = (signal: NodeJS.Signals) => {
    process.stderr.write(`\nonsale simulate: ${signal}: stopping\n`);
    process.exit(130);
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  let report: RoomReport;
  let lastLog = 0;
  try {
    report = await simulateWaitingRoom(
      {
        url: flags.url,
        adminToken,
        ...(flags.event ? { eventId: flags.event } : {}),
        buyers: flags.buyers,
        arrival: flags.arrival,
        durationSec: flags.duration,
        ticketTypes: flags.ticketTypes,
        tickets,
        maxPerBuyer: flags.maxPerBuyer,
        maxQuantity: flags.maxQuantity,
        maxActiveBuyers: flags.maxActiveBuyers,
        maxAdmittedPerMinute: flags.maxAdmittedPerMinute ?? null,
        prequeueSec: flags.prequeue,
        sessionSeconds: flags.sessionSeconds,
        abandonPlaceRate: flags.abandonPlaceRate,
        connections: flags.connections,
        settleSec: flags.settle,
        retries: flags.retries,
        seed: flags.seed,
      },
      (line) => {
        if (Date.now() - lastLog < 2000) return;
        lastLog = Date.now();
        process.stderr.write(`[simulate] ${line}\n`);
      },
    );
  } catch (error) {
    process.stderr.write(`\nonsale simulate: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
  if (flags.reportJson) write(flags.reportJson, `${JSON.stringify(report, null, 2)}\n`);
  if (flags.reportHtml) write(flags.reportHtml, renderRoomHtml(report));
  process.stdout.write(roomSummary(report));
  return report.checks.ok ? 0 : 1;
}
