// The buyer pages' script. The pages work without it (the server renders them and the form posts plainly);
// with it, the form buys without leaving the page, waits out busy moments by itself, availability stays
// live and a purchase's status follows the server as it changes. Data goes into the page only as text.
'use strict';

/** Seconds to wait when a refusal carries no usable Retry-After, and the most we ever wait at once. */
const DEFAULT_RETRY_S = 2;
const MAX_RETRY_S = 60;
const AVAILABILITY_POLL_MS = 2000;

/** @param {number} n */
const availabilityText = (n) => (n > 0 ? `${n} left` : 'Sold out');

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A fresh Idempotency-Key (getRandomValues works on plain http too, unlike randomUUID). */
function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** @param {HTMLFormElement} form */
function enhanceBuyForm(form) {
  const eventId = form.dataset.eventId ?? '';
  const notice = /** @type {HTMLElement} */ (document.getElementById('notice'));
  const button = /** @type {HTMLButtonElement} */ (form.querySelector('button[type=submit]'));
  const keyInput = /** @type {HTMLInputElement} */ (form.elements.namedItem('idempotencyKey'));
  const email = /** @type {HTMLInputElement} */ (form.elements.namedItem('buyerId'));
  const fieldset = form.querySelector('fieldset');

  /** @param {'busy' | 'error' | ''} kind @param {string} text */
  function say(kind, text) {
    const p = document.createElement('p');
    p.className = `notice ${kind}`;
    p.textContent = text;
    notice.replaceChildren(p);
  }

  /** @param {boolean} waiting */
  function setWaiting(waiting) {
    button.disabled = waiting;
    email.readOnly = waiting;
    if (fieldset) fieldset.disabled = waiting;
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    /** @type {Array<{ ticketTypeId: string, quantity: number }>} */
    const items = [];
    for (const select of form.querySelectorAll('select[name^="qty-"]')) {
      const quantity = Number(/** @type {HTMLSelectElement} */ (select).value);
      if (quantity > 0) items.push({ ticketTypeId: select.getAttribute('name')?.slice(4) ?? '', quantity });
    }
    if (!email.checkValidity()) {
      say('error', 'Please enter your email address: your tickets are kept under it.');
      email.focus();
      return;
    }
    if (items.length === 0) {
      say('error', 'Choose at least one ticket.');
      form.querySelector('select')?.focus();
      return;
    }
    setWaiting(true);
    say('', 'Sending your request…');
    const body = JSON.stringify({ buyerId: email.value, items });
    // The same key on every retry: the server makes one purchase of it however many times it arrives.
    const key = keyInput.value || newKey();
    keyInput.value = key;
    for (let attempt = 1; ; attempt++) {
      /** @type {Response | null} */
      let res = null;
      try {
        res = await fetch(`/api/events/${encodeURIComponent(eventId)}/purchases`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'idempotency-key': key,
            // Let in by the event's waiting room: the admission token it gave.
            ...(form.dataset.admission ? { 'onsale-admission': form.dataset.admission } : {}),
          },
          body,
        });
      } catch {
        // No answer (the network, or a server restarting): as busy, try again shortly.
      }
      if (res && (res.status === 200 || res.status === 202)) {
        const receipt = await res.json();
        location.assign(`/purchases/${encodeURIComponent(receipt.purchaseId)}`);
        return;
      }
      if (res && res.status !== 429 && res.status !== 503) {
        const answer = await res.json().catch(() => null);
        say('error', answer?.error?.message ?? 'Something went wrong; please try again.');
        keyInput.value = newKey(); // nothing was bought with the old key: a changed form may use a new one
        setWaiting(false);
        return;
      }
      const retryAfter = Number(res?.headers.get('retry-after'));
      const seconds = Math.min(MAX_RETRY_S, retryAfter > 0 ? retryAfter : DEFAULT_RETRY_S);
      say(
        'busy',
        `So many people are buying right now that we have to wait a moment. We will try again by ourselves in ${seconds} s (attempt ${attempt + 1}) — keep this page open; your request will not be counted twice.`,
      );
      await sleep(seconds * 1000);
    }
  });

  // Availability, live: one small read every two seconds while the page is visible.
  const cells = form.querySelectorAll('[data-type-id]');
  setInterval(async () => {
    if (document.hidden) return;
    try {
      const res = await fetch(`/api/events/${encodeURIComponent(eventId)}`);
      if (!res.ok) return;
      const event = await res.json();
      for (const cell of cells) {
        const type = event.ticketTypes.find(
          (/** @type {any} */ t) => t.id === cell.getAttribute('data-type-id'),
        );
        if (type) cell.textContent = availabilityText(type.available);
      }
    } catch {
      // Offline for a moment: the next tick tries again.
    }
  }, AVAILABILITY_POLL_MS);
}

/** @param {HTMLElement} box */
function followPurchase(box) {
  const purchaseId = box.dataset.purchaseId ?? '';
  const final = new Set(['confirmed', 'rejected', 'expired', 'cancelled']);
  if (final.has(box.dataset.status ?? '')) return;
  /** @type {Map<string, string>} */
  const typeNames = new Map();

  const stream = new EventSource(`/api/purchases/${encodeURIComponent(purchaseId)}/events`);
  stream.addEventListener('status', async (e) => {
    const purchase = JSON.parse(/** @type {MessageEvent} */ (e).data);
    if (final.has(purchase.status)) stream.close(); // else EventSource would reconnect when the stream ends
    if (purchase.status === box.dataset.status) return;
    if (purchase.status === 'confirmed') await fillTickets(box, purchase, typeNames);
    box.dataset.status = purchase.status;
    box.querySelector('[data-notice]')?.remove(); // the last form's outcome, now out of date
    for (const panel of box.querySelectorAll('[data-panel]')) {
      /** @type {HTMLElement} */ (panel).hidden = panel.getAttribute('data-panel') !== purchase.status;
    }
    for (const reason of box.querySelectorAll('[data-reason]')) {
      /** @type {HTMLElement} */ (reason).hidden = reason.getAttribute('data-reason') !== purchase.reason;
    }
    if (purchase.status === 'held') showHold(box, purchase.holdExpiresAt);
  });
  const time = box.querySelector('[data-hold-until]');
  if (time) showHold(box, time.getAttribute('datetime') ?? '');
  const form = box.querySelector('#pay');
  if (form instanceof HTMLFormElement) enhancePayForm(form, purchaseId);
}

/** @type {ReturnType<typeof setInterval> | undefined} */
let countdown;

/**
 * Shows when the hold ends, in local time, and counts down to it every second.
 * @param {HTMLElement} box @param {string} until
 */
function showHold(box, until) {
  const time = box.querySelector('[data-hold-until]');
  const left = box.querySelector('[data-countdown]');
  const end = Date.parse(until);
  if (!time || !left || Number.isNaN(end)) return;
  time.setAttribute('datetime', until);
  time.textContent = new Date(end).toLocaleTimeString();
  clearInterval(countdown);
  const tick = () => {
    const seconds = Math.max(0, Math.round((end - Date.now()) / 1000));
    left.textContent =
      seconds > 0
        ? `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, '0')} left`
        : 'time is up';
  };
  tick();
  countdown = setInterval(tick, 1000);
}

/**
 * Pay and Cancel through the API. A payment needing 3-D Secure goes to the provider's page; the others are
 * said here, and the status stream shows the purchase as it changes.
 * @param {HTMLFormElement} form @param {string} purchaseId
 */
function enhancePayForm(form, purchaseId) {
  const notice = form.querySelector('[data-pay-notice]');
  /** @param {string} kind @param {string} text */
  const say = (kind, text) => {
    if (!notice) return;
    notice.className = `notice ${kind}`;
    notice.textContent = text;
  };
  const base = `/api/purchases/${encodeURIComponent(purchaseId)}`;
  /** @param {string} path @param {unknown} body */
  const post = (path, body) =>
    fetch(`${base}/${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const field = form.elements.namedItem('paymentToken');
    const token = field instanceof HTMLInputElement ? field.value.trim() : '';
    say('busy', 'Paying…');
    try {
      const res = await post('payment', { paymentToken: token });
      const body = await res.json();
      if (res.status === 202 && body.payment?.nextActionUrl) {
        say('busy', 'Your bank asks you to confirm…');
        location.assign(body.payment.nextActionUrl);
      } else if (res.status === 200) {
        say('', 'Paid.');
      } else if (res.status === 402) {
        say('error', 'Your card was declined. Nothing was charged: try another card.');
      } else {
        say('error', body.error?.message ?? 'The payment did not go through; try again.');
      }
    } catch {
      say('error', 'No answer from the server; try again.');
    }
  });
  form.querySelector('[data-cancel]')?.addEventListener('click', async (e) => {
    e.preventDefault(); // the button also submits the plain form, for pages without this script
    say('busy', 'Cancelling…');
    try {
      const res = await post('cancel', {});
      if (!res.ok) say('error', (await res.json()).error?.message ?? 'Could not cancel.');
    } catch {
      say('error', 'No answer from the server; try again.');
    }
  });
}

/**
 * Lists the tickets of a confirmed purchase, each with its QR code (an image the server draws).
 * @param {HTMLElement} box @param {any} purchase @param {Map<string, string>} typeNames
 */
async function fillTickets(box, purchase, typeNames) {
  try {
    const res = await fetch(`/api/events/${encodeURIComponent(purchase.eventId)}`);
    if (res.ok) for (const t of (await res.json()).ticketTypes) typeNames.set(t.id, t.name);
  } catch {
    // Names are a nicety: tickets are listed without them.
  }
  const list = box.querySelector('.tickets');
  if (!list) return;
  list.replaceChildren(
    ...purchase.tickets.map((/** @type {any} */ ticket) => {
      const item = document.createElement('li');
      item.className = 'ticket';
      const img = document.createElement('img');
      img.src = `/purchases/${encodeURIComponent(purchase.purchaseId)}/tickets/${encodeURIComponent(ticket.id)}/qr.svg`;
      img.width = 192;
      img.height = 192;
      img.alt = `QR code of ticket ${ticket.code}`;
      const name = document.createElement('span');
      name.textContent = typeNames.get(ticket.ticketTypeId) ?? 'Ticket';
      const code = document.createElement('code');
      code.textContent = ticket.code;
      item.append(img, name, ' ', code);
      return item;
    }),
  );
}

/** @param {number} n */
const peopleAhead = (n) =>
  n === 0 ? 'You are next.' : n === 1 ? '1 person is ahead of you.' : `${n} people are ahead of you.`;

/** @param {number | null} seconds */
function waitText(seconds) {
  if (seconds === null) return 'measuring…';
  if (seconds < 60) return 'less than a minute';
  const minutes = Math.round(seconds / 60);
  return minutes === 1 ? 'about 1 minute' : `about ${minutes} minutes`;
}

/**
 * The waiting page, live: reads the place every refreshAfterSeconds and moves the number, the people
 * ahead, the estimate and the bar; once the buyer is let in, the page reloads into the purchase form.
 * @param {HTMLElement} box
 */
function followPlace(box) {
  const placeId = box.dataset.placeId ?? '';
  let from = Number(box.dataset.from) || 0;
  /** @param {string} name */
  const field = (name) => box.querySelector(`[data-field="${name}"]`);
  async function read() {
    let wait = 5;
    try {
      const res = await fetch(`/api/queue/${encodeURIComponent(placeId)}`, { cache: 'no-store' });
      if (res.ok) {
        const place = await res.json();
        wait = place.refreshAfterSeconds || wait;
        if (place.state === 'admitted') {
          location.reload();
          return;
        }
        if (place.position !== null) {
          from = Math.max(from, place.position);
          const position = field('position');
          if (position) position.textContent = String(place.position);
          const ahead = field('ahead');
          if (ahead) ahead.textContent = peopleAhead(place.aheadOfYou);
          const eta = field('eta');
          if (eta) eta.textContent = waitText(place.etaSeconds);
          const bar = /** @type {HTMLProgressElement | null} */ (field('progress'));
          if (bar) {
            bar.max = from;
            bar.value = from - place.position;
            bar.textContent = `${from - place.position} of ${from}`;
          }
        }
        box.dataset.state = place.state;
        for (const panel of box.querySelectorAll('[data-panel]')) {
          /** @type {HTMLElement} */ (panel).hidden = panel.getAttribute('data-panel') !== place.state;
        }
        if (place.state === 'sold_out' || place.state === 'expired') return;
      }
    } catch {
      // Offline for a moment: try again at the next turn.
    }
    setTimeout(read, wait * 1000);
  }
  setTimeout(read, 1000);
}

/** Digests computed at once while solving: WebCrypto answers a batch faster than one at a time. */
const POW_BATCH = 512;

/** @param {Uint8Array} digest */
function leadingZeroBits(digest) {
  let bits = 0;
  for (const byte of digest) {
    if (byte !== 0) return bits + Math.clz32(byte) - 24;
    bits += 8;
  }
  return bits;
}

/**
 * The first solution, counting in base 36, whose SHA-256 of `<challenge>:<solution>` starts with
 * `difficulty` zero bits (src/domain/proof-of-work.ts checks the same rule).
 * @param {string} challenge @param {number} difficulty
 */
async function solveChallenge(challenge, difficulty) {
  const encoder = new TextEncoder();
  for (let start = 0; ; start += POW_BATCH) {
    const tries = [];
    for (let n = start; n < start + POW_BATCH; n++) {
      tries.push(crypto.subtle.digest('SHA-256', encoder.encode(`${challenge}:${n.toString(36)}`)));
    }
    const digests = await Promise.all(tries);
    const found = digests.findIndex((d) => leadingZeroBits(new Uint8Array(d)) >= difficulty);
    if (found >= 0) return (start + found).toString(36);
  }
}

/**
 * The join form: asks for a proof-of-work challenge for the buyer typed, solves it, then posts the form
 * with the challenge and its solution. A room that asks for no work answers difficulty 0, solved at once;
 * any refusal is left to the plain post, whose page says what went wrong.
 * @param {HTMLFormElement} form
 */
function enhanceJoinForm(form) {
  const eventId = form.dataset.eventId ?? '';
  const notice = /** @type {HTMLElement} */ (document.getElementById('notice'));
  const field = (/** @type {string} */ name) =>
    /** @type {HTMLInputElement} */ (form.elements.namedItem(name));
  const button = /** @type {HTMLButtonElement} */ (form.querySelector('button[type=submit]'));
  form.addEventListener('submit', async (e) => {
    if (!crypto.subtle) return; // Not a secure context: the plain post, refused if the room asks for work.
    e.preventDefault();
    button.disabled = true;
    try {
      const res = await fetch(`/api/events/${encodeURIComponent(eventId)}/queue/challenge`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ buyerId: field('buyerId').value }),
      });
      if (res.ok) {
        const { challenge, difficulty } = await res.json();
        if (difficulty > 0) {
          const p = document.createElement('p');
          p.className = 'notice busy';
          p.textContent = 'Proving this is a person’s browser, not a robot: a second or two…';
          notice.replaceChildren(p);
        }
        field('challenge').value = challenge;
        field('solution').value = await solveChallenge(challenge, difficulty);
      }
    } catch {
      // Offline for a moment: the plain post says so.
    }
    form.submit();
  });
}

const placeBox = document.getElementById('place');
if (placeBox) followPlace(placeBox);
const joinForm = document.getElementById('join');
if (joinForm instanceof HTMLFormElement) enhanceJoinForm(joinForm);
const buyForm = document.getElementById('buy');
if (buyForm instanceof HTMLFormElement) enhanceBuyForm(buyForm);
const purchaseBox = document.getElementById('purchase');
if (purchaseBox) followPurchase(purchaseBox);
