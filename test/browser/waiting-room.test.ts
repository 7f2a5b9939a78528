/**
 * The waiting page in real Chromium against real `onsale serve` and `onsale worker` processes: joining
 * before the opening shows the lottery notice (with and without JavaScript); a buyer behind others sees
 * their number fall as those ahead buy, is let in, lands on the purchase form with the token and buys. A
 * room asking for a proof of work is joined by the page solving it; without JavaScript the page says why not.
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SUGGESTED_DIFFICULTY } from '../../src/domain/proof-of-work.js';
import { getJson, purchase, waitFinal } from '../helpers/api.js';
import { launchBrowser, openPage, screenshots } from '../helpers/browser.js';
import { ADMIN, JSON_TYPE, send } from '../helpers/http.js';
import { ADMIN_TOKEN, LOOPBACK_EXEMPT, startOnsale, type Onsale } from '../helpers/processes.js';

let browser: Browser;
let onsale: Onsale;

beforeAll(async () => {
  [browser, onsale] = await Promise.all([launchBrowser(), startOnsale({ env: LOOPBACK_EXEMPT })]);
});
afterAll(async () => {
  await browser?.close();
  await onsale?.stop();
});

async function roomEvent(salesOpenAt: string, room: Record<string, unknown> = {}) {
  const answer = await send(onsale.baseUrl, 'POST', '/api/events', {
    headers: ADMIN,
    body: JSON.stringify({
      name: 'Big night',
      salesOpenAt,
      ticketTypes: [{ name: 'GA', priceCents: 4000, capacity: 20, maxPerBuyer: 2 }],
      waitingRoom: { maxActiveBuyers: 1, ...room },
    }),
  });
  expect(answer.status, answer.text).toBe(201);
  return answer.body as { id: string; ticketTypes: Array<{ id: string }> };
}

async function joinApi(eventId: string, buyerId: string): Promise<string> {
  const answer = await send(onsale.baseUrl, 'POST', `/api/events/${eventId}/queue`, {
    headers: JSON_TYPE,
    body: JSON.stringify({ buyerId }),
  });
  expect(answer.status).toBe(201);
  return answer.body.placeId;
}

async function buyAdmitted(eventId: string, typeId: string, placeId: string, buyerId: string) {
  let token = '';
  await expect
    .poll(
      async () => {
        const { body } = await getJson(`${onsale.baseUrl}/api/queue/${placeId}`);
        token = body.admission?.token ?? '';
        return body.state;
      },
      { timeout: 20_000 },
    )
    .toBe('admitted');
  const bought = await purchase(
    onsale.baseUrl,
    eventId,
    { buyerId, items: [{ ticketTypeId: typeId, quantity: 1 }] },
    { 'onsale-admission': token },
  );
  expect(bought.status).toBe(202);
  await waitFinal(onsale.baseUrl, bought.body.purchaseId);
}

describe('waiting page', () => {
  it('before the opening: joins and shows the lottery notice, with and without JavaScript', async () => {
    const event = await roomEvent(new Date(Date.now() + 3_600_000).toISOString());
    for (const javaScriptEnabled of [true, false]) {
      const context = await browser.newContext({ javaScriptEnabled });
      const p = await context.newPage();
      const errors: string[] = [];
      p.on('pageerror', (e) => errors.push(e.message));
      await p.goto(`${onsale.baseUrl}/events/${event.id}`);
      await p.getByLabel('Email').fill(`early-${String(javaScriptEnabled)}@example.com`);
      await p.getByRole('button', { name: 'Join the line' }).click();
      await p.getByRole('heading', { name: 'You are in the waiting room' }).waitFor();
      expect(await p.locator('.lottery').textContent()).toMatch(
        /The line opens at .+; everyone who arrives before then gets\s+a\s+random place/,
      );
      expect(p.url()).toMatch(new RegExp(`/events/${event.id}/queue\\?place=`));
      if (!javaScriptEnabled) {
        // Without the script the page reloads itself: an hour before the opening, every 30 s.
        expect(await p.content()).toMatch(/http-equiv="refresh" content="30;url=\/events\//);
      } else {
        await screenshots(p, 'waiting-room-prequeue');
      }
      expect(errors).toEqual([]);
      await context.close();
    }
  });

  it('shows the number falling as those ahead buy, then lets the buyer in to buy', async () => {
    const event = await roomEvent(new Date().toISOString());
    const typeId = event.ticketTypes[0]!.id;
    const first = await joinApi(event.id, 'first@example.com');
    const second = await joinApi(event.id, 'second@example.com');

    const { page: p, errors } = await openPage(browser);
    await p.goto(`${onsale.baseUrl}/events/${event.id}/queue`);
    await p.getByLabel('Email').fill('me@example.com');
    await p.getByRole('button', { name: 'Join the line' }).click();
    // first is let in (maxActiveBuyers 1); second, then me.
    await expect
      .poll(() => p.locator('[data-field="position"]').textContent(), { timeout: 20_000 })
      .toBe('2');
    await expect
      .poll(() => p.locator('[data-field="ahead"]').textContent())
      .toBe('1 person is ahead of you.');
    await screenshots(p, 'waiting-room-waiting');

    await buyAdmitted(event.id, typeId, first, 'first@example.com');
    await expect
      .poll(() => p.locator('[data-field="position"]').textContent(), { timeout: 20_000 })
      .toBe('1');
    await expect.poll(() => p.locator('[data-field="ahead"]').textContent()).toBe('You are next.');
    expect(Number(await p.locator('progress').getAttribute('value'))).toBeGreaterThanOrEqual(0);

    await buyAdmitted(event.id, typeId, second, 'second@example.com');
    // Let in: the page becomes the purchase form, the email kept, the token with it.
    await p.getByRole('button', { name: 'Buy' }).waitFor({ timeout: 30_000 });
    expect(await p.getByLabel('Email').inputValue()).toBe('me@example.com');
    await screenshots(p, 'waiting-room-admitted');
    await p.getByRole('button', { name: 'Buy' }).click();
    await p.getByRole('heading', { name: 'Confirmed' }).waitFor({ timeout: 60_000 });
    expect(errors).toEqual([]);
  });

  it('joins a room that asks for a proof of work: the page solves it; without JavaScript it says why not', async () => {
    const event = await roomEvent(new Date().toISOString(), { powDifficulty: SUGGESTED_DIFFICULTY });
    for (const javaScriptEnabled of [false, true]) {
      const context = await browser.newContext({ javaScriptEnabled });
      const p = await context.newPage();
      const errors: string[] = [];
      p.on('pageerror', (e) => errors.push(e.message));
      await p.goto(`${onsale.baseUrl}/events/${event.id}/queue`);
      await p.getByLabel('Email').fill(`pow-${String(javaScriptEnabled)}@example.com`);
      if (!javaScriptEnabled) {
        expect(await p.content()).toMatch(/please turn on JavaScript to join/);
        await p.getByRole('button', { name: 'Join the line' }).click();
        await p.getByText('this waiting room asks for a proof of work').waitFor();
      } else {
        const started = Date.now();
        await p.getByRole('button', { name: 'Join the line' }).click();
        await p.waitForURL(new RegExp(`/events/${event.id}/queue\\?place=`), { timeout: 120_000 });
        // A figure for docs/waiting-room.md, not an assertion: the machine's load decides it.
        console.log(`proof of work at ${SUGGESTED_DIFFICULTY} bits: joined in ${Date.now() - started} ms`);
      }
      expect(errors).toEqual([]);
      await context.close();
    }
    await expect
      .poll(async () => (await getJson(`${onsale.baseUrl}/api/events/${event.id}/queue`, true)).body, {
        timeout: 20_000,
      })
      .toMatchObject({ powDifficulty: SUGGESTED_DIFFICULTY, admitted: 1 });
  });

  it('the admin page shows the line live and changes its limits during the sale', async () => {
    const event = await roomEvent(new Date().toISOString());
    for (const buyer of ['a', 'b', 'c']) await joinApi(event.id, `${buyer}@example.com`);
    const { page: p, errors } = await openPage(browser);
    await p.goto(`${onsale.baseUrl}/admin`);
    await p.getByLabel('Admin token').fill(ADMIN_TOKEN);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.getByLabel('Event', { exact: true }).selectOption(event.id);
    const figure = (name: string) => p.locator(`[data-figure="${name}"]`).textContent();
    await expect.poll(() => figure('room-admitted'), { timeout: 20_000 }).toBe('1');
    await expect.poll(() => figure('room-waiting')).toBe('2');
    await expect.poll(() => figure('room-active')).toBe('1 of 1');
    await p.getByLabel(/maxActiveBuyers/).fill('5');
    await p.getByRole('button', { name: 'Change the limits' }).click();
    await expect.poll(() => p.locator('#room-status').textContent()).toBe('Now at most 5 at once.');
    // The next step lets the other two in.
    await expect.poll(() => figure('room-admitted'), { timeout: 20_000 }).toBe('3');
    await expect.poll(() => figure('room-waiting')).toBe('0');
    await screenshots(p, 'waiting-room-admin');
    expect(errors).toEqual([]);
  });
});
