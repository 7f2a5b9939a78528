import { createHash } from 'node:crypto';
import qrcode from 'qrcode-generator';
import type { Purchase, SaleEvent } from '../domain/types.js';
import type { InlineImage, OutgoingMail } from '../ports/mailer.js';

/**
 * The Message-ID of a purchase's ticket email: derived from the purchase id, so every attempt to send it
 * (after a crash, a lost answer) carries the same one and a receiver keeps one copy. A hash, not the id
 * itself: the purchase id is the key to the tickets, and Message-IDs travel in headers and logs of every
 * server on the way.
 */
export function ticketMessageId(purchaseId: string, domain: string): string {
  const digest = createHash('sha256').update(`onsale-tickets:${purchaseId}`).digest('hex').slice(0, 32);
  return `<tickets.${digest}@${domain}>`;
}

/** The domain of a sender address (`Name <tickets@example.com>` → example.com), for Message-IDs. */
export function domainOf(from: string): string {
  const address = /<([^>]+)>/.exec(from)?.[1] ?? from;
  return /@([A-Za-z0-9.-]+)\s*$/.exec(address.trim())?.[1] ?? 'onsale.invalid';
}

/** A ticket code as a QR code image (GIF, 6 px per module and the 4-module quiet zone scanners need). */
export function ticketQrGif(code: string): Uint8Array {
  const qr = qrcode(0, 'M');
  qr.addData(code);
  qr.make();
  const dataUrl = qr.createDataURL(6, 24);
  return Buffer.from(dataUrl.slice(dataUrl.indexOf(',') + 1), 'base64');
}

function escapeHtml(text: string): string {
  return text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

function money(cents: number): string {
  return (cents / 100).toFixed(2);
}

/**
 * The email that carries a confirmed purchase's tickets: the event, each ticket with its code and a QR
 * code of it (inline images, referenced by cid: so they show without loading anything remote), and a
 * link to the purchase page, where the tickets also are. Plain text beside the HTML for every client.
 */
export function ticketEmail(opts: {
  purchase: Purchase;
  event: SaleEvent;
  to: string;
  publicUrl: string;
  senderDomain: string;
}): OutgoingMail {
  const { purchase, event, to } = opts;
  const link = `${opts.publicUrl.replace(/\/+$/, '')}/purchases/${encodeURIComponent(purchase.purchaseId)}`;
  const typeName = new Map(event.ticketTypes.map((t) => [t.id, t.name]));
  const price = new Map(event.ticketTypes.map((t) => [t.id, t.priceCents]));
  const total = purchase.items.reduce((sum, i) => sum + (price.get(i.ticketTypeId) ?? 0) * i.quantity, 0);
  const images: InlineImage[] = purchase.tickets.map((t, i) => ({
    cid: `ticket-${i + 1}.${purchase.purchaseId.slice(0, 12)}@onsale`,
    filename: `ticket-${i + 1}.gif`,
    contentType: 'image/gif',
    content: ticketQrGif(t.code),
  }));
  const count = purchase.tickets.length;
  const subject = `Your ${count === 1 ? 'ticket' : `${count} tickets`} for ${event.name}`;

  const text = [
    `Your tickets for ${event.name}`,
    '',
    ...purchase.tickets.map(
      (t, i) => `Ticket ${i + 1} of ${count}: ${typeName.get(t.ticketTypeId) ?? 'ticket'}, code ${t.code}`,
    ),
    '',
    `Total: ${money(total)}`,
    `Your purchase, with these tickets: ${link}`,
    '',
    'Show the QR code (or the code) at the entrance. Keep this email: the link is the key to your tickets.',
  ].join('\n');

  const tickets = purchase.tickets
    .map(
      (t, i) => `
      <tr><td style="padding:16px;border:1px solid #ddd;border-radius:8px">
        <div style="font-size:13px;color:#666">Ticket ${i + 1} of ${count}</div>
        <div style="font-size:18px;font-weight:600;margin:4px 0 12px">${escapeHtml(typeName.get(t.ticketTypeId) ?? 'ticket')}</div>
        <img src="cid:${images[i]!.cid}" alt="QR code of ticket ${escapeHtml(t.code)}" width="200" height="200" style="display:block;width:200px;height:200px">
        <div style="font-family:monospace;font-size:14px;margin-top:8px">${escapeHtml(t.code)}</div>
      </td></tr>
      <tr><td style="height:12px"></td></tr>`,
    )
    .join('');
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(subject)}</title></head>
<body style="margin:0;padding:24px;background:#f6f6f6;font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#111">
  <table role="presentation" width="100%" style="max-width:520px;margin:0 auto;background:#fff;border-radius:12px;padding:24px">
    <tr><td>
      <div style="font-size:13px;color:#666">Your tickets for</div>
      <h1 style="font-size:24px;margin:4px 0 16px">${escapeHtml(event.name)}</h1>
      <p style="margin:0 0 16px">Show the QR code (or the code under it) at the entrance. Total paid: <strong>${money(total)}</strong>.</p>
    </td></tr>
    ${tickets}
    <tr><td>
      <p style="margin:8px 0"><a href="${escapeHtml(link)}" style="display:inline-block;background:#111;color:#fff;padding:10px 16px;border-radius:6px;text-decoration:none">See your purchase</a></p>
      <p style="font-size:12px;color:#666">Keep this email: the link is the key to your tickets.</p>
    </td></tr>
  </table>
</body></html>`;
  return {
    to,
    subject,
    text,
    html,
    messageId: ticketMessageId(purchase.purchaseId, opts.senderDomain),
    images,
  };
}
