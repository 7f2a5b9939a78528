import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEvent, getJson, purchase, type CreatedEvent } from './helpers/api.js';
import { CHECKOUT_ENV, pay, waitAllocated } from './helpers/checkout.js';
import { LOOPBACK_EXEMPT, startOnsale, type Onsale } from './helpers/processes.js';
import { sendRaw } from './helpers/http.js';

/**
 * The purchase page's Pay and Cancel forms without JavaScript, over plain HTTP against a real server
 * (SQLite, one web server, one worker): each answers 303 back to the purchase's page (or on to the 3-D
 * Secure page), which says the outcome; a post from another site is refused and changes nothing; bad input
 * is never a 500 and changes nothing.
 */
describe('pay and cancel forms without JavaScript', () => {
  let onsale: Onsale;
  let base: string;
  let event: CreatedEvent;

  beforeAll(async () => {
    onsale = await startOnsale({ env: { ...CHECKOUT_ENV, ...LOOPBACK_EXEMPT, ONSALE_BUYER_RATE: 'off' } });
    base = onsale.baseUrl;
    event = await createEvent(base, {
      name: 'Plain forms night',
      holdSeconds: 300,
      ticketTypes: [{ name: 'GA', priceCents: 2500, capacity: 100, maxPerBuyer: 4 }],
    });
  }, 60_000);
  afterAll(async () => onsale?.stop());

  async function held(): Promise<string> {
    const res = await purchase(base, event.id, {
      buyerId: `b-${randomUUID()}`,
      items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 2 }],
    });
    expect(res.status).toBe(202);
    const p = await waitAllocated(base, res.body.purchaseId);
    expect(p.status).toBe('held');
    return p.purchaseId;
  }

  /** A form post as the page's own form sends it (Origin: this server), unless headers say otherwise. */
  async function post(
    path: string,
    body: string | Record<string, string>,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; location: string | null; text: string }> {
    const all: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      origin: base,
      ...headers,
    };
    // An empty value: no such header at all.
    for (const [name, value] of Object.entries(all)) if (value === '') delete all[name];
    const text = typeof body === 'string' ? body : new URLSearchParams(body).toString();
    if (text.length > 1_000_000) {
      // Past the body limit the server answers 413 from the announced length and closes without reading
      // the rest; sent anyway, the unread bytes make the close a reset that can destroy the answer before
      // it is read (fetch: EPIPE). So only the head is sent, with the body's length, as it announces it.
      const head = Object.entries({ ...all, 'content-length': String(text.length), connection: 'close' })
        .map(([name, value]) => `${name}: ${value}\r\n`)
        .join('');
      const res = await sendRaw(base, `POST ${path} HTTP/1.1\r\nhost: ${new URL(base).host}\r\n${head}\r\n`);
      return { status: res.status, location: res.headers.location ?? null, text: res.text };
    }
    const res = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: all,
      body: text,
      redirect: 'manual',
    });
    return { status: res.status, location: res.headers.get('location'), text: await res.text() };
  }

  const state = async (id: string) => (await getJson(`${base}/api/purchases/${id}`)).body;
  const pageOf = async (path: string) => (await fetch(`${base}${path}`)).text();

  it("renders the held purchase's Pay and Cancel as plain forms, the card field labelled as a test mode", async () => {
    const id = await held();
    const page = await pageOf(`/purchases/${id}`);
    expect(page).toContain(`<form id="pay" method="post" action="/purchases/${id}/pay"`);
    expect(page).toMatch(/<input type="hidden" name="attemptKey" value="[A-Za-z0-9_-]{22}"/);
    expect(page).toMatch(/Card — test mode:[\s\S]*<input name="paymentToken"/);
    expect(page).toMatch(
      new RegExp(`<button type="submit" formaction="/purchases/${id}/cancel" formnovalidate`),
    );
    // Without the script, a held page reloads itself when the hold ends, not every few seconds under the buyer.
    const refresh = Number(/http-equiv="refresh"\s+content="(\d+);url=/.exec(page)?.[1]);
    expect(refresh).toBeGreaterThan(290);
  });

  it('pays with tok_visa: 303 back to the purchase, confirmed with its tickets and QR codes', async () => {
    const id = await held();
    const page = await pageOf(`/purchases/${id}`);
    const attemptKey = /name="attemptKey" value="([^"]+)"/.exec(page)![1]!;
    const paid = await post(`/purchases/${id}/pay`, { attemptKey, paymentToken: 'tok_visa' });
    expect(paid).toMatchObject({ status: 303, location: `/purchases/${id}` });
    const confirmed = await state(id);
    expect(confirmed.status).toBe('confirmed');
    expect(confirmed.tickets).toHaveLength(2);
    const after = await pageOf(paid.location!);
    expect(after.match(/alt="QR code of ticket/g)).toHaveLength(2);
    expect(after).not.toContain('http-equiv="refresh"');
    // The same form sent again (a double click, a reload): the same attempt, nothing more.
    const again = await post(`/purchases/${id}/pay`, { attemptKey, paymentToken: 'tok_visa' });
    expect(again).toMatchObject({ status: 303, location: `/purchases/${id}` });
    expect((await state(id)).tickets).toEqual(confirmed.tickets);
  });

  it('says a declined card on the page, keeps the hold, and then pays with another card', async () => {
    const id = await held();
    const declined = await post(`/purchases/${id}/pay`, {
      attemptKey: 'first',
      paymentToken: 'tok_chargeDeclined',
    });
    expect(declined).toMatchObject({ status: 303, location: `/purchases/${id}?notice=declined` });
    const page = await pageOf(declined.location!);
    expect(page).toContain('Your card was declined. Nothing was charged: try another card.');
    expect((await state(id)).status).toBe('held');
    // Its page says so even without the notice in the address (the payment's state says it).
    expect(await pageOf(`/purchases/${id}`)).toContain('Your card was declined.');
    const paid = await post(`/purchases/${id}/pay`, { attemptKey: 'second', paymentToken: 'tok_visa' });
    expect(paid).toMatchObject({ status: 303, location: `/purchases/${id}` });
    expect((await state(id)).status).toBe('confirmed');
  });

  it("goes on to the test provider's 3-D Secure page, and back to the purchase", async () => {
    const id = await held();
    const started = await post(`/purchases/${id}/pay`, { paymentToken: 'tok_threeDSecure' });
    expect(started).toMatchObject({ status: 303, location: `/payments/test/3ds/${id}` });
    expect(await pageOf(started.location!)).toContain('Approve');
    const failed = await post(`/payments/test/3ds/${id}`, { outcome: 'fail' });
    expect(failed).toMatchObject({ status: 303, location: `/purchases/${id}` });
    expect(await pageOf(failed.location!)).toContain('The payment was not confirmed with your bank');
    expect((await state(id)).status).toBe('held');
  });

  it('cancels: 303 back to the purchase, cancelled; a purchase no longer cancellable is said so', async () => {
    const id = await held();
    const cancelled = await post(`/purchases/${id}/cancel`, {});
    expect(cancelled).toMatchObject({ status: 303, location: `/purchases/${id}` });
    expect((await state(id)).status).toBe('cancelled');
    expect(await pageOf(cancelled.location!)).toContain('This purchase was cancelled');
    // Paying a cancelled purchase: refused by the API, said on the page.
    const late = await post(`/purchases/${id}/pay`, { paymentToken: 'tok_visa' });
    expect(late).toMatchObject({ status: 303, location: `/purchases/${id}?notice=not_payable` });
    expect(await pageOf(late.location!)).toContain('This purchase can no longer be paid.');

    const paidId = await held();
    expect((await pay(base, paidId, 'tok_visa')).status).toBe(200);
    const refused = await post(`/purchases/${paidId}/cancel`, {});
    expect(refused).toMatchObject({ status: 303, location: `/purchases/${paidId}?notice=not_cancellable` });
    expect((await state(paidId)).status).toBe('confirmed');
  });

  it("refuses a post from another site's page (Origin, else Referer) with 403, and changes nothing", async () => {
    const id = await held();
    for (const path of [`/purchases/${id}/pay`, `/purchases/${id}/cancel`]) {
      for (const headers of [
        { origin: 'https://evil.example' },
        { origin: 'null' },
        { origin: `https://${new URL(base).host}` },
        { origin: '', referer: 'https://evil.example/page' },
      ] as Array<Record<string, string>>) {
        const refused = await post(path, { paymentToken: 'tok_visa' }, headers);
        expect(refused.status, `${path} ${JSON.stringify(headers)}`).toBe(403);
        expect(JSON.parse(refused.text)).toMatchObject({ error: { code: 'forbidden' } });
      }
    }
    const after = await state(id);
    expect(after.status).toBe('held');
    expect(after.payment).toBeNull();
  });

  it('answers bad input with a 4xx or a notice, never a 500, and changes nothing', async () => {
    const id = await held();
    const cases: Array<[string, string | Record<string, string>, Record<string, string>?]> = [
      [`/purchases/${id}/pay`, ''],
      [`/purchases/${id}/pay`, { paymentToken: '' }],
      [`/purchases/${id}/pay`, { paymentToken: 'x'.repeat(300) }],
      [`/purchases/${id}/pay`, { paymentToken: 'tok visa\u0000' }],
      [`/purchases/${id}/pay`, { paymentToken: 'tok_visa', attemptKey: 'é\n' }],
      [`/purchases/${id}/pay`, { paymentToken: 'tok_visa', attemptKey: 'k'.repeat(129) }],
      [`/purchases/${id}/pay`, '%%%&&&=', {}],
      [`/purchases/${id}/pay`, '{"paymentToken":42}', { 'content-type': 'application/json' }],
      [`/purchases/${id}/pay`, '{not json', { 'content-type': 'application/json' }],
      [
        `/purchases/${id}/pay`,
        'paymentToken=tok_visa',
        { 'content-type': 'multipart/form-data; boundary=x' },
      ],
      [`/purchases/${id}/pay`, `paymentToken=${'a'.repeat(2_000_000)}`],
      [`/purchases/${id}/cancel`, '{not json', { 'content-type': 'application/json' }],
      ['/purchases/not%20an%20id/pay', { paymentToken: 'tok_visa' }],
      ['/purchases/nosuchpurchase/pay', { paymentToken: 'tok_visa' }],
      ['/purchases/nosuchpurchase/cancel', {}],
    ];
    for (const [path, body, headers] of cases) {
      const res = await post(path, body, headers);
      const what = `${path} ${String(body).slice(0, 40)} ${JSON.stringify(headers)}`;
      expect(res.status, what).toBeLessThan(500);
      if (res.status === 303) expect(res.location, what).toBe(`/purchases/${id}?notice=invalid`);
      else expect(res.status, what).toBeGreaterThanOrEqual(400);
    }
    const after = await state(id);
    expect(after.status).toBe('held');
    expect(after.payment).toBeNull();
    // The notice in the address is one of the page's own texts, or nothing: never words of the address.
    const page = await pageOf(`/purchases/${id}?notice=%3Cscript%3Ealert(1)%3C/script%3E`);
    expect(page).not.toContain('data-notice');
    expect(page).not.toContain('alert(1)');
    expect(await pageOf(`/purchases/${id}?notice=busy`)).toContain('nothing will be charged twice');
  });
});
