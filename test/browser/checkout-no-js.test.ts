/**
 * Checkout on the buyer page in real Chromium with JavaScript turned off, against real `onsale serve` and
 * `onsale worker` processes: buy with the plain form, wait for the hold (the page reloads itself), then Pay
 * and Cancel as plain forms: tok_visa confirmed with QR codes; a decline said, then tok_visa; 3-D Secure
 * approved on the test provider's page; a cancel. The browser's own Origin header passes the cross-site
 * check.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEvent, type CreatedEvent } from '../helpers/api.js';
import { launchBrowser } from '../helpers/browser.js';
import { CHECKOUT_ENV } from '../helpers/checkout.js';
import { startOnsale, type Onsale } from '../helpers/processes.js';

let browser: Browser;
let onsale: Onsale;
let event: CreatedEvent;
/** Each test's page, held. */
const held = new Map<string, Page>();
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  [browser, onsale] = await Promise.all([launchBrowser(), startOnsale({ env: CHECKOUT_ENV })]);
  event = await createEvent(onsale.baseUrl, {
    name: 'No script, paid night',
    holdSeconds: 300,
    ticketTypes: [{ name: 'Standing', priceCents: 2500, capacity: 50, maxPerBuyer: 4 }],
  });
  // Every test's buyer buys at once: each then waits for its hold while the others' pages reload.
  const buyers = ['visa', 'declined', '3ds', 'cancel'];
  const pages = await Promise.all(buyers.map((b) => buyToHold(`plain-${b}@example.com`)));
  buyers.forEach((b, i) => held.set(b, pages[i]!));
}, 120_000);

afterAll(async () => {
  for (const c of contexts) await c.close();
  await browser?.close();
  await onsale?.stop();
});

/** Buys 2 tickets with the plain form, JavaScript off, and waits (the page reloads itself) for the hold. */
async function buyToHold(email: string): Promise<Page> {
  const context = await browser.newContext({ javaScriptEnabled: false });
  contexts.push(context);
  const p = await context.newPage();
  await p.goto(`${onsale.baseUrl}/events/${event.id}`);
  await p.getByLabel('Email').fill(email);
  await p.getByLabel(/Standing/).selectOption('2');
  await p.getByRole('button', { name: 'Buy' }).click();
  await p.waitForURL(/\/purchases\/[^/?]+$/);
  await p.getByRole('heading', { name: 'Reserved' }).waitFor({ timeout: 60_000 });
  await p.getByText(/Held for you until/).waitFor();
  return p;
}

/** Presses Pay with `token` and waits for the answer: the form's post, and where its 303 led. */
async function payWith(p: Page, token: string): Promise<number> {
  await p.getByLabel(/test mode/).fill(token);
  const [answer] = await Promise.all([
    p.waitForResponse((r) => r.request().method() === 'POST' && /\/pay$/.test(r.url())),
    p.getByRole('button', { name: 'Pay' }).click(),
  ]);
  await p.waitForLoadState();
  return answer.status();
}

async function expectConfirmed(p: Page): Promise<void> {
  await p.getByRole('heading', { name: 'Confirmed' }).waitFor({ timeout: 30_000 });
  await expect.poll(() => p.getByRole('img', { name: /QR code of ticket/ }).count()).toBe(2);
}

describe('checkout on the buyer page without JavaScript', () => {
  it('pays with tok_visa and shows Confirmed with QR codes', async () => {
    const p = held.get('visa')!;
    expect(await p.getByLabel(/test mode/).inputValue()).toBe('tok_visa');
    expect(await payWith(p, 'tok_visa')).toBe(303);
    await expectConfirmed(p);
  });

  it('says a declined card, keeps the hold, then pays with another', async () => {
    const p = held.get('declined')!;
    expect(await payWith(p, 'tok_chargeDeclined')).toBe(303);
    await p.getByText('Your card was declined. Nothing was charged: try another card.').waitFor();
    expect(await p.getByRole('heading', { name: 'Reserved' }).isVisible()).toBe(true);
    expect(await payWith(p, 'tok_visa')).toBe(303);
    await expectConfirmed(p);
    expect(await p.getByText(/Your card was declined/).count()).toBe(0);
  });

  it("goes through the test provider's 3-D Secure page: Approve, back to the purchase, Confirmed", async () => {
    const p = held.get('3ds')!;
    const purchaseUrl = p.url();
    expect(await payWith(p, 'tok_threeDSecure')).toBe(303);
    await p.getByRole('button', { name: 'Approve' }).waitFor({ timeout: 30_000 });
    expect(await p.getByText(/Test mode/).count()).toBeGreaterThan(0);
    await p.getByRole('button', { name: 'Approve' }).click();
    await p.waitForURL(purchaseUrl, { timeout: 30_000 });
    await expectConfirmed(p);
  });

  it('cancels, and says so', async () => {
    const p = held.get('cancel')!;
    const [answer] = await Promise.all([
      p.waitForResponse((r) => r.request().method() === 'POST' && /\/cancel$/.test(r.url())),
      p.getByRole('button', { name: 'Cancel' }).click(),
    ]);
    expect(answer.status()).toBe(303);
    await p.getByRole('heading', { name: 'Cancelled' }).waitFor({ timeout: 30_000 });
    expect(await p.getByText(/nothing was charged/).isVisible()).toBe(true);
  });
});
