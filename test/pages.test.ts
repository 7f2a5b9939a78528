/**
 * The pages over plain HTTP, as a browser without JavaScript (or a crawler) sees them: security headers,
 * escaping, asset caching, and the plain form that buys without the page's script. Real `onsale serve` on
 * a temp SQLite folder with a queue of at most two purchases, and no worker until the end.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEvent, waitFinal, type CreatedEvent } from './helpers/api.js';
import { ADMIN_TOKEN, startOnsale, type Onsale } from './helpers/processes.js';

let onsale: Onsale;
let base: string;
let event: CreatedEvent;
const NAME = `<script>alert("x")</script> & 'friends'`;
const ESCAPED = '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;friends&#39;';

beforeAll(async () => {
  onsale = await startOnsale({ workers: 0, env: { ONSALE_MAX_QUEUE_DEPTH: '2' } });
  base = onsale.baseUrl;
  event = await createEvent(base, {
    name: NAME,
    ticketTypes: [{ name: NAME, priceCents: 1250, capacity: 10, maxPerBuyer: 2 }],
  });
});

afterAll(async () => onsale?.stop());

async function get(path: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}${path}`, { headers, redirect: 'manual' });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** Posts the event page's form as a browser without JavaScript would. */
async function postForm(fields: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}/events/${event.id}/buy`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(fields).toString(),
    redirect: 'manual',
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

function expectStrictPage(page: { headers: Headers; text: string }) {
  const csp = page.headers.get('content-security-policy') ?? '';
  expect(csp).toContain("default-src 'self'");
  expect(csp).toContain("script-src 'self'");
  expect(csp).toContain("frame-ancestors 'none'");
  expect(csp).not.toMatch(/unsafe-inline|unsafe-eval/);
  expect(page.headers.get('x-content-type-options')).toBe('nosniff');
  expect(page.headers.get('referrer-policy')).toBe('same-origin');
  // Nothing the policy would have to allow: no inline script, style or handler.
  expect(page.text).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
  expect(page.text).not.toMatch(/\sstyle=|\son[a-z]+=/i);
}

describe('pages', () => {
  it('serves the events, the event and the admin page with a strict policy and escaped data', async () => {
    const home = await get('/');
    expect(home.status).toBe(200);
    expect(home.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expectStrictPage(home);
    expect(home.text).toContain(ESCAPED);
    expect(home.text).not.toContain(NAME);
    expect(home.text).toContain(`href="/events/${event.id}"`);

    const page = await get(`/events/${event.id}`);
    expect(page.status).toBe(200);
    expectStrictPage(page);
    expect(page.text.split(ESCAPED).length - 1).toBe(3); // title, heading, ticket type
    expect(page.text).toMatch(/<label for="email">Email<\/label>/);
    expect(page.text).toMatch(/<button type="submit">Buy<\/button>/);
    expect(page.text).toContain('10 left');

    const admin = await get('/admin');
    expect(admin.status).toBe(200);
    expectStrictPage(admin);
    expect(admin.text).toContain('Admin token');

    for (const path of [
      '/events/unknown',
      '/events/..%2F',
      '/purchases/unknown',
      '/purchases/x/tickets/y/qr.svg',
    ]) {
      const missing = await get(path);
      expect(missing.status, path).toBe(404);
      expectStrictPage(missing);
    }
  });

  it('serves assets by content hash, cached for good only at their current hash', async () => {
    const page = (await get('/')).text;
    const links = [...page.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]!);
    expect(links.map((l) => l.split('?')[0]).sort()).toEqual([
      '/assets/buyer.js',
      '/assets/icon.svg',
      '/assets/style.css',
    ]);
    for (const link of links) {
      const asset = await get(link);
      expect(asset.status, link).toBe(200);
      expect(asset.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
      const etag = asset.headers.get('etag')!;
      expect((await get(link, { 'if-none-match': etag })).status).toBe(304);
    }
    const js = await get('/assets/buyer.js?v=old');
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(js.headers.get('cache-control')).toBe('no-cache');
    expect((await get('/assets/nope.js')).status).toBe(404);
  });

  it('refuses a buy form posted from another site, and queues nothing', async () => {
    const typeId = event.ticketTypes[0]!.id;
    const fields = { buyerId: 'victim@example.com', [`qty-${typeId}`]: '1', idempotencyKey: 'cross-key' };
    const host = new URL(base).host;
    const crossSite: Array<Record<string, string>> = [
      { origin: 'https://evil.example' },
      { origin: 'null' }, // a sandboxed frame or a no-referrer page elsewhere
      { origin: `http://${host}.evil.example` },
      { origin: `https://${host}` }, // another scheme is another origin
      { referer: 'https://evil.example/page' },
      // Forwarded headers count only from a trusted proxy, and this test client is none.
      { origin: 'https://evil.example', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' },
    ];
    for (const headers of crossSite) {
      const refused = await postForm(fields, headers);
      expect(refused.status, JSON.stringify(headers)).toBe(403);
      expect(refused.headers.get('content-type')).toBe('application/json; charset=utf-8');
      expect(JSON.parse(refused.text)).toMatchObject({ error: { code: 'forbidden' } });
    }
    const stats = await fetch(`${base}/api/events/${event.id}/stats`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(stats.status).toBe(200);
    expect(((await stats.json()) as { purchases: { queued: number } }).purchases.queued).toBe(0);
  });

  it('takes the origin a trusted proxy forwards, and only from a trusted proxy', async () => {
    const proxied = await startOnsale({ workers: 0, env: { ONSALE_TRUST_PROXY: '127.0.0.1' } });
    try {
      const proxiedEvent = await createEvent(proxied.baseUrl, {
        name: 'Behind a balancer',
        ticketTypes: [{ name: 'Seat', priceCents: 100, capacity: 5, maxPerBuyer: 1 }],
      });
      const typeId = proxiedEvent.ticketTypes[0]!.id;
      const post = (headers: Record<string, string>, key: string) =>
        fetch(`${proxied.baseUrl}/events/${proxiedEvent.id}/buy`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
          body: new URLSearchParams({
            buyerId: `${key}@example.com`,
            [`qty-${typeId}`]: '1',
            idempotencyKey: key,
          }),
          redirect: 'manual',
        });
      const forwarded = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'tickets.example' };
      expect((await post({ ...forwarded, origin: 'https://tickets.example' }, 'through-proxy')).status).toBe(
        303,
      );
      expect(
        (await post({ ...forwarded, origin: 'https://evil.example' }, 'evil-through-proxy')).status,
      ).toBe(403);
      // The server's own address is not the site the buyers see behind the balancer.
      expect((await post({ ...forwarded, origin: proxied.baseUrl }, 'direct')).status).toBe(403);
    } finally {
      await proxied.stop();
    }
  });

  it('buys with the plain form, once per key, and says when it is busy', async () => {
    const typeId = event.ticketTypes[0]!.id;
    const fields = { buyerId: 'nojs@example.com', [`qty-${typeId}`]: '1', idempotencyKey: 'form-key-1' };

    const none = await postForm({ ...fields, [`qty-${typeId}`]: '0' });
    expect(none.status).toBe(400);
    expect(none.text).toContain('Choose at least one ticket.');
    expect(none.text).toContain('value="nojs@example.com"'); // what was typed is kept

    // What a browser sends with the page's own form (Referrer-Policy: same-origin keeps the real Origin).
    const bought = await postForm(fields, { origin: base, referer: `${base}/events/${event.id}` });
    expect(bought.status).toBe(303);
    const location = bought.headers.get('location')!;
    expect(location).toMatch(/^\/purchases\/[\w~.-]+$/);
    // The same form sent again (a double click, a resubmit) is the same purchase.
    expect((await postForm(fields)).headers.get('location')).toBe(location);

    const queued = await get(location);
    expect(queued.status).toBe(200);
    expectStrictPage(queued);
    expect(queued.headers.get('cache-control')).toBe('no-store');
    expect(queued.text).toMatch(/data-status="queued"/);
    expect(queued.text).toMatch(/<noscript><meta http-equiv="refresh" content="3" ?\/?><\/noscript>/);

    // The queue holds two purchases at most: a third buyer is refused, told so, and keeps the form.
    const second = { ...fields, buyerId: 'second@example.com', idempotencyKey: 'form-key-2' };
    expect((await postForm(second, { referer: `${base}/events/${event.id}` })).status).toBe(303);
    const busy = await postForm({ ...fields, buyerId: 'third@example.com', idempotencyKey: 'form-key-3' });
    expect(busy.status).toBe(503);
    expect(busy.headers.get('retry-after')).toBe('2');
    expect(busy.text).toContain('buying right now');
    expect(busy.text).toContain('value="form-key-3"');

    const invalid = await postForm({ ...fields, buyerId: '', idempotencyKey: 'form-key-4' });
    expect(invalid.status).toBe(400);
    expect(invalid.text).toContain('Please enter your email address');
    const tooMany = await postForm({ ...fields, [`qty-${typeId}`]: '3', idempotencyKey: 'form-key-5' });
    expect(tooMany.status).toBe(400);
    expect(tooMany.text).toMatch(/<p class="notice error">[^<]*must be at most 2/);

    // The API itself still takes JSON only: the form parser belongs to the pages.
    const api = await fetch(`${base}/api/events/${event.id}/purchases`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'buyerId=x',
    });
    expect(api.status).toBe(415);

    onsale.addWorker();
    const purchaseId = location.split('/').pop()!;
    const final = await waitFinal(base, purchaseId);
    expect(final.status).toBe('confirmed');
    const confirmed = await get(location);
    expect(confirmed.text).toContain('Confirmed');
    expect(confirmed.text).not.toContain('http-equiv="refresh"');
    const ticket = final.tickets[0];
    expect(confirmed.text).toContain(ticket.code);
    const qr = await get(`/purchases/${purchaseId}/tickets/${ticket.id}/qr.svg`);
    expect(qr.status).toBe(200);
    expect(qr.headers.get('content-type')).toBe('image/svg+xml');
    expect(qr.headers.get('cache-control')).toBe('private, max-age=31536000, immutable');
    expect(qr.text).toMatch(
      /^<svg [^>]*viewBox="0 0 (\d+) \1"[^>]*><rect[^>]*\/><path d="(M\d+ \d+h1v1h-1z)+"/,
    );
  });
});
