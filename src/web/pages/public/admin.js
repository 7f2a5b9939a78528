// The admin page's script: sign in with the admin token (kept in this tab's sessionStorage, sent only in
// the Authorization header), create events, and watch a sale live from the stats endpoint and /metrics.
// Data goes into the page only as text (textContent), never as markup.
'use strict';

const TOKEN_KEY = 'onsale-admin-token';
const LIVE_MS = 1000;
const PURCHASES_MS = 5000;
const CHART_POINTS = 60;
const NONE = '—';

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

class Unauthorized extends Error {}

/**
 * Calls the API with the admin token. A 401 signs out: the token is wrong or was changed.
 * @param {string} path @param {RequestInit} [init]
 */
async function api(path, init = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY) ?? '';
  const res = await fetch(path, {
    ...init,
    headers: { ...init.headers, authorization: `Bearer ${token}` },
  });
  if (res.status === 401) throw new Unauthorized('That admin token is not the right one.');
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new Error(body?.error?.message ?? `the server answered ${res.status}`);
  return body;
}

/** @param {unknown} error */
function failed(error) {
  if (error instanceof Unauthorized) signOut(error.message);
  return error instanceof Error ? error.message : String(error);
}

/** @param {number | undefined} n */
const num = (n) => (n === undefined || Number.isNaN(n) ? NONE : n.toLocaleString('en'));

/** Sums each metric family of a Prometheus text exposition over its labels. @param {string} text */
function parseMetrics(text) {
  /** @type {Map<string, number>} */
  const sums = new Map();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{.*\})?\s+(\S+)/.exec(line);
    if (!m || line.startsWith('#')) continue;
    const value = Number(m[2]);
    if (Number.isFinite(value)) sums.set(m[1] ?? '', (sums.get(m[1] ?? '') ?? 0) + value);
  }
  return sums;
}

// ---- sign in / out ----

function signOut(message = '') {
  sessionStorage.removeItem(TOKEN_KEY);
  stopLive();
  $('console').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message;
}

async function signIn() {
  $('signin').hidden = true;
  $('console').hidden = false;
  await loadEvents();
}

$('signin').addEventListener('submit', async (e) => {
  e.preventDefault();
  const input = /** @type {HTMLInputElement} */ ($('token'));
  sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  input.value = '';
  try {
    // Checked at once when there is an event to ask about; otherwise at the first admin call.
    const { events } = await api('/api/events');
    if (events.length > 0) await api(`/api/events/${encodeURIComponent(events[0].id)}/stats`);
    $('signin-error').textContent = '';
    await signIn();
  } catch (error) {
    signOut(failed(error));
  }
});
$('signout').addEventListener('click', () => signOut());

// ---- events ----

const eventSelect = /** @type {HTMLSelectElement} */ ($('event'));

/** @param {string} [select] the event to show */
async function loadEvents(select) {
  const { events } = await api('/api/events');
  eventSelect.replaceChildren(
    ...events.map((/** @type {any} */ ev) => {
      const option = document.createElement('option');
      option.value = ev.id;
      option.textContent = ev.name;
      return option;
    }),
  );
  if (events.length === 0) {
    $('live-error').textContent = 'No event yet: create one below.';
    return;
  }
  eventSelect.value = select ?? events[events.length - 1].id;
  await watch(eventSelect.value);
}
eventSelect.addEventListener('change', () => void watch(eventSelect.value));

// ---- the live view ----

/** @type {ReturnType<typeof setInterval> | null} */
let liveTimer = null;
/** @type {ReturnType<typeof setInterval> | null} */
let purchasesTimer = null;
/** @type {{ eventId: string, names: Map<string, string>, last: any, arrivals: number[], allocations: number[], room: boolean, roomLimitsShown: boolean }} */
let live = {
  eventId: '',
  names: new Map(),
  last: null,
  arrivals: [],
  allocations: [],
  room: false,
  roomLimitsShown: false,
};

function stopLive() {
  if (liveTimer) clearInterval(liveTimer);
  if (purchasesTimer) clearInterval(purchasesTimer);
  liveTimer = purchasesTimer = null;
}

/** @param {string} eventId */
async function watch(eventId) {
  stopLive();
  const event = await api(`/api/events/${encodeURIComponent(eventId)}`);
  live = {
    eventId,
    names: new Map(event.ticketTypes.map((/** @type {any} */ t) => [t.id, t.name])),
    last: null,
    arrivals: [],
    allocations: [],
    room: Boolean(event.waitingRoom),
    roomLimitsShown: false,
  };
  $('room').hidden = !live.room;
  $('live-error').textContent = '';
  await tick();
  await loadPurchases();
  liveTimer = setInterval(() => void tick(), LIVE_MS);
  purchasesTimer = setInterval(() => {
    if (!(/** @type {HTMLInputElement} */ ($('q')).value)) void loadPurchases();
  }, PURCHASES_MS);
}

async function tick() {
  const eventId = live.eventId;
  try {
    const [stats, metrics] = await Promise.all([
      api(`/api/events/${encodeURIComponent(eventId)}/stats`),
      // /metrics needs the admin token too; without it (or behind a balancer that refuses it) the
      // figures that only it has show as none.
      fetch('/metrics', { headers: { authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) ?? ''}` } })
        .then((res) => (res.ok ? res.text() : ''))
        .catch(() => ''),
    ]);
    if (eventId !== live.eventId) return; // another event was chosen meanwhile
    render(stats, parseMetrics(metrics), Date.now());
    if (live.room)
      renderRoom(await api(`/api/events/${encodeURIComponent(eventId)}/queue`), parseMetrics(metrics));
    $('live-error').textContent = '';
  } catch (error) {
    $('live-error').textContent = `Live figures paused: ${failed(error)}`;
  }
}

/** @param {any} stats @param {Map<string, number>} metrics @param {number} now */
function render(stats, metrics, now) {
  const p = stats.purchases;
  const arrived = p.queued + p.held + p.confirmed + p.rejected + p.expired + p.cancelled;
  const allocated = arrived - p.queued;
  const refused = metrics.get('onsale_purchases_refused_total');
  const prev = live.last;
  live.last = { at: now, arrived, allocated, refused };
  if (prev) {
    const seconds = (now - prev.at) / 1000;
    push(live.arrivals, Math.max(0, (arrived - prev.arrived) / seconds));
    push(live.allocations, Math.max(0, (allocated - prev.allocated) / seconds));
  }

  $('stock')
    .querySelector('tbody')
    ?.replaceChildren(
      ...stats.ticketTypes.map((/** @type {any} */ t) => {
        const row = document.createElement('tr');
        const cells = [
          live.names.get(t.id) ?? t.id,
          num(t.sold),
          num(t.held),
          num(t.available),
          num(t.capacity),
        ];
        for (const text of cells) row.append(cell(text));
        const bar = document.createElement('progress');
        bar.max = t.capacity;
        bar.value = t.sold + t.held;
        bar.textContent = `${Math.round(((t.sold + t.held) / t.capacity) * 100)}%`;
        bar.setAttribute('aria-label', `${live.names.get(t.id) ?? t.id}: sold or held`);
        const td = document.createElement('td');
        td.append(bar);
        row.append(td);
        return row;
      }),
    );

  const age = metrics.get('onsale_queue_oldest_age_seconds');
  const refusedRate =
    prev && refused !== undefined && prev.refused !== undefined && refused >= prev.refused
      ? (refused - prev.refused) / ((now - prev.at) / 1000)
      : undefined;
  figures([
    ['Queued', num(p.queued), 'queued'],
    ['Confirmed', num(p.confirmed), 'confirmed'],
    ['Rejected', num(p.rejected), 'rejected'],
    ['Held', num(p.held), 'held'],
    ['Waitlisted', num(p.waitlisted), 'waitlisted'],
    ['Expired', num(p.expired), 'expired'],
    ['Cancelled', num(p.cancelled), 'cancelled'],
    ['Refunded', num(p.refunded), 'refunded'],
    ['Dead letters', num(stats.deadLetters), 'dead-letters'],
    ['Oldest queued', age === undefined ? NONE : `${age.toFixed(1)} s`, 'queue-age'],
    // Under `onsale cluster` the web servers do not export onsale_workers (the autoscaler does): the stats say.
    ['Workers', num(stats.workers ?? metrics.get('onsale_workers')), 'workers'],
    ['Refused (429/503)', num(refused), 'refused'],
    ['Refused per second', refusedRate === undefined ? NONE : num(Math.round(refusedRate)), 'refused-rate'],
    ['Arrivals per second', num(Math.round(live.arrivals.at(-1) ?? 0)), 'arrivals-rate'],
    ['Allocations per second', num(Math.round(live.allocations.at(-1) ?? 0)), 'allocations-rate'],
    // Only when events are sharded over several databases: which one holds this event.
    ...(stats.shard === undefined ? [] : [['Database shard', String(stats.shard), 'shard']]),
  ]);
  chart($('chart-arrivals'), live.arrivals, 'Arrivals per second');
  chart($('chart-allocations'), live.allocations, 'Allocations per second');
}

/**
 * The waiting room's line, live: its length per state, who is let in, and the estimate's accuracy.
 * @param {any} line @param {Map<string, number>} metrics
 */
function renderRoom(line, metrics) {
  const errorSum = metrics.get('onsale_room_estimate_error_seconds_sum');
  const errorCount = metrics.get('onsale_room_estimate_error_seconds_count');
  const items = [
    ['In the pre-queue', num(line.prequeue), 'room-prequeue'],
    ['Waiting', num(line.waiting), 'room-waiting'],
    ['Let in', num(line.admitted), 'room-admitted'],
    ['Active buyers', `${num(line.active)} of ${num(line.maxActiveBuyers)}`, 'room-active'],
    ['Let in, last minute', num(line.admittedLastMinute), 'room-per-minute'],
    ['Expired (abandoned)', num(line.expired), 'room-expired'],
    [
      'Wait of the last in line',
      line.etaOfLastSeconds === null ? NONE : `${num(line.etaOfLastSeconds)} s`,
      'room-eta',
    ],
    [
      'Estimate error (mean, |told − waited|)',
      errorCount ? `${((errorSum ?? 0) / errorCount).toFixed(1)} s` : NONE,
      'room-estimate-error',
    ],
  ];
  $('room-figures').replaceChildren(
    ...items.map(([label, value, name]) => {
      const div = document.createElement('div');
      const dt = document.createElement('dt');
      dt.textContent = label;
      const dd = document.createElement('dd');
      dd.textContent = value;
      dd.dataset.figure = name;
      div.append(dt, dd);
      return div;
    }),
  );
  if (!live.roomLimitsShown) {
    live.roomLimitsShown = true;
    /** @type {HTMLInputElement} */ ($('room-max-active')).value = String(line.maxActiveBuyers);
    /** @type {HTMLInputElement} */ ($('room-per-minute')).value =
      line.maxAdmittedPerMinute === null ? '' : String(line.maxAdmittedPerMinute);
  }
}

$('room-limits').addEventListener('submit', async (e) => {
  e.preventDefault();
  const perMinute = /** @type {HTMLInputElement} */ ($('room-per-minute')).value;
  try {
    const line = await api(`/api/events/${encodeURIComponent(live.eventId)}/queue`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        maxActiveBuyers: Number(/** @type {HTMLInputElement} */ ($('room-max-active')).value),
        maxAdmittedPerMinute: perMinute === '' ? null : Number(perMinute),
      }),
    });
    $('room-status').textContent = `Now at most ${num(line.maxActiveBuyers)} at once${
      line.maxAdmittedPerMinute === null ? '' : ` and ${num(line.maxAdmittedPerMinute)} per minute`
    }.`;
  } catch (error) {
    $('room-status').textContent = `Not changed: ${failed(error)}`;
  }
});

/** @param {number[]} series @param {number} value */
function push(series, value) {
  series.push(value);
  if (series.length > CHART_POINTS) series.shift();
}

/** @param {string} text */
function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

/** @param {Array<[string, string, string]>} items label, value, name (data-figure, for tests and styles) */
function figures(items) {
  $('figures').replaceChildren(
    ...items.map(([label, value, name]) => {
      const div = document.createElement('div');
      const dt = document.createElement('dt');
      dt.textContent = label;
      const dd = document.createElement('dd');
      dd.textContent = value;
      dd.dataset.figure = name;
      div.append(dt, dd);
      return div;
    }),
  );
}

const SVG = 'http://www.w3.org/2000/svg';

/** A line of the last minute, scaled to its peak. @param {HTMLElement} svg @param {number[]} series @param {string} label */
function chart(svg, series, label) {
  const peak = Math.max(1, ...series);
  const step = 300 / (CHART_POINTS - 1);
  const offset = CHART_POINTS - series.length;
  const line = document.createElementNS(SVG, 'polyline');
  line.setAttribute(
    'points',
    series
      .map((v, i) => `${((offset + i) * step).toFixed(1)},${(98 - (v / peak) * 88).toFixed(1)}`)
      .join(' '),
  );
  const top = document.createElementNS(SVG, 'text');
  top.setAttribute('x', '4');
  top.setAttribute('y', '10');
  top.textContent = `peak ${Math.round(peak).toLocaleString('en')}/s`;
  svg.replaceChildren(line, top);
  svg.setAttribute(
    'aria-label',
    `${label}: now ${Math.round(series.at(-1) ?? 0)}, peak ${Math.round(peak)} over the last minute`,
  );
}

// ---- purchases ----

async function loadPurchases() {
  const q = /** @type {HTMLInputElement} */ ($('q')).value.trim();
  const query = new URLSearchParams({ limit: '50' });
  if (q) query.set('q', q);
  const body = $('purchases').querySelector('tbody');
  try {
    const { purchases } = await api(`/api/events/${encodeURIComponent(live.eventId)}/purchases?${query}`);
    if (purchases.length === 0) {
      const td = cell(q ? `No purchase of this event has buyer or id “${q}”.` : 'No purchase yet.');
      td.colSpan = 5;
      const row = document.createElement('tr');
      row.append(td);
      body?.replaceChildren(row);
      return;
    }
    body?.replaceChildren(
      ...purchases.map((/** @type {any} */ p) => {
        const row = document.createElement('tr');
        let status = p.reason ? `${p.status} (${p.reason.replaceAll('_', ' ')})` : p.status;
        if (p.payment) status += ` · payment ${p.payment.status.replaceAll('_', ' ')}`;
        if (p.refunded) status += ' · refunded';
        for (const text of [p.purchaseId, p.buyerId, status, String(p.tickets.length), p.createdAt]) {
          row.append(cell(text));
        }
        return row;
      }),
    );
    // One purchase found: its payment history below it.
    if (purchases.length === 1 && purchases[0].payment) {
      const { history } = await api(`/api/purchases/${encodeURIComponent(purchases[0].purchaseId)}/payments`);
      const td = cell(
        `Payment history: ${history.map((/** @type {any} */ h) => `${h.at} ${h.kind}`).join(' · ')}`,
      );
      td.colSpan = 5;
      td.dataset.paymentHistory = '';
      const row = document.createElement('tr');
      row.append(td);
      body?.append(row);
    }
  } catch (error) {
    $('live-error').textContent = `Purchases: ${failed(error)}`;
  }
}
// The export needs the token in its Authorization header, never in a URL: fetched here, then handed to the
// browser as a file.
$('export').addEventListener('click', async () => {
  const eventId = live.eventId;
  const status = $('export-status');
  status.textContent = 'Exporting…';
  try {
    const res = await fetch(`/api/events/${encodeURIComponent(eventId)}/export.csv`, {
      headers: { authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) ?? ''}` },
    });
    if (res.status === 401) throw new Unauthorized('That admin token is not the right one.');
    if (!res.ok) throw new Error(`the server answered ${res.status}`);
    const url = URL.createObjectURL(await res.blob());
    const link = document.createElement('a');
    link.href = url;
    link.download = `event-${eventId}-purchases.csv`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    status.textContent = 'Exported.';
  } catch (error) {
    status.textContent = `Export failed: ${failed(error)}`;
  }
});

$('search').addEventListener('submit', (e) => {
  e.preventDefault();
  void loadPurchases();
});

// ---- a new event ----

let typeRows = 0;
function addTypeRow() {
  const n = ++typeRows;
  const row = document.createElement('div');
  row.className = 'type-row';
  /** @type {Array<[string, string, Record<string, string>]>} */
  const fields = [
    [
      'name',
      'Ticket type name',
      { required: '', maxlength: '200', value: n === 1 ? 'General admission' : '' },
    ],
    [
      'price',
      'Price',
      { type: 'number', min: '0', step: '0.01', required: '', value: '0', inputmode: 'decimal' },
    ],
    [
      'capacity',
      'Capacity',
      { type: 'number', min: '1', max: '10000000', step: '1', required: '', value: '100' },
    ],
    ['max', 'Most per buyer', { type: 'number', min: '1', max: '100', step: '1', required: '', value: '4' }],
  ];
  for (const [field, text, attrs] of fields) {
    const id = `type-${n}-${field}`;
    const label = document.createElement('label');
    label.htmlFor = id;
    label.textContent = `${text} (type ${n})`;
    const input = document.createElement('input');
    input.id = id;
    input.dataset.field = field;
    for (const [k, v] of Object.entries(attrs)) input.setAttribute(k, v);
    const wrap = document.createElement('div');
    wrap.append(label, input);
    row.append(wrap);
  }
  $('create-types').append(row);
  return row;
}
addTypeRow();
$('add-type').addEventListener('click', () => addTypeRow().querySelector('input')?.focus());

$('create').addEventListener('submit', async (e) => {
  e.preventDefault();
  const notice = $('create-notice');
  const name = /** @type {HTMLInputElement} */ ($('create-name')).value.trim();
  const opens = /** @type {HTMLInputElement} */ ($('create-opens')).value;
  const emails = /** @type {HTMLInputElement} */ ($('create-emails')).checked;
  const ticketTypes = [...$('create-types').querySelectorAll('.type-row')].map((row) => {
    /** @param {string} f */
    const value = (f) => /** @type {HTMLInputElement} */ (row.querySelector(`[data-field=${f}]`)).value;
    return {
      name: value('name').trim(),
      priceCents: Math.round(Number(value('price')) * 100),
      capacity: Number(value('capacity')),
      maxPerBuyer: Number(value('max')),
    };
  });
  try {
    const event = await api('/api/events', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        name,
        ...(opens ? { salesOpenAt: new Date(opens).toISOString() } : {}),
        buyerIdKind: emails ? 'email' : 'any',
        ticketTypes,
      }),
    });
    /** @type {HTMLFormElement} */ ($('create')).reset();
    // The live view switches to the new event first, so the notice means it is ready.
    await loadEvents(event.id);
    notice.className = 'notice';
    notice.textContent = `Created “${event.name}”. Buyers find it at /events/${event.id}.`;
  } catch (error) {
    notice.className = 'notice error';
    notice.textContent = `Not created: ${failed(error)}`;
  }
});

if (sessionStorage.getItem(TOKEN_KEY)) void signIn().catch((error) => signOut(failed(error)));
