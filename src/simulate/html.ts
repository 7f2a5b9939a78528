import { createHash } from 'node:crypto';
import { checkoutRows } from './checkout-summary.js';
import { clientCpuLine } from './cost.js';
import type { Percentiles } from './stats.js';
import type { SimulationReport } from './run.js';
import { int } from '../shared/format.js';

/**
 * The simulation report as one self-contained HTML page: inline CSS and SVG charts, no script, no external
 * request. Its Content-Security-Policy allows nothing but its own stylesheet (by hash), so it renders the same
 * when served under a strict CSP or opened from disk.
 */
export function renderHtml(report: SimulationReport): string {
  const t = report.totals;
  const inv = report.invariants;
  const cards: Array<[string, string]> = [
    ['buyers', int(t.buyers)],
    ['requests sent', int(t.attempts)],
    ['accepted', int(t.accepted)],
    ['tickets sold', `${int(t.ticketsSold)} / ${int(t.capacity)}`],
    [
      'sold out after',
      report.timeToSellOutSec === null ? 'not sold out' : `${report.timeToSellOutSec.toFixed(1)} s`,
    ],
    ['requests/s', int(report.requestsPerSec)],
    ['simulator CPU / request', `${report.clientCpuMsPerRequest.toFixed(3)} ms`],
    ['one simulator core', `${int(report.clientRequestsPerCoreSec)} req/s`],
    ['ack p99', `${report.ackLatencyMs.p99.toFixed(1)} ms`],
    ['end-to-end p99', `${(report.endToEndLatencyMs.p99 / 1000).toFixed(2)} s`],
  ];
  return `${documentHead(`Flash sale: ${report.eventName}`)}
<body>
<header>
<h1>Flash sale simulation</h1>
<p class="sub">${esc(report.eventName)} · ${esc(report.url)} · event ${esc(report.eventId)} · started ${esc(report.startedAt)} · ${report.durationSec.toFixed(1)} s · arrival <b>${esc(report.options.arrival)}</b></p>
<p class="verdict ${inv.ok ? 'ok' : 'bad'}">${inv.ok ? 'All invariants held' : `${inv.violations.length} invariant violation(s)`}</p>
</header>
<section class="cards">${cards.map(([k, v]) => `<div class="card"><span>${esc(k)}</span><b>${esc(v)}</b></div>`).join('')}</section>
<p class="cost">${esc(clientCpuLine(report))}. ${esc(report.clientCpu.includes)}.</p>
<section><h2>Checkout</h2><div class="cards">${checkoutRows(report.checkout)
    .map(([k, v]) => `<div class="card"><span>${esc(k)}</span><b>${esc(v)}</b></div>`)
    .join('')}</div></section>
<section><h2>Throughput over time</h2>${throughputChart(report)}</section>
<section><h2>Tickets left</h2>${ticketsChart(report)}</section>
<section class="two">
<div><h2>Acknowledgement latency</h2>${latencyChart(report.ackLatencyMs, 'ms')}</div>
<div><h2>End-to-end latency (sent → final)</h2>${latencyChart(report.endToEndLatencyMs, 'ms')}</div>
</section>
<section class="two">
<div><h2>Refused answers, by reason</h2>${barList(report.refusals, 'none: every request was accepted')}</div>
<div><h2>Final rejections, by reason</h2>${barList(report.rejections, 'none')}</div>
</section>
<section><h2>Stock per ticket type</h2>${stockChart(report)}</section>
<section><h2>Invariants (api.md), checked from outside</h2>
<ul class="invariants">${inv.checked
    .map((name) => {
      const broken = inv.violations.filter((v) => v.invariant === name);
      return `<li class="${broken.length ? 'bad' : 'ok'}"><b>${broken.length ? '✗' : '✓'} ${esc(name.replaceAll('_', ' '))}</b>${broken
        .map((v) => `<div class="detail">${esc(v.detail)}</div>`)
        .join('')}</li>`;
    })
    .join('')}</ul>
</section>
<footer>onsale simulate · ${esc(JSON.stringify(report.options))}</footer>
</body>
</html>
`;
}

/**
 * The page up to </head>: the stylesheet inline, and a Content-Security-Policy that allows nothing but it (by
 * hash). Shared with the waiting-room report and the bench's overload chart, which looks the same.
 */
export function documentHead(title: string): string {
  const hash = createHash('sha256').update(STYLE).digest('base64');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'sha256-${hash}'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${STYLE}</style>
</head>`;
}

export const STYLE = `
:root{color-scheme:light;--ink:#1d2433;--muted:#6b7385;--line:#e3e6ee;--ok:#17804a;--bad:#c0262d;--a:#3867d6;--b:#20bf6b;--c:#fa8231;--d:#8854d0}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);margin:0 auto;max-width:1100px;padding:24px}
h1{margin:0 0 4px;font-size:26px}
h2{font-size:16px;margin:0 0 8px}
.sub{color:var(--muted);margin:0 0 12px}
.verdict{display:inline-block;padding:6px 14px;border-radius:999px;font-weight:600;color:#fff}
.verdict.ok{background:var(--ok)}.verdict.bad{background:var(--bad)}
section{margin:22px 0}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px}
.card{border:1px solid var(--line);border-radius:10px;padding:10px 12px}
.card span{display:block;color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card b{font-size:20px}
.two{display:grid;grid-template-columns:1fr 1fr;gap:24px}
svg{width:100%;height:auto;display:block}
svg text{font:11px system-ui,sans-serif;fill:var(--muted)}
svg .label{fill:var(--ink)}
.legend{display:flex;gap:14px;font-size:13px;color:var(--muted);margin-top:4px}
.legend i{display:inline-block;width:12px;height:3px;vertical-align:middle;margin-right:4px}
.la{background:var(--a)}.lb{background:var(--b)}.lc{background:var(--c)}.ld{background:var(--d)}
.invariants{list-style:none;padding:0;margin:0}
.invariants li{padding:8px 12px;border-left:4px solid var(--ok);margin:6px 0;background:#f6faf7}
.invariants li.bad{border-color:var(--bad);background:#fdf3f3}
.invariants .ok b{color:var(--ok)}.invariants .bad b{color:var(--bad)}
.detail{font:12px ui-monospace,monospace;color:var(--ink);margin-top:2px}
.empty{color:var(--muted)}
.cost{color:var(--muted);font-size:13px;margin:10px 0 0}
footer{color:var(--muted);font:11px ui-monospace,monospace;margin-top:30px;word-break:break-all}
@media (max-width:700px){.two{grid-template-columns:1fr}}
`;

export const COLORS = ['#3867d6', '#20bf6b', '#fa8231', '#8854d0'];
const W = 1000;

export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/** A rounded axis maximum: 1, 2 or 5 times a power of ten. */
function niceMax(n: number): number {
  if (n <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(n));
  return ([1, 2, 5, 10].find((m) => m * p >= n) ?? 10) * p;
}

export function lineChart(
  seconds: number,
  series: Array<{ name: string; values: Array<number | null> }>,
  unit: string,
): string {
  const h = 260;
  const pad = { l: 60, r: 16, t: 12, b: 30 };
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values.filter((v): v is number => v !== null))));
  const x = (i: number) => pad.l + ((W - pad.l - pad.r) * i) / Math.max(1, seconds - 1);
  const y = (v: number) => pad.t + (h - pad.t - pad.b) * (1 - v / max);
  const grid = [0, 0.25, 0.5, 0.75, 1]
    .map(
      (f) =>
        `<line x1="${pad.l}" x2="${W - pad.r}" y1="${y(max * f)}" y2="${y(max * f)}" stroke="#e3e6ee"/>` +
        `<text x="${pad.l - 6}" y="${y(max * f) + 4}" text-anchor="end">${int(max * f)}</text>`,
    )
    .join('');
  const step = Math.max(1, Math.ceil(seconds / 10));
  const ticks = Array.from({ length: seconds }, (_, i) => i)
    .filter((i) => i % step === 0)
    .map((i) => `<text x="${x(i)}" y="${h - 10}" text-anchor="middle">${i} s</text>`)
    .join('');
  const lines = series
    .map((s, k) => {
      const points = s.values
        .map((v, i) => (v === null ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`))
        .filter((p): p is string => p !== null);
      if (points.length === 1) points.push(points[0]!.replace(/^[\d.]+/, (px) => String(Number(px) + 4)));
      return `<polyline class="series" fill="none" stroke="${COLORS[k % COLORS.length]}" stroke-width="2.2" points="${points.join(' ')}"><title>${esc(s.name)}</title></polyline>`;
    })
    .join('');
  const legend = series
    .map((s, k) => `<span><i class="${['la', 'lb', 'lc', 'ld'][k % 4]}"></i>${esc(s.name)}</span>`)
    .join('');
  return `<svg class="chart" viewBox="0 0 ${W} ${h}" role="img" aria-label="${esc(series.map((s) => s.name).join(', '))} per second">${grid}${ticks}<text x="${pad.l}" y="${pad.t - 2}">${esc(unit)}</text>${lines}</svg><div class="legend">${legend}</div>`;
}

function throughputChart(r: SimulationReport): string {
  const tl = r.timeline;
  return lineChart(
    tl.length,
    [
      { name: 'requests sent', values: tl.map((s) => s.sent) },
      { name: 'accepted (202)', values: tl.map((s) => s.accepted) },
      { name: 'confirmed', values: tl.map((s) => s.confirmed) },
      { name: 'rejected', values: tl.map((s) => s.rejected) },
    ],
    'per second',
  );
}

function ticketsChart(r: SimulationReport): string {
  return lineChart(
    r.timeline.length,
    [{ name: 'tickets left (exact stock)', values: r.timeline.map((s) => s.ticketsLeft) }],
    'tickets',
  );
}

/** Horizontal bars, drawn half as wide as the line charts: they sit two to a row. */
function hbars(rows: Array<[string, number, string]>): string {
  const rowH = 26;
  const max = Math.max(1, ...rows.map(([, v]) => v));
  const left = 150;
  const W = 520;
  const bars = rows
    .map(([label, v, text], i) => {
      const w = ((W - left - 90) * v) / max;
      const y = i * rowH;
      return (
        `<text class="label" x="${left - 8}" y="${y + 18}" text-anchor="end">${esc(label)}</text>` +
        `<rect class="bar" x="${left}" y="${y + 5}" width="${Math.max(1, w).toFixed(1)}" height="18" rx="3" fill="${COLORS[i % COLORS.length]}"/>` +
        `<text x="${left + Math.max(1, w) + 6}" y="${y + 18}">${esc(text)}</text>`
      );
    })
    .join('');
  return `<svg class="chart" viewBox="0 0 ${W} ${rows.length * rowH + 6}" role="img">${bars}</svg>`;
}

function latencyChart(p: Percentiles, unit: string): string {
  if (p.count === 0) return '<p class="empty">no sample</p>';
  const fmt = (v: number) => (v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(1)} ${unit}`);
  return hbars([
    ['p50', p.p50, fmt(p.p50)],
    ['p90', p.p90, fmt(p.p90)],
    ['p99', p.p99, fmt(p.p99)],
    ['p99.9', p.p999, fmt(p.p999)],
    ['max', p.max, fmt(p.max)],
  ]);
}

function barList(counts: Record<string, number>, empty: string): string {
  const rows = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  if (rows.length === 0) return `<p class="empty">${esc(empty)}</p>`;
  return hbars(rows.map(([k, v]) => [k.replaceAll('_', ' '), v, int(v)]));
}

function stockChart(r: SimulationReport): string {
  const rowH = 34;
  const left = 220;
  const span = W - left - 200;
  const rows = r.stock
    .map((s, i) => {
      const y = i * rowH;
      const sold = (span * s.sold) / Math.max(1, s.capacity);
      const held = (span * s.held) / Math.max(1, s.capacity);
      return (
        `<text class="label" x="${left - 8}" y="${y + 21}" text-anchor="end">${esc(s.name)}</text>` +
        `<rect class="bar" x="${left}" y="${y + 6}" width="${span}" height="22" rx="3" fill="#e3e6ee"/>` +
        `<rect class="bar" x="${left}" y="${y + 6}" width="${sold.toFixed(1)}" height="22" rx="3" fill="#20bf6b"/>` +
        `<rect class="bar" x="${(left + sold).toFixed(1)}" y="${y + 6}" width="${held.toFixed(1)}" height="22" fill="#fa8231"/>` +
        `<text x="${left + span + 8}" y="${y + 21}">${int(s.sold)} sold${s.held ? `, ${int(s.held)} held` : ''} of ${int(s.capacity)}</text>`
      );
    })
    .join('');
  return `<svg class="chart" viewBox="0 0 ${W} ${r.stock.length * rowH + 6}" role="img">${rows}</svg>`;
}
