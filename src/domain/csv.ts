import type { Purchase, SaleEvent } from './types.js';

/**
 * One CSV cell (RFC 4180): quoted when it holds a comma, a quote or a line break, quotes doubled. A cell
 * a spreadsheet would run as a formula (it starts with = + - @, or a tab or carriage return that some
 * strip first) gets a leading apostrophe: a buyer id like `=HYPERLINK(...)` is shown, never run.
 */
export function csvCell(value: string | number | null): string {
  if (value === null) return '';
  let text = String(value);
  if (typeof value === 'string' && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function csvLine(cells: ReadonlyArray<string | number | null>): string {
  return `${cells.map(csvCell).join(',')}\r\n`;
}

/** The columns of an event's export, one line per allocated purchase. */
export const PURCHASE_EXPORT_COLUMNS = [
  'purchase_id',
  'buyer_id',
  'status',
  'reason',
  'accepted_at',
  'updated_at',
  'items',
  'tickets',
  'ticket_codes',
  'amount_cents',
  'amount',
] as const;

/**
 * A purchase as a line of the export: what was asked for (items, as "name × quantity"), the tickets issued
 * and their codes, and the amount: the price of the tickets issued (0 for a purchase that got none).
 */
export function purchaseExportLine(purchase: Purchase, event: SaleEvent): string {
  const types = new Map(event.ticketTypes.map((t) => [t.id, t]));
  const amountCents = purchase.tickets.reduce(
    (sum, t) => sum + (types.get(t.ticketTypeId)?.priceCents ?? 0),
    0,
  );
  return csvLine([
    purchase.purchaseId,
    purchase.buyerId,
    purchase.status,
    purchase.reason,
    purchase.createdAt,
    purchase.updatedAt,
    purchase.items
      .map((i) => `${types.get(i.ticketTypeId)?.name ?? i.ticketTypeId} × ${i.quantity}`)
      .join('; '),
    purchase.tickets.length,
    purchase.tickets.map((t) => t.code).join(' '),
    amountCents,
    (amountCents / 100).toFixed(2),
  ]);
}
