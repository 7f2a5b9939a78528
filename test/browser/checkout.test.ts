/**
 * Checkout on the buyer page in real Chromium against real `onsale serve` and `onsale worker` processes:
 * buy, see the hold and its countdown, pay with the test provider's cards (tok_visa; a decline then
 * tok_visa; 3-D Secure approved on its page), get Confirmed with QR codes; and a hold left to expire, said
 * on the page. No console error is tolerated but the browser's own log of the declined payment's 402.
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEvent, type CreatedEvent } from '../helpers/api.js';
import { launchBrowser, openPage, type WatchedPage } from '../helpers/browser.js';
import { startOnsale, type Onsale } from '../helpers/processes.js';

let browser: Browser;
let onsale: Onsale;
const pages: WatchedPage[] = [];

beforeAll(async () => {
  [browser, onsale] = await Promise.all([launchBrowser(), startOnsale()]);
});

afterAll(async () => {
  // The browser logs the declined payment's 402 itself; that one is expected.
  for (const p of pages) expect(p.errors.filter((e) => !/status of 402/.test(e))).toEqual([]);
  await browser?.close();
  await onsale?.stop();
});

async function heldEvent(holdSeconds = 300): Promise<CreatedEvent> {
  return createEvent(onsale.baseUrl, {
    name: `Paid night ${holdSeconds}`,
    holdSeconds,
    ticketTypes: [{ name: 'Standing', priceCents: 2500, capacity: 50, maxPerBuyer: 4 }],
  });
}

/** Buys 2 tickets on the event page and waits for the hold. */
async function buyToHold(event: CreatedEvent, email: string): Promise<WatchedPage> {
  const watched = await openPage(browser);
  pages.push(watched);
  const p = watched.page;
  await p.goto(`${onsale.baseUrl}/events/${event.id}`);
  await p.getByLabel('Email').fill(email);
  await p.getByLabel(/Standing/).selectOption('2');
  await p.getByRole('button', { name: 'Buy' }).click();
  await p.getByRole('heading', { name: 'Reserved' }).waitFor({ timeout: 60_000 });
  await expect.poll(() => p.getByText(/Held for you until/).textContent()).toMatch(/left\)/);
  return watched;
}

async function expectConfirmed(watched: WatchedPage): Promise<void> {
  const p = watched.page;
  await p.getByRole('heading', { name: 'Confirmed' }).waitFor({ timeout: 30_000 });
  await expect.poll(() => p.getByRole('img', { name: /QR code of ticket/ }).count()).toBe(2);
}

describe('checkout on the buyer page', () => {
  it('pays with tok_visa and shows Confirmed with QR codes', async () => {
    const watched = await buyToHold(await heldEvent(), 'visa@example.com');
    const p = watched.page;
    await expect.poll(() => p.getByLabel(/test mode/).inputValue()).toBe('tok_visa');
    await p.getByRole('button', { name: 'Pay' }).click();
    await expectConfirmed(watched);
  });

  it('says a declined card, then pays with another', async () => {
    const watched = await buyToHold(await heldEvent(), 'declined@example.com');
    const p = watched.page;
    await p.getByLabel(/test mode/).fill('tok_chargeDeclined');
    await p.getByRole('button', { name: 'Pay' }).click();
    await p.getByText(/Your card was declined/).waitFor({ timeout: 30_000 });
    await expect.poll(() => p.getByRole('heading', { name: 'Reserved' }).isVisible()).toBe(true);
    await p.getByLabel(/test mode/).fill('tok_visa');
    await p.getByRole('button', { name: 'Pay' }).click();
    await expectConfirmed(watched);
  });

  it('goes through 3-D Secure: Approve, back to the purchase, Confirmed', async () => {
    const watched = await buyToHold(await heldEvent(), 'threeds@example.com');
    const p = watched.page;
    const purchaseUrl = p.url();
    await p.getByLabel(/test mode/).fill('tok_threeDSecure');
    await p.getByRole('button', { name: 'Pay' }).click();
    await p.getByRole('button', { name: 'Approve' }).waitFor({ timeout: 30_000 });
    expect(await p.getByText(/Test mode/).count()).toBeGreaterThan(0);
    await p.getByRole('button', { name: 'Approve' }).click();
    await p.waitForURL(purchaseUrl, { timeout: 30_000 });
    await expectConfirmed(watched);
  });

  it('says when a hold has expired', async () => {
    const watched = await buyToHold(await heldEvent(30), 'slow@example.com');
    const p = watched.page;
    await p.getByRole('heading', { name: 'Reservation expired' }).waitFor({ timeout: 45_000 });
    expect(await p.getByText(/ran out before payment/).isVisible()).toBe(true);
  }, 60_000);
});
