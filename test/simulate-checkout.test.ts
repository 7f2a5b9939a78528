import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkCheckout, readPayments, type PaymentBooks } from '../src/simulate/checkout-report.js';
import type { Send } from '../src/simulate/checkout.js';
import type { FinalPurchase, SentPurchase } from '../src/simulate/invariants.js';
import type { SimulationReport } from '../src/simulate/run.js';
import { createEvent, getJson } from './helpers/api.js';
import { CHECKOUT_ENV, cancel, postJson, waitPurchase } from './helpers/checkout.js';
import {
  ADMIN_TOKEN,
  LOOPBACK_EXEMPT,
  runCli,
  startOnsale,
  tempDir,
  until,
  type Onsale,
} from './helpers/processes.js';

/**
 * `onsale simulate` with a buyer mix at checkout, against a real `onsale start`: the report's checkout totals
 * are what the server stored, its checks hold; its checks catch broken records; bad flags exit 2; and the
 * waitlist gauge shows a real waitlist.
 */

const dir = tempDir('onsale-simulate-checkout-');
let onsale: Onsale | undefined;

async function simulate(flags: string[]): Promise<{ code: number | null; output: string }> {
  const run = runCli(['simulate', '--url', onsale!.baseUrl, ...flags], { ONSALE_ADMIN_TOKEN: ADMIN_TOKEN });
  const { code } = await run.exited;
  return { code, output: run.output() };
}

describe('onsale simulate with a buyer mix', () => {
  beforeAll(async () => {
    onsale = await startOnsale({
      mode: 'start',
      env: { ONSALE_BUYER_RATE: 'off', ...CHECKOUT_ENV, ...LOOPBACK_EXEMPT },
    });
  }, 60_000);
  afterAll(async () => {
    await onsale?.stop();
    dir.remove();
  });

  it('pays, declines then pays, approves 3-D Secure, cancels, serves the waitlist, and reports what the server stored', async () => {
    const json = join(dir.path, 'mix.json');
    const html = join(dir.path, 'mix.html');
    // Demand well above the stock, so that the cancelled holds go to waitlisted purchases. No abandon: a
    // hold runs at least 30 s, and expiry has tests of its own.
    const { code, output } = await simulate([
      ...['--buyers', '120', '--tickets', '40', '--ticket-types', '1', '--repeat', '0'],
      ...['--hold-seconds', '300', '--price-cents', '1200'],
      ...['--pay-rate', '0.4', '--decline-rate', '0.2', '--three-ds-rate', '0.2', '--cancel-rate', '0.2'],
      ...['--report-json', json, '--report-html', html],
    ]);
    expect(code, output).toBe(0);
    const report = JSON.parse(readFileSync(json, 'utf8')) as SimulationReport;
    expect(report.invariants.checked).toEqual(expect.arrayContaining(['waitlist_order', 'money']));
    expect(report.invariants.violations).toEqual([]);

    const stats = (await getJson(`${onsale!.baseUrl}/api/events/${report.eventId}/stats`, true)).body;
    const c = report.checkout;
    expect(c.holdSeconds).toBe(300);
    expect(c.confirmed).toBe(stats.purchases.confirmed);
    expect(c.cancelled).toBe(stats.purchases.cancelled);
    expect(c.expired).toBe(stats.purchases.expired);
    expect(c.refunded).toBe(stats.purchases.refunded);
    expect(c.ticketsConfirmed).toBe(stats.ticketTypes[0].sold);
    // Every purchase ended: nothing held or waiting, and every held purchase was paid or cancelled.
    expect(stats.purchases.held + stats.purchases.waitlisted + stats.purchases.queued).toBe(0);
    expect(c.held).toBe(stats.purchases.confirmed + stats.purchases.cancelled);
    expect(c.allFinalSec).not.toBeNull();
    expect(c.ticketsConfirmedPerSec).toBeGreaterThan(0);
    // Each role was played, and the tickets cancelled went to waitlisted purchases.
    for (const figure of ['declinedThenPaid', 'threeDSecure', 'cancelled', 'servedFromWaitlist'] as const)
      expect(c[figure], figure).toBeGreaterThan(0);
    expect(c.waitlisted).toBeGreaterThanOrEqual(c.servedFromWaitlist);
    expect(c.confirmed + c.cancelled + report.totals.rejected).toBe(report.totals.accepted);

    expect(output).toMatch(/checkout \(mix: .*\): holds 300 s, held \d+, confirmed \d+/);
    expect(readFileSync(html, 'utf8')).toContain('served from the waitlist');
  }, 120_000);

  it('refuses bad checkout flags with exit status 2, naming the flag', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--abandon-rate', '1.5'], /--abandon-rate/],
      [['--three-ds-rate', 'lots'], /--three-ds-rate/],
      [['--hold-seconds', '10'], /--hold-seconds/],
      [['--pay-rate', '0.6', '--cancel-rate', '0.6'], /--pay-rate 0\.6 \+ --cancel-rate 0\.6/],
    ];
    for (const [flags, named] of cases) {
      const { code, output } = await simulate(flags);
      expect(code, output).toBe(2);
      expect(output).toMatch(named);
    }
  }, 60_000);

  it('shows a real waitlist in onsale_waitlist_length{event}', async () => {
    const base = onsale!.baseUrl;
    const event = await createEvent(base, {
      name: 'Waitlist gauge',
      holdSeconds: 300,
      ticketTypes: [{ name: 'GA', priceCents: 900, capacity: 1, maxPerBuyer: 1 }],
    });
    const gauge = async () => {
      const text = (await (
        await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
      ).text()) as string;
      const line = new RegExp(`^onsale_waitlist_length\\{event="${event.id}"\\} (\\d+)$`, 'm').exec(text);
      return line ? Number(line[1]) : null;
    };
    await until(async () => (await gauge()) === 0, 10_000);
    const buy = async (buyerId: string) =>
      (
        await postJson(`${base}/api/events/${event.id}/purchases`, {
          buyerId,
          items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
        })
      ).body.purchaseId as string;
    const first = await buy('ada');
    await waitPurchase(base, first, (p) => p.status === 'held');
    const second = await buy('bob');
    await waitPurchase(base, second, (p) => p.status === 'waitlisted');
    await until(async () => (await gauge()) === 1, 10_000);
    // The hold given up: the waitlisted purchase is served, and the waitlist is empty again.
    expect((await cancel(base, first)).status).toBe(200);
    await waitPurchase(base, second, (p) => p.status === 'held');
    await until(async () => (await gauge()) === 0, 10_000);
  }, 60_000);
});

/** The checks must catch what they promise; fabricated records of a broken server, as invariant-checks does. */
describe('checkCheckout', () => {
  const ga = { ticketTypeId: 'ga', quantity: 1 };
  const prices = new Map([['ga', 1000]]);
  let clock = 0;
  function sent(purchaseId: string): SentPurchase {
    clock += 10;
    return {
      buyerId: `b-${purchaseId}`,
      items: [ga],
      sentAt: clock,
      answeredAt: clock + 5,
      status: 202,
      purchaseId,
    };
  }
  function purchase(purchaseId: string, status: string, holdExpiresAt: string | null): FinalPurchase {
    const tickets =
      status === 'confirmed' ? [{ id: `t-${purchaseId}`, ticketTypeId: 'ga', code: purchaseId }] : [];
    return {
      purchaseId,
      buyerId: `b-${purchaseId}`,
      status,
      reason: null,
      items: [ga],
      tickets,
      holdExpiresAt,
    };
  }
  const charged = (paymentId: string) => ({
    at: '2026-01-01T00:00:00.000Z',
    kind: 'succeeded',
    detail: JSON.stringify({ kind: 'succeeded', paymentId }),
  });
  const refundedEntry = { at: '2026-01-01T00:01:00.000Z', kind: 'refunded', detail: '{"refundId":"re_1"}' };
  const books = (refunded: boolean, ...history: PaymentBooks['history']): PaymentBooks => ({
    payment: history.length > 0 ? { status: 'succeeded' } : null,
    refunded,
    history,
  });

  function check(
    records: Array<[FinalPurchase, PaymentBooks]>,
  ): Array<{ invariant: string; detail: string }> {
    return checkCheckout({
      sent: records.map(([p]) => sent(p.purchaseId)),
      purchases: new Map(records.map(([p]) => [p.purchaseId, p])),
      payments: new Map(records.map(([p, b]) => [p.purchaseId, b])),
      prices,
    });
  }

  it('passes a clean checkout: paid, expired unpaid, refunded after a late charge, in order', () => {
    expect(
      check([
        [purchase('a', 'confirmed', '2026-01-01T00:05:00.000Z'), books(false, charged('pi_a'))],
        [purchase('b', 'expired', '2026-01-01T00:05:00.000Z'), books(false)],
        [purchase('c', 'expired', '2026-01-01T00:05:01.000Z'), books(true, charged('pi_c'), refundedEntry)],
      ]),
    ).toEqual([]);
  });

  it('catches money kept without tickets, tickets without money, and a double charge', () => {
    const violations = check([
      [purchase('a', 'expired', '2026-01-01T00:05:00.000Z'), books(false, charged('pi_a'))],
      [purchase('b', 'confirmed', '2026-01-01T00:05:00.000Z'), books(false)],
      [
        purchase('c', 'confirmed', '2026-01-01T00:05:00.000Z'),
        books(false, charged('pi_c'), charged('pi_c2')),
      ],
    ]);
    expect(violations.map((v) => v.invariant)).toEqual(['money', 'money', 'money']);
    expect(violations.map((v) => v.detail).join('\n')).toMatch(
      /a: expired after a succeeded charge.*\n.*b: confirmed without.*\n.*c: charged 2 times/,
    );
  });

  it('judges a payment by the books read after the sale, not by the purchase as it was seen going final', () => {
    // Seen expired while its pay request was in flight; that charge then came, and was refunded.
    const seenProcessing = {
      ...purchase('a', 'expired', '2026-01-01T00:05:00.000Z'),
      payment: { status: 'processing' },
    };
    expect(check([[seenProcessing, books(true, charged('pi_a'), refundedEntry)]])).toEqual([]);

    const stillProcessing = { ...books(false), payment: { status: 'processing' } };
    const violations = check([[purchase('b', 'expired', '2026-01-01T00:05:00.000Z'), stillProcessing]]);
    expect(violations).toEqual([{ invariant: 'money', detail: 'b: payment still processing' }]);
  });

  it('reads the books of a payment still processing again until it settles, for as long as it is told', async () => {
    const reads = new Map<string, number>();
    // 'a' settles on its third read, 'b' never does.
    const send: Send = (request) => {
      const id = request.path.split('/')[3]!;
      const n = (reads.get(id) ?? 0) + 1;
      reads.set(id, n);
      const status = id === 'a' && n >= 3 ? 'declined' : 'processing';
      return Promise.resolve({
        status: 200,
        body: { purchaseId: id, payment: { status }, refunded: false, history: [] },
        text: '',
      });
    };
    const held = [purchase('a', 'expired', null), purchase('b', 'expired', null)];

    const settled = await readPayments(send, 'token', held, { settleMs: 1_000, rereadMs: 10 });
    expect(settled.get('a')?.payment?.status).toBe('declined');
    expect(settled.get('b')?.payment?.status).toBe('processing');
    expect(reads.get('a')).toBe(3);
    expect(reads.get('b')).toBeGreaterThan(3);

    reads.clear();
    const once = await readPayments(send, 'token', held, { settleMs: 0 });
    expect(once.get('a')?.payment?.status).toBe('processing');
    expect([...reads.values()]).toEqual([1, 1]);
  });

  it('catches released tickets served out of acceptance order', () => {
    const violations = check([
      [purchase('a', 'confirmed', '2026-01-01T00:06:00.000Z'), books(false, charged('pi_a'))],
      [purchase('b', 'confirmed', '2026-01-01T00:05:00.000Z'), books(false, charged('pi_b'))],
    ]);
    expect(violations).toEqual([expect.objectContaining({ invariant: 'waitlist_order' })]);
    expect(violations[0]!.detail).toMatch(/^a \(accepted first\)/);
  });
});
