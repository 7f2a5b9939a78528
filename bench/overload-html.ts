import { COLORS, documentHead, esc } from '../src/simulate/html.js';
import { int } from '../src/shared/format.js';
import { OVERLOAD_P99_GOAL_MS, type OverloadFigures } from './overload.js';

/**
 * The overload race as one self-contained HTML page in the simulator report's style (its stylesheet, colours
 * and strict CSP): a table per contender and the p99 latency of each second per contender, on a log scale
 * so that onsale's milliseconds and a shop's seconds both read.
 */
export function renderOverloadHtml(
  f: OverloadFigures,
  meta: { startedAt: string; loadAverage: string },
): string {
  const rows = f.contenders
    .map(
      (c) =>
        `<tr><td>${esc(c.name)}</td><td>${int(c.answered)} / ${int(c.requests)}</td><td>${int(c.timeouts)}</td>` +
        `<td>${int(c.errors)}</td><td>${int(c.shed)}</td><td>${c.ackP50Ms.toFixed(1)}</td><td>${c.ackP99Ms.toFixed(1)}</td>` +
        `<td>${int(c.ticketsPerSec)}</td><td class="${c.invariantsOk ? 'ok' : 'bad'}">${c.invariantsOk ? 'kept' : 'BROKEN'}</td></tr>`,
    )
    .join('');
  return `${documentHead('Overload race')}
<body>
<header>
<h1>The overload race</h1>
<p class="sub">bench part overload · started ${esc(meta.startedAt)} · load average ${esc(meta.loadAverage)} · open loop at <b>${int(f.ratePerSec)} purchases/s</b> (${f.plan.rateMultiple}× the ${int(f.advisoryLockSustainedPerSec)}/s the advisory-lock shop sustains) for ${f.plan.durationSec} s, ${f.plan.timeoutMs / 1000} s timeout</p>
</header>
<section><h2>p99 acknowledgement latency of each second (log scale; a timeout counts as ${f.plan.timeoutMs / 1000} s)</h2>${logChart(f)}</section>
<section><h2>Per contender</h2>
<table class="overload"><thead><tr><th>contender</th><th>answered in time</th><th>timeouts</th><th>errors</th><th>shed (Retry-After)</th><th>ack p50 ms</th><th>ack p99 ms</th><th>tickets/s</th><th>invariants</th></tr></thead><tbody>${rows}</tbody></table>
</section>
<footer>bench/overload.ts · goal for onsale: 0 timeouts, 0 errors, ack p99 ≤ ${OVERLOAD_P99_GOAL_MS} ms</footer>
</body>
</html>
`;
}

/** One line per contender: the p99 of each second, on a log axis from 1 ms to the timeout. */
function logChart(f: OverloadFigures): string {
  const W = 1000;
  const h = 300;
  const pad = { l: 60, r: 16, t: 14, b: 30 };
  const seconds = f.plan.durationSec;
  const lo = 1;
  const hi = Math.max(10, f.plan.timeoutMs);
  const x = (i: number) => pad.l + ((W - pad.l - pad.r) * i) / Math.max(1, seconds - 1);
  const y = (v: number) =>
    pad.t + (h - pad.t - pad.b) * (1 - Math.log10(Math.max(lo, v) / lo) / Math.log10(hi / lo));
  const marks = [1, 10, 100, 1000, hi].filter((v, k, all) => v <= hi && all.indexOf(v) === k);
  const grid = marks
    .map(
      (v) =>
        `<line x1="${pad.l}" x2="${W - pad.r}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#e3e6ee"/>` +
        `<text x="${pad.l - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v >= 1000 ? `${v / 1000} s` : `${v} ms`}</text>`,
    )
    .join('');
  const goal = `<line x1="${pad.l}" x2="${W - pad.r}" y1="${y(OVERLOAD_P99_GOAL_MS).toFixed(1)}" y2="${y(OVERLOAD_P99_GOAL_MS).toFixed(1)}" stroke="#c0262d" stroke-dasharray="4 4"><title>goal: p99 ≤ ${OVERLOAD_P99_GOAL_MS} ms</title></line>`;
  const step = Math.max(1, Math.ceil(seconds / 10));
  const ticks = Array.from({ length: seconds }, (_, i) => i)
    .filter((i) => i % step === 0)
    .map((i) => `<text x="${x(i)}" y="${h - 10}" text-anchor="middle">${i} s</text>`)
    .join('');
  const lines = f.contenders
    .map((c, k) => {
      const points = c.perSecond
        .map((s, i) => (s === null ? null : `${x(i).toFixed(1)},${y(s.p99).toFixed(1)}`))
        .filter((p): p is string => p !== null);
      return `<polyline class="series" fill="none" stroke="${COLORS[k % COLORS.length]}" stroke-width="2.2" points="${points.join(' ')}"><title>${esc(c.name)}</title></polyline>`;
    })
    .join('');
  const legend = f.contenders
    .map((c, k) => `<span><i class="${['la', 'lb', 'lc', 'ld'][k % 4]}"></i>${esc(c.name)}</span>`)
    .join('');
  return `<svg class="chart" viewBox="0 0 ${W} ${h}" role="img" aria-label="p99 latency per second per contender">${grid}${goal}${ticks}${lines}</svg><div class="legend">${legend}</div>`;
}
