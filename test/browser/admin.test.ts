/**
 * The admin page in real Chromium against real `onsale serve` and `onsale worker` processes: sign in with
 * the token, create an event, watch its sold count rise while a flood of purchases runs, and find a
 * buyer's purchases. No console error is tolerated.
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCrowd } from '../helpers/crowd.js';
import { getJson, waitDrained } from '../helpers/api.js';
import { launchBrowser, openPage, screenshots, DESKTOP } from '../helpers/browser.js';
import { ADMIN_TOKEN, startOnsale, type Onsale } from '../helpers/processes.js';
import { sendCrowd } from '../../src/simulate/crowd.js';

let browser: Browser;
let onsale: Onsale;

beforeAll(async () => {
  [browser, onsale] = await Promise.all([launchBrowser(), startOnsale()]);
});

afterAll(async () => {
  await browser?.close();
  await onsale?.stop();
});

describe('admin page', () => {
  it('signs in, creates an event and shows the sold count rising during a flood', async () => {
    const { page: p, context, errors } = await openPage(browser, DESKTOP);
    await p.goto(`${onsale.baseUrl}/admin`);
    await p.getByLabel('Admin token').fill(ADMIN_TOKEN);
    await p.getByRole('button', { name: 'Sign in' }).click();

    await p.getByLabel('Name', { exact: true }).fill('Flood night');
    await p.getByLabel('Capacity (type 1)').fill('100000');
    await p.getByLabel('Most per buyer (type 1)').fill('4');
    await p.getByRole('button', { name: 'Create event' }).click();
    await p.getByText(/Created “Flood night”/).waitFor({ timeout: 15_000 });
    const eventId = await p.getByLabel('Event', { exact: true }).inputValue();
    const event = (await getJson(`${onsale.baseUrl}/api/events/${eventId}`)).body;
    expect(event.name).toBe('Flood night');
    // The form's default: buyers give an email, as the buyer page asks.
    expect(event.buyerIdKind).toBe('email');

    // The token lives in this tab's session storage only: not in the URL, not in a cookie.
    expect(p.url()).toBe(`${onsale.baseUrl}/admin`);
    expect(await p.evaluate(() => (globalThis as any).sessionStorage.getItem('onsale-admin-token'))).toBe(
      ADMIN_TOKEN,
    );
    expect(await context.cookies()).toEqual([]);

    const sold = p.locator('#stock tbody tr').first().locator('td').nth(1);
    await expect.poll(() => sold.textContent(), { timeout: 15_000 }).toBe('0');
    // The flood comes in waves; after each, the page must show the new sold count by itself. A single burst
    // could be allocated between two refreshes of the page on a fast machine, and prove nothing.
    const crowd = makeCrowd({ count: 2500, buyers: 1000, types: event.ticketTypes, seed: 11 });
    const shown: string[] = [];
    let stats: any;
    for (let wave = 0; wave < 5; wave++) {
      const intents = crowd.slice(wave * 500, (wave + 1) * 500);
      const sent = await sendCrowd({ baseUrl: onsale.baseUrl, eventId, intents, concurrency: 16 });
      expect(sent).toHaveLength(intents.length);
      expect(sent.every((s) => s.status === 202)).toBe(true);
      stats = await waitDrained(onsale.baseUrl, eventId);
      const expected = stats.ticketTypes[0].sold.toLocaleString('en');
      await expect.poll(() => sold.textContent(), { timeout: 15_000 }).toBe(expected);
      shown.push(expected);
    }
    const counts = shown.map((text) => Number(text.replaceAll(',', '')));
    expect(counts[0]).toBeGreaterThan(0);
    for (let i = 1; i < counts.length; i++) expect(counts[i]).toBeGreaterThan(counts[i - 1]!);
    await expect
      .poll(() => p.locator('[data-figure=confirmed]').textContent())
      .toBe(stats.purchases.confirmed.toLocaleString('en'));
    expect(await p.locator('#chart-allocations polyline').getAttribute('points')).toMatch(/\d/);

    // Search a buyer's purchases.
    const buyer = crowd[0]!.buyerId;
    const theirs = crowd.filter((c) => c.buyerId === buyer).length;
    await p.getByLabel('Buyer or purchase id').fill(buyer);
    await p.getByRole('button', { name: 'Search' }).click();
    const rows = p.locator('#purchases tbody tr');
    await expect.poll(() => rows.count()).toBe(theirs);
    for (const text of await rows.locator('td:nth-child(2)').allTextContents()) expect(text).toBe(buyer);

    await screenshots(p, 'admin-live');
    // Signed in still after a reload (same tab); a new tab's session is not.
    await p.reload();
    await p.getByRole('button', { name: 'Sign out' }).waitFor();
    const other = await openPage(browser, DESKTOP);
    await other.page.goto(`${onsale.baseUrl}/admin`);
    await other.page.getByRole('button', { name: 'Sign in' }).waitFor();
    await other.context.close();
    expect(errors).toEqual([]);
    expect(other.errors).toEqual([]);
  });
});
