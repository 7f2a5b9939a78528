import type { Purchase, PurchaseStatus, RejectReason, SaleEvent, TicketType } from '../../domain/types.js';
import { html, type SafeHtml } from './html.js';

/** The URL of each asset with its content hash, so that browsers may keep it for good. */
export type AssetUrls = (name: string) => string;

export type EventWithAvailability = Omit<SaleEvent, 'ticketTypes'> & {
  ticketTypes: Array<TicketType & { available: number }>;
};

export function layout(
  assets: AssetUrls,
  opts: { title: string; script: 'buyer.js' | 'admin.js'; body: SafeHtml; head?: SafeHtml | undefined },
): string {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${opts.title}</title>
        <link rel="icon" href="${assets('icon.svg')}" type="image/svg+xml" />
        <link rel="stylesheet" href="${assets('style.css')}" />
        <script src="${assets(opts.script)}" defer></script>
        ${opts.head}
      </head>
      <body>
        <a class="skip" href="#main">Skip to content</a>
        <header class="top"><a href="/">onsale</a></header>
        <main id="main">${opts.body}</main>
      </body>
    </html> `.text;
}

export function eventsPage(events: Array<Pick<SaleEvent, 'id' | 'name' | 'salesOpenAt'>>): SafeHtml {
  return html`<h1>On sale</h1>
    ${
      events.length === 0
        ? html`<p>Nothing is on sale right now. Come back soon.</p>`
        : html`<ul class="events">
            ${events.map(
              (e) =>
                html`<li>
                  <a href="/events/${e.id}">${e.name}</a> <span class="muted">${when(e.salesOpenAt)}</span>
                </li>`,
            )}
          </ul>`
    }`;
}

export interface FormState {
  buyerId: string;
  quantities: Map<string, number>;
  idempotencyKey: string;
  /** What the last attempt of the plain form got: shown under the Buy button. */
  notice?: { kind: 'busy' | 'error'; text: string };
  /** The admission token of a buyer let in by the event's waiting room (sent as Onsale-Admission). */
  admission?: string;
}

/** An event with a waiting room: the buyer joins its line first. */
function joinPage(event: EventWithAvailability, form: FormState): SafeHtml {
  return html`<h1>${event.name}</h1>
    <p class="muted">${when(event.salesOpenAt)}</p>
    <p>This sale has a waiting room: take your place in line, and you will be let in to buy in turn.</p>
    ${
      (event.waitingRoom?.powDifficulty ?? 0) > 0
        ? html`<noscript
            ><p class="notice error">
              This line asks your browser to solve a small puzzle (a second or two) so that robots cannot take
              thousands of places: please turn on JavaScript to join.
            </p></noscript
          >`
        : ''
    }
    <form id="join" method="post" action="/events/${event.id}/queue" data-event-id="${event.id}">
      <input type="hidden" name="challenge" value="" />
      <input type="hidden" name="solution" value="" />
      <label for="email">Email</label>
      <input
        id="email"
        name="buyerId"
        type="${event.buyerIdKind === 'email' ? 'email' : 'text'}"
        inputmode="email"
        autocomplete="email"
        required
        maxlength="128"
        value="${form.buyerId}"
      />
      <button type="submit">Join the line</button>
      <div id="notice" role="status" aria-live="polite">
        ${form.notice ? html`<p class="notice ${form.notice.kind}">${form.notice.text}</p>` : ''}
      </div>
    </form>`;
}

/** A place as GET /api/queue/:placeId answers it. */
export interface PlaceForPage {
  placeId: string;
  state: 'prequeue' | 'waiting' | 'admitted' | 'sold_out' | 'expired';
  position: number | null;
  aheadOfYou: number | null;
  etaSeconds: number | null;
  refreshAfterSeconds: number;
}

/**
 * The waiting page: the place in line, the people ahead, the estimated wait and a bar that fills as the
 * line moves (from `from`, the first position this page showed). The script updates it live; without the
 * script it reloads itself every refreshAfterSeconds.
 */
export function queuePage(event: EventWithAvailability, place: PlaceForPage, from: number | null): SafeHtml {
  const start = Math.max(from ?? place.position ?? 1, place.position ?? 1);
  const done = place.position === null ? 0 : start - place.position;
  return html`<h1>${event.name}</h1>
    <div
      id="place"
      data-place-id="${place.placeId}"
      data-state="${place.state}"
      data-from="${String(start)}"
      role="status"
      aria-live="polite"
    >
      <section data-panel="prequeue" ${place.state === 'prequeue' ? '' : html` hidden`}>
        <h2>You are in the waiting room</h2>
        <p class="lottery">
          The line opens at <strong>${utc(event.salesOpenAt)}</strong>; everyone who arrives before then gets
          a random place in it, so there is no need to hurry.
        </p>
      </section>
      <section data-panel="waiting" ${place.state === 'waiting' ? '' : html` hidden`}>
        <h2>You are number <span data-field="position">${String(place.position ?? '')}</span> in line</h2>
        <p><span data-field="ahead">${peopleAhead(place.aheadOfYou ?? 0)}</span></p>
        <p>Estimated wait: <span data-field="eta">${waitText(place.etaSeconds)}</span></p>
        <progress data-field="progress" max="${String(start)}" value="${String(done)}">
          ${String(done)} of ${String(start)}
        </progress>
      </section>
      <section data-panel="admitted" ${place.state === 'admitted' ? '' : html` hidden`}>
        <h2>It is your turn</h2>
        <p>Taking you to the tickets…</p>
      </section>
      <section data-panel="sold_out" ${place.state === 'sold_out' ? '' : html` hidden`}>
        <h2>Sold out</h2>
        <p>Sorry — every ticket is gone. Nothing was charged.</p>
      </section>
      <section data-panel="expired" ${place.state === 'expired' ? '' : html` hidden`}>
        <h2>Your place has expired</h2>
        <p>It was not used in time. <a href="/events/${event.id}/queue">Join the line again</a>.</p>
      </section>
      <p class="muted">Keep this page open: it updates by itself.</p>
    </div>`;
}

export function peopleAhead(n: number): string {
  return n === 0 ? 'You are next.' : n === 1 ? '1 person is ahead of you.' : `${n} people are ahead of you.`;
}

export function waitText(seconds: number | null): string {
  if (seconds === null) return 'measuring…';
  if (seconds < 60) return 'less than a minute';
  const minutes = Math.round(seconds / 60);
  return minutes === 1 ? 'about 1 minute' : `about ${minutes} minutes`;
}

export function eventPage(event: EventWithAvailability, form: FormState): SafeHtml {
  if (event.waitingRoom && !form.admission) return joinPage(event, form);
  const single = event.ticketTypes.length === 1;
  return html`<h1>${event.name}</h1>
    <p class="muted">${when(event.salesOpenAt)}</p>
    <form
      id="buy"
      method="post"
      action="/events/${event.id}/buy"
      data-event-id="${event.id}"
      data-admission="${form.admission ?? ''}"
    >
      ${form.admission ? html`<input type="hidden" name="admission" value="${form.admission}" />` : ''}
      <fieldset class="types">
        <legend>Tickets</legend>
        ${event.ticketTypes.map((t) => {
          const chosen = form.quantities.get(t.id) ?? (single && t.available > 0 ? 1 : 0);
          const options = Array.from({ length: t.maxPerBuyer + 1 }, (_, n) => n);
          return html`<div class="type">
            <label for="qty-${t.id}">${t.name} <span class="price">${price(t.priceCents)}</span></label>
            <span class="available" id="available-${t.id}" data-type-id="${t.id}"
              >${availability(t.available)}</span
            >
            <select id="qty-${t.id}" name="qty-${t.id}" aria-describedby="available-${t.id}">
              ${options.map((n) => html`<option value="${n}" ${n === chosen ? html` selected` : ''}>${n}</option>`)}
            </select>
          </div>`;
        })}
      </fieldset>
      <label for="email">Email</label>
      <input
        id="email"
        name="buyerId"
        type="${event.buyerIdKind === 'email' ? 'email' : 'text'}"
        inputmode="email"
        autocomplete="email"
        required
        maxlength="128"
        value="${form.buyerId}"
        ${form.admission ? html` readonly` : ''}
      />
      <input type="hidden" name="idempotencyKey" value="${form.idempotencyKey}" />
      <button type="submit">Buy</button>
      <div id="notice" role="status" aria-live="polite">
        ${form.notice ? html`<p class="notice ${form.notice.kind}">${form.notice.text}</p>` : ''}
      </div>
    </form>`;
}

/** What a buyer reads for each status; the page script shows the panel of the status it receives. */
const STATUS_TEXT: Record<PurchaseStatus, { title: string; text: string }> = {
  queued: {
    title: 'You are in line',
    text: 'We have your request and keep your place. Your tickets will be confirmed in a moment — this page updates by itself.',
  },
  waitlisted: {
    title: 'On the waitlist',
    text: 'Every ticket is reserved by someone paying right now. You keep your place: when reserved tickets come back, they go to the waitlist first, in order — this page updates by itself.',
  },
  held: { title: 'Reserved', text: 'Your tickets are reserved for you while you pay.' },
  confirmed: { title: 'Confirmed', text: 'Your tickets are ready. Show one code per person at the door.' },
  rejected: { title: 'No tickets this time', text: '' },
  expired: {
    title: 'Reservation expired',
    text: 'The reservation ran out before payment; the tickets went back on sale.',
  },
  cancelled: { title: 'Cancelled', text: 'This purchase was cancelled; nothing was charged.' },
};

const REASON_TEXT: Record<RejectReason, string> = {
  sold_out: 'Sorry — these tickets sold out before we reached your request. Nothing was charged.',
  insufficient_inventory:
    'Sorry — there were not enough tickets left for everything you asked for, so we reserved none and charged nothing. You can try again with fewer.',
  limit_exceeded:
    'This would go over the number of tickets one buyer may have for this event, so we reserved none and charged nothing.',
};

/**
 * What the page says after a Pay or Cancel sent without JavaScript (the `notice` of its address), and after
 * a payment that did not go through. Only these fixed texts: the address never puts words on the page.
 */
export const PAY_NOTICES = {
  declined: 'Your card was declined. Nothing was charged: try another card.',
  failed: 'The payment was not confirmed with your bank. Nothing was charged: try again or use another card.',
  invalid: 'Enter a test card token: tok_visa, tok_chargeDeclined or tok_threeDSecure.',
  busy: 'So many people are paying right now that we could not take this yet. Please try again in a few seconds — nothing will be charged twice.',
  hold_expired: 'The reservation ran out before the payment; nothing was kept.',
  not_payable: 'This purchase can no longer be paid.',
  not_cancellable: 'This purchase can no longer be cancelled.',
  error: 'Something went wrong; please try again.',
} as const;
export type PayNotice = keyof typeof PAY_NOTICES;

export function purchasePage(
  purchase: Purchase,
  typeNames: Map<string, string>,
  form: { attemptKey: string; notice: PayNotice | null },
): SafeHtml {
  const { notice } = form;
  const statuses = Object.keys(STATUS_TEXT) as PurchaseStatus[];
  return html`<h1>Your purchase</h1>
    <div
      id="purchase"
      data-purchase-id="${purchase.purchaseId}"
      data-status="${purchase.status}"
      role="status"
      aria-live="polite"
    >
      ${notice ? html`<p class="notice error" data-notice="${notice}">${PAY_NOTICES[notice]}</p>` : ''}
      ${statuses.map(
        (s) =>
          html`<section class="panel ${s}" data-panel="${s}" ${s === purchase.status ? '' : html` hidden`}>
            <h2>${STATUS_TEXT[s].title}</h2>
            ${STATUS_TEXT[s].text ? html`<p>${STATUS_TEXT[s].text}</p>` : ''}
            ${
              s === 'rejected'
                ? (Object.keys(REASON_TEXT) as RejectReason[]).map(
                    (r) =>
                      html`<p data-reason="${r}" ${r === purchase.reason ? '' : html` hidden`}>
                        ${REASON_TEXT[r]}
                      </p>`,
                  )
                : ''
            }
            ${s === 'held' ? checkoutForm(purchase, form.attemptKey) : ''}
            ${
              s === 'confirmed'
                ? html`<ul class="tickets">
                    ${purchase.tickets.map((t) => ticket(purchase.purchaseId, t, typeNames))}
                  </ul>`
                : ''
            }
          </section>`,
      )}
    </div>
    <p class="muted">
      Purchase <code>${purchase.purchaseId}</code> for ${purchase.buyerId}. Keep this page's address to find
      your tickets again.
    </p>
    <p><a href="/events/${purchase.eventId}">Back to the event</a></p>`;
}

/**
 * The payment step of a held purchase: when the hold ends (the script counts down), a card field of the test
 * provider (clearly a test mode), Pay and Cancel. The script posts them to the API and follows the answer;
 * without it they are plain forms to this server, answered with the purchase's page again. `attemptKey`
 * makes the same form sent twice one payment attempt.
 */
function checkoutForm(purchase: Purchase, attemptKey: string): SafeHtml {
  const action = `/purchases/${encodeURIComponent(purchase.purchaseId)}`;
  return html`<p class="hold">
      Held for you until
      <time data-hold-until datetime="${purchase.holdExpiresAt ?? ''}">${purchase.holdExpiresAt ?? ''}</time>
      (<span data-countdown></span>).
    </p>
    <form id="pay" method="post" action="${action}/pay" data-purchase-id="${purchase.purchaseId}">
      <input type="hidden" name="attemptKey" value="${attemptKey}" />
      <label
        >Card — test mode: <code>tok_visa</code> pays, <code>tok_chargeDeclined</code> is declined,
        <code>tok_threeDSecure</code> asks for 3-D Secure
        <input name="paymentToken" value="tok_visa" autocomplete="off" required maxlength="255" />
      </label>
      <button type="submit">Pay</button>
      <button type="submit" formaction="${action}/cancel" formnovalidate data-cancel>Cancel</button>
      <p class="notice" data-pay-notice role="status" aria-live="polite"></p>
    </form>`;
}

function ticket(
  purchaseId: string,
  t: Purchase['tickets'][number],
  typeNames: Map<string, string>,
): SafeHtml {
  return html`<li class="ticket">
    <img
      src="/purchases/${purchaseId}/tickets/${t.id}/qr.svg"
      width="192"
      height="192"
      alt="QR code of ticket ${t.code}"
    /><span>${typeNames.get(t.ticketTypeId) ?? 'Ticket'}</span> <code>${t.code}</code>
  </li>`;
}

export function notFoundPage(what: string): SafeHtml {
  return html`<h1>Not found</h1>
    <p>${what}</p>
    <p><a href="/">See what is on sale</a></p>`;
}

export function adminPage(): SafeHtml {
  return html`<h1>Admin</h1>
    <form id="signin" class="card">
      <h2>Sign in</h2>
      <label for="token">Admin token</label>
      <input id="token" type="password" autocomplete="off" required />
      <button type="submit">Sign in</button>
      <p class="muted">
        The token stays in this browser tab only (session storage) and is never put in a URL.
      </p>
      <p id="signin-error" class="notice error" role="alert"></p>
    </form>
    <div id="console" hidden>
      <p><button type="button" id="signout">Sign out</button></p>
      <section class="card" aria-labelledby="sale-title">
        <h2 id="sale-title">Live sale</h2>
        <label for="event">Event</label>
        <select id="event"></select>
        <p id="live-error" class="notice error" role="alert"></p>
        <table id="stock" class="grid">
          <caption>
            Tickets per type
          </caption>
          <thead>
            <tr>
              <th scope="col">Type</th>
              <th scope="col">Sold</th>
              <th scope="col">Held</th>
              <th scope="col">Available</th>
              <th scope="col">Capacity</th>
              <th scope="col">Progress</th>
            </tr>
          </thead>
          <tbody></tbody>
        </table>
        <dl id="figures" class="figures"></dl>
        <section id="room" hidden aria-labelledby="room-title">
          <h3 id="room-title">Waiting room</h3>
          <dl id="room-figures" class="figures"></dl>
          <form id="room-limits">
            <label for="room-max-active">Most buyers let in at once (maxActiveBuyers)</label>
            <input id="room-max-active" type="number" min="1" max="1000000" required />
            <label for="room-per-minute">Most let in per minute (empty: no limit)</label>
            <input id="room-per-minute" type="number" min="1" max="10000000" />
            <button type="submit">Change the limits</button>
            <p id="room-status" class="muted" role="status"></p>
          </form>
        </section>
        <div class="charts">
          <figure>
            <figcaption>Arrivals per second</figcaption>
            <svg
              id="chart-arrivals"
              class="chart"
              viewBox="0 0 300 100"
              role="img"
              aria-label="Arrivals per second"
            ></svg>
          </figure>
          <figure>
            <figcaption>Allocations per second</figcaption>
            <svg
              id="chart-allocations"
              class="chart"
              viewBox="0 0 300 100"
              role="img"
              aria-label="Allocations per second"
            ></svg>
          </figure>
        </div>
      </section>
      <section class="card" aria-labelledby="purchases-title">
        <h2 id="purchases-title">Purchases</h2>
        <form id="search">
          <label for="q">Buyer or purchase id</label>
          <input id="q" type="search" maxlength="128" />
          <button type="submit">Search</button>
        </form>
        <p>
          <button type="button" id="export">Export all purchases (CSV)</button>
          <span id="export-status" class="muted" role="status"></span>
        </p>
        <table id="purchases" class="grid">
          <caption>
            Latest purchases (up to 50)
          </caption>
          <thead>
            <tr>
              <th scope="col">Purchase</th>
              <th scope="col">Buyer</th>
              <th scope="col">Status</th>
              <th scope="col">Tickets</th>
              <th scope="col">Accepted</th>
            </tr>
          </thead>
          <tbody></tbody>
        </table>
      </section>
      <form id="create" class="card">
        <h2>New event</h2>
        <label for="create-name">Name</label>
        <input id="create-name" required maxlength="200" />
        <label for="create-opens">Sales open (empty: now)</label>
        <input id="create-opens" type="datetime-local" />
        <label for="create-emails">
          <input id="create-emails" type="checkbox" checked />
          Buyers give an email address (the buyer page asks for one)
        </label>
        <fieldset id="create-types">
          <legend>Ticket types</legend>
        </fieldset>
        <button type="button" id="add-type">Add a ticket type</button>
        <button type="submit">Create event</button>
        <p id="create-notice" class="notice" role="status" aria-live="polite"></p>
      </form>
    </div>`;
}

function utc(iso: string): string {
  return new Date(iso).toUTCString().replace('GMT', 'UTC');
}

function when(iso: string): string {
  const at = new Date(iso);
  const text = at.toUTCString().replace('GMT', 'UTC');
  return at.getTime() > Date.now() ? `Sales open ${text}` : `On sale since ${text}`;
}

function price(cents: number): string {
  return cents === 0 ? 'free' : (cents / 100).toFixed(2);
}

function availability(n: number): string {
  return n > 0 ? `${n} left` : 'Sold out';
}

/** The test provider's 3-D Secure step: clearly a test, two buttons, posted back here. */
export function threeDSecurePage(purchase: Purchase): SafeHtml {
  const action = `/payments/test/3ds/${encodeURIComponent(purchase.purchaseId)}`;
  return html`<h1>Confirm your payment</h1>
    <p class="notice">
      Test mode: this page stands in for your bank's 3-D Secure check. No real card is used.
    </p>
    <form method="post" action="${action}" class="three-d-secure">
      <button type="submit" name="outcome" value="approve">Approve</button>
      <button type="submit" name="outcome" value="fail">Fail</button>
    </form>`;
}
