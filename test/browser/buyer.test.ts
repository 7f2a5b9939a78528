/**
 * The buyer page in real Chromium against real `onsale serve` and `onsale worker` processes: a purchase that
 * is confirmed with its QR code, one that is refused while the queue is full and goes through by itself
 * once a worker drains it (one purchase, not two), and a sold-out purchase. No console error is tolerated
 * but the browser's own log of the 503s that the busy test provokes on purpose.
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEvent, getJson, purchase, waitFinal, type CreatedEvent } from '../helpers/api.js';
import { launchBrowser, openPage, screenshots, type WatchedPage } from '../helpers/browser.js';
import { startOnsale, until, type Onsale } from '../helpers/processes.js';

let browser: Browser;
/** One server with a worker for the tests that need nothing special (fewer processes on a busy machine). */
let main: Onsale;
const running: Onsale[] = [];
const pages: WatchedPage[] = [];

beforeAll(async () => {
  [browser, main] = await Promise.all([launchBrowser(), startOnsale()]);
  running.push(main);
});

afterAll(async () => {
  await browser?.close();
  await Promise.all(running.map((o) => o.stop()));
});

async function onsale(opts: Parameters<typeof startOnsale>[0] = {}): Promise<Onsale> {
  const o = await startOnsale(opts);
  running.push(o);
  return o;
}

async function page(viewport?: { width: number; height: number }): Promise<WatchedPage> {
  const p = await openPage(browser, viewport);
  pages.push(p);
  return p;
}

const purchaseIdOf = (url: string) => /\/purchases\/([^/?#]+)$/.exec(url)?.[1] ?? '';

describe('buyer page', () => {
  it('lists the event, buys a ticket and shows it Confirmed with a QR code', async () => {
    const o = main;
    const event = await createEvent(o.baseUrl, {
      name: 'Rooftop <b>jazz</b> & friends',
      ticketTypes: [{ name: 'Standing', priceCents: 2500, capacity: 50, maxPerBuyer: 4 }],
    });
    const { page: p, errors } = await page();
    await p.goto(o.baseUrl);
    // Names are text, never markup.
    await p.getByRole('link', { name: 'Rooftop <b>jazz</b> & friends' }).click();
    await expect.poll(() => p.getByRole('heading', { level: 1 }).textContent()).toBe(event.name);
    await expect.poll(() => p.locator('.available').textContent()).toBe('50 left');
    await p.getByLabel('Email').fill('ada@example.com');
    await p.getByLabel(/Standing/).selectOption('2');
    await p.getByRole('button', { name: 'Buy' }).click();

    await p.getByRole('heading', { name: 'Confirmed' }).waitFor({ timeout: 60_000 });
    const qr = p.getByRole('img', { name: /QR code of ticket/ });
    await expect.poll(() => qr.count()).toBe(2);
    await until(() => qr.first().evaluate((img: any) => img.complete && img.naturalWidth > 0));

    const stored = await getJson(`${o.baseUrl}/api/purchases/${purchaseIdOf(p.url())}`);
    expect(stored.body).toMatchObject({ status: 'confirmed', buyerId: 'ada@example.com' });
    expect(stored.body.tickets).toHaveLength(2);
    for (const ticket of stored.body.tickets) await p.getByText(ticket.code, { exact: true }).waitFor();
    await screenshots(p, 'buyer-confirmed');

    // Availability follows the sale live, without a reload. The page may be rendered from a web server's
    // availability read of the last 500 ms (EventCache), taken before the allocation; its next poll mends it.
    await p.goto(`${o.baseUrl}/events/${event.id}`);
    await expect.poll(() => p.locator('.available').textContent(), { timeout: 15_000 }).toBe('48 left');
    const other = await purchase(o.baseUrl, event.id, {
      buyerId: 'someone-else',
      items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 3 }],
    });
    await waitFinal(o.baseUrl, other.body.purchaseId);
    await expect.poll(() => p.locator('.available').textContent(), { timeout: 15_000 }).toBe('45 left');
    await screenshots(p, 'buyer-event');
    expect(errors).toEqual([]);
  });

  it('tells the buyer it is busy during 503s, retries by itself and makes exactly one purchase', async () => {
    // A queue of at most one purchase and no worker: the second purchase is refused with 503 until a
    // worker is started.
    const o = await onsale({ workers: 0, env: { ONSALE_MAX_QUEUE_DEPTH: '1' } });
    const event: CreatedEvent = await createEvent(o.baseUrl);
    const first = await purchase(o.baseUrl, event.id, {
      buyerId: 'first-in-line',
      items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
    });
    expect(first.status).toBe(202);
    const refused = await purchase(o.baseUrl, event.id, {
      buyerId: 'probe',
      items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
    });
    expect(refused.status).toBe(503);

    const { page: p, errors } = await page();
    await p.goto(`${o.baseUrl}/events/${event.id}`);
    await p.getByLabel('Email').fill('patient@example.com');
    await p.getByRole('button', { name: 'Buy' }).click();
    const busy = p.getByText(/buying right now/);
    await busy.waitFor({ timeout: 15_000 });
    // It keeps trying while it waits: at least one more refusal.
    await p.getByText(/attempt 3/).waitFor({ timeout: 15_000 });
    await screenshots(p, 'buyer-busy');

    o.addWorker();
    await p.getByRole('heading', { name: 'Confirmed' }).waitFor({ timeout: 60_000 });
    const mine = await getJson(`${o.baseUrl}/api/events/${event.id}/purchases?q=patient%40example.com`, true);
    expect(mine.body.purchases).toHaveLength(1);
    expect(mine.body.purchases[0].purchaseId).toBe(purchaseIdOf(p.url()));

    // The only console errors are Chromium's own lines for the 503 answers it received.
    const unexpected = errors.filter((e) => !/Failed to load resource: .*status of 503/.test(e));
    expect(unexpected).toEqual([]);
    expect(errors.length).toBeGreaterThan(0);
  });

  it('explains kindly that the tickets sold out', async () => {
    const o = main;
    const event = await createEvent(o.baseUrl, {
      ticketTypes: [{ name: 'Last seat', priceCents: 0, capacity: 1, maxPerBuyer: 1 }],
    });
    const { page: p, errors } = await page();
    await p.goto(`${o.baseUrl}/events/${event.id}`);
    // Someone else takes the only seat while this buyer's page is open.
    const taken = await purchase(o.baseUrl, event.id, {
      buyerId: 'quicker',
      items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
    });
    await waitFinal(o.baseUrl, taken.body.purchaseId);
    await p.getByLabel('Email').fill('late@example.com');
    await p.getByRole('button', { name: 'Buy' }).click();
    await p.getByRole('heading', { name: 'No tickets this time' }).waitFor({ timeout: 60_000 });
    await p
      .getByText('Sorry — these tickets sold out before we reached your request.', { exact: false })
      .waitFor();
    expect(await p.getByRole('img', { name: /QR code/ }).count()).toBe(0);
    await screenshots(p, 'buyer-sold-out');
    expect(errors).toEqual([]);
  });
  it('buys with the plain form when JavaScript is off: the page itself passes the cross-site check', async () => {
    const event = await createEvent(main.baseUrl, {
      name: 'No script night',
      ticketTypes: [{ name: 'Seat', priceCents: 1000, capacity: 5, maxPerBuyer: 2 }],
    });
    const context = await browser.newContext({ javaScriptEnabled: false });
    try {
      const p = await context.newPage();
      await p.goto(`${main.baseUrl}/events/${event.id}`);
      await p.getByLabel('Email').fill('plain@example.com');
      await p.getByLabel(/Seat/).selectOption('1');
      const [answer] = await Promise.all([
        p.waitForResponse((r) => r.url().endsWith(`/events/${event.id}/buy`)),
        p.getByRole('button', { name: 'Buy' }).click(),
      ]);
      // The browser's own Origin header names this server (no `Origin: null`), so the post is taken.
      expect(answer.status()).toBe(303);
      await p.waitForURL(/\/purchases\/[^/]+$/);
      const final = await waitFinal(main.baseUrl, purchaseIdOf(p.url()));
      expect(final.status).toBe('confirmed');
    } finally {
      await context.close();
    }
  });
});
