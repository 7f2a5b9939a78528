import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

/** Debian's Chromium (CI installs it): no browser is downloaded. */
const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1280, height: 800 };
const SCREENSHOTS = resolve(import.meta.dirname, '../../test-results/screenshots');

export async function launchBrowser(): Promise<Browser> {
  try {
    return await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  } catch (error) {
    throw new Error(`Chromium did not start from ${CHROMIUM}; install it (see .ci/run)`, { cause: error });
  }
}

export interface WatchedPage {
  page: Page;
  context: BrowserContext;
  /** Every console error and uncaught page error so far. */
  errors: string[];
}

/** A page in a fresh context (its own storage) that records console errors and uncaught exceptions. */
export async function openPage(browser: Browser, viewport = PHONE): Promise<WatchedPage> {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()} (${message.location().url})`);
  });
  page.on('pageerror', (error) => errors.push(`page error: ${error.message}`));
  return { page, context, errors };
}

/** Saves the page as test-results/screenshots/<name>-<width>x<height>.png at the phone and desktop sizes. */
export async function screenshots(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  for (const size of [PHONE, DESKTOP]) {
    await page.setViewportSize(size);
    await page.screenshot({
      path: resolve(SCREENSHOTS, `${name}-${size.width}x${size.height}.png`),
      fullPage: true,
    });
  }
}
