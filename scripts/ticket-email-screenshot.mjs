// Renders the ticket email (src/mail/ticket-email.ts, built into dist/) with Chromium and saves it as
// docs/screenshots/ticket-email.png, the picture the README shows. Run after `npm run build`:
//   node scripts/ticket-email-screenshot.mjs
// The inline QR images are referenced by cid:, which only a mail client resolves: here they become data:
// URLs, the same bytes.
import { resolve } from 'node:path';
import { Buffer } from 'node:buffer';
import process from 'node:process';
import { chromium } from 'playwright-core';
import { ticketEmail } from '../dist/mail/ticket-email.js';

const event = {
  id: 'ev_demo',
  name: 'DJ Night',
  salesOpenAt: '2026-12-03T20:00:00.000Z',
  holdSeconds: 0,
  buyerIdKind: 'email',
  ticketTypes: [{ id: 'tt_ga', name: 'General admission', priceCents: 2500, capacity: 500, maxPerBuyer: 4 }],
};
const purchase = {
  purchaseId: '0193a4b5c6d7Qm9xVb2kLr7TnP4sWe8YhZ',
  eventId: event.id,
  buyerId: 'you@example.com',
  status: 'confirmed',
  reason: null,
  items: [{ ticketTypeId: 'tt_ga', quantity: 2 }],
  tickets: [
    { id: 't1', ticketTypeId: 'tt_ga', code: 'K7QF-2M9X-PW4R-8TJD' },
    { id: 't2', ticketTypeId: 'tt_ga', code: 'B3NZ-6HVC-QX2L-5RYA' },
  ],
  holdExpiresAt: null,
  createdAt: '2026-12-03T20:00:01.000Z',
  updatedAt: '2026-12-03T20:00:01.200Z',
};
const mail = ticketEmail({
  purchase,
  event,
  to: 'you@example.com',
  publicUrl: 'http://127.0.0.1:3000',
  senderDomain: 'example.com',
});
let html = mail.html;
for (const image of mail.images) {
  html = html.replaceAll(
    `cid:${image.cid}`,
    `data:${image.contentType};base64,${Buffer.from(image.content).toString('base64')}`,
  );
}
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox'],
});
try {
  const page = await browser.newPage({ viewport: { width: 600, height: 800 } });
  await page.setContent(html);
  const path = resolve(import.meta.dirname, '../docs/screenshots/ticket-email.png');
  await page.screenshot({ path, fullPage: true });
  process.stdout.write(`saved ${path}\n`);
} finally {
  await browser.close();
}
