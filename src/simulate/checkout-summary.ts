import { int } from '../shared/format.js';
import type { CheckoutFigures } from './checkout-report.js';

/** The checkout figures as label and value, in the order the text summary and the HTML page show them. */
export function checkoutRows(c: CheckoutFigures): Array<[string, string]> {
  const rows: Array<[string, string]> = [
    ['tickets confirmed per second', int(c.ticketsConfirmedPerSec)],
    ['every purchase final after', c.allFinalSec === null ? 'never' : `${c.allFinalSec.toFixed(1)} s`],
  ];
  if (c.holdSeconds === 0) return rows;
  return [
    ['holds', `${int(c.holdSeconds)} s`],
    ['held', int(c.held)],
    ['confirmed', int(c.confirmed)],
    ['declined, then paid', int(c.declinedThenPaid)],
    ['3-D Secure approved', int(c.threeDSecure)],
    ['cancelled', int(c.cancelled)],
    ['expired', int(c.expired)],
    ['waitlisted', int(c.waitlisted)],
    ['served from the waitlist', int(c.servedFromWaitlist)],
    ['refunded', int(c.refunded)],
    ...rows,
  ];
}

/** The checkout part of the terminal summary. */
export function checkoutLines(c: CheckoutFigures): string[] {
  const rows = checkoutRows(c);
  const mix = c.mix
    ? ` (mix: ${Object.entries(c.mix)
        .filter(([, v]) => v > 0)
        .map(([k, v]) => `${k.replaceAll('_', ' ')} ${Math.round(v * 1000) / 10} %`)
        .join(', ')})`
    : '';
  return [`checkout${mix}: ${rows.map(([k, v]) => `${k} ${v}`).join(', ')}`];
}
