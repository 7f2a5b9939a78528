import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { AcceptedPurchase, SaleEvent } from '../../src/domain/types.js';
import type { Storage } from '../../src/ports/storage.js';
import { storageAdapters } from '../helpers/adapters.js';
import { describeEach } from '../helpers/services.js';

/** Checkout on every storage engine: holds, the waitlist, expiry, cancel, payment records. */
describeEach(storageAdapters, 'Storage contract, checkout: $name', (factory) => {
  let storage: Storage;
  let reopen: () => Storage;
  let cleanup: () => Promise<void>;
  let event: SaleEvent;
  let clock: number;

  function buy(buyerId: string, quantity: number, type = 0): AcceptedPurchase {
    clock += 1;
    return {
      purchaseId: randomUUID(),
      eventId: event.id,
      buyerId,
      canonicalBuyerId: buyerId,
      items: [{ ticketTypeId: event.ticketTypes[type]!.id, quantity }],
      acceptedAt: new Date(clock).toISOString(),
    };
  }
  const statusOf = async (p: AcceptedPurchase) => (await storage.getPurchase(p.purchaseId))!.status;
  const stock = async () => (await storage.getStats(event.id))!.ticketTypes[0]!;
  const inAMinute = () => new Date(Date.now() + 61_000);

  beforeEach(async () => {
    ({ adapter: storage, reopen, cleanup } = await factory.open());
    clock = Date.now();
    event = await storage.createEvent({
      name: 'Checkout night',
      salesOpenAt: '2026-01-01T00:00:00.000Z',
      holdSeconds: 60,
      ticketTypes: [{ name: 'GA', priceCents: 2500, capacity: 4, maxPerBuyer: 4 }],
    });
  });
  afterEach(async () => cleanup());

  it('holds, waitlists what a return could serve, rejects what none could, and keeps the sum', async () => {
    const a = buy('a', 3);
    const b = buy('b', 2); // 1 left: waitlisted (a's 3 may come back)
    const c = buy('c', 1); // fits: held
    const d = buy('d', 4); // a return of every hold could serve it: waitlisted
    const started = Date.now();
    const result = await storage.applyBatch(event.id, [a, b, c, d]);
    expect(result.outcomes.map((o) => o.outcome)).toEqual(['held', 'waitlisted', 'held', 'waitlisted']);
    const held = (await storage.getPurchase(a.purchaseId))!;
    expect(held.status).toBe('held');
    expect(held.tickets).toEqual([]);
    expect(held.payment).toBeNull();
    expect(held.refunded).toBe(false);
    const ends = Date.parse(held.holdExpiresAt!);
    expect(ends).toBeGreaterThanOrEqual(started + 60_000 - 1000);
    expect(ends).toBeLessThanOrEqual(Date.now() + 60_000 + 1000);
    expect(await stock()).toMatchObject({ capacity: 4, sold: 0, held: 4, available: 0 });
    const stats = (await storage.getStats(event.id))!;
    expect(stats.purchases).toMatchObject({ held: 2, waitlisted: 2, rejected: 0, refunded: 0 });
    expect((await storage.getAvailability(event.id)).get(event.ticketTypes[0]!.id)).toBe(0);
  });

  it('counts held and waitlisted tickets against the per-buyer limit', async () => {
    const first = buy('same', 3);
    const second = buy('same', 2);
    const result = await storage.applyBatch(event.id, [first, second]);
    expect(result.outcomes.map((o) => [o.outcome, o.reason])).toEqual([
      ['held', null],
      ['rejected', 'limit_exceeded'],
    ]);
    // Once cancelled, the buyer's share is free again.
    expect((await storage.cancelPurchase(first.purchaseId, new Date()))!.outcome).toBe('cancelled');
    const again = buy('same', 4);
    expect((await storage.applyBatch(event.id, [again])).outcomes[0]!.outcome).toBe('held');
  });

  it('expires holds durably, gives their tickets to the waitlist in order, and does it once', async () => {
    const a = buy('a', 4);
    const w1 = buy('w1', 3);
    const w2 = buy('w2', 2);
    const w3 = buy('w3', 1);
    await storage.applyBatch(event.id, [a, w1, w2, w3]);
    expect(await storage.expireHolds(new Date(), 100)).toEqual([]); // not due yet

    // Two processes sweep at the same moment: each hold expires once.
    const other = reopen();
    const later = inAMinute();
    const [one, two] = await Promise.all([storage.expireHolds(later, 100), other.expireHolds(later, 100)]);
    await other.close();
    const changes = [...one, ...two];
    expect(changes.filter((c) => c.to === 'expired').map((c) => c.purchaseId)).toEqual([a.purchaseId]);
    // w1 (3) first, then w2 (2) does not fit the 1 left and keeps its place, w3 (1) fits.
    expect(await statusOf(a)).toBe('expired');
    expect(await statusOf(w1)).toBe('held');
    expect(await statusOf(w2)).toBe('waitlisted');
    expect(await statusOf(w3)).toBe('held');
    const served = (await storage.getPurchase(w1.purchaseId))!;
    expect(Date.parse(served.holdExpiresAt!)).toBeGreaterThan(later.getTime());
    expect(await stock()).toMatchObject({ sold: 0, held: 4, available: 0 });
    expect((await storage.getStats(event.id))!.purchases).toMatchObject({
      expired: 1,
      held: 2,
      waitlisted: 1,
    });
  });

  it('dates a hold served from the waitlist from when it is written, not by an older clock reading', async () => {
    const a = buy('a', 4);
    const w1 = buy('w1', 4);
    const w2 = buy('w2', 4);
    await storage.applyBatch(event.id, [a, w1, w2]);
    const written = Date.now();
    // A caller's reading of the clock can be old by the time it has the lock (it waited behind others).
    const stale = new Date(written - 30_000);
    expect((await storage.cancelPurchase(a.purchaseId, stale))!.outcome).toBe('cancelled');
    const ends = Date.parse((await storage.getPurchase(w1.purchaseId))!.holdExpiresAt!);
    expect(ends).toBeGreaterThanOrEqual(written + 60_000);
    expect(ends).toBeLessThanOrEqual(Date.now() + 60_000);
    // A caller that dates its step later than the clock (a sweep run ahead, as the tests do) keeps its date.
    const ahead = new Date(Date.now() + 5_000);
    expect((await storage.cancelPurchase(w1.purchaseId, ahead))!.outcome).toBe('cancelled');
    expect(Date.parse((await storage.getPurchase(w2.purchaseId))!.holdExpiresAt!)).toBe(
      ahead.getTime() + 60_000,
    );
  });

  it('rejects a waitlisted purchase once sold tickets leave no return that could serve it', async () => {
    const a = buy('a', 3);
    const w = buy('w', 2);
    await storage.applyBatch(event.id, [a, w]);
    expect(await statusOf(w)).toBe('waitlisted');
    const begun = (await storage.beginPayment(a.purchaseId, 'k1', new Date()))!;
    expect(begun.refusal).toBeNull();
    expect(begun.amountCents).toBe(7500);
    expect(begun.purchase.payment).toEqual({ status: 'processing', nextActionUrl: null });
    const paid = await storage.recordPayment(
      a.purchaseId,
      { kind: 'succeeded', paymentId: 'pay_1' },
      new Date(),
    );
    expect(paid.effect).toBe('confirmed');
    expect(paid.purchase!.status).toBe('confirmed');
    expect(paid.purchase!.tickets).toHaveLength(3);
    expect(paid.purchase!.payment).toEqual({ status: 'succeeded', nextActionUrl: null });
    const rejected = (await storage.getPurchase(w.purchaseId))!;
    expect([rejected.status, rejected.reason]).toEqual(['rejected', 'insufficient_inventory']);
    expect(await stock()).toMatchObject({ sold: 3, held: 0, available: 1 });

    // The same success told again (a webhook after the synchronous answer) changes nothing.
    const again = await storage.recordPayment(
      a.purchaseId,
      { kind: 'succeeded', paymentId: 'pay_1' },
      new Date(),
    );
    expect(again.effect).toBe('none');
    expect(again.purchase!.tickets).toEqual(paid.purchase!.tickets);
    // A failure delivered out of order after the success changes nothing either.
    await storage.recordPayment(
      a.purchaseId,
      { kind: 'failed', paymentId: 'pay_1', message: 'late' },
      new Date(),
    );
    expect((await storage.getPurchase(a.purchaseId))!.payment!.status).toBe('succeeded');
    expect((await storage.beginPayment(a.purchaseId, 'k2', new Date()))!.refusal).toBe('already_confirmed');
  });

  it('cancels held and waitlisted purchases once, and refuses the others', async () => {
    const a = buy('a', 4);
    const w = buy('w', 2);
    await storage.applyBatch(event.id, [a, w]);
    const cancelled = (await storage.cancelPurchase(w.purchaseId, new Date()))!;
    expect(cancelled.outcome).toBe('cancelled');
    expect(cancelled.purchase.status).toBe('cancelled');
    expect((await storage.cancelPurchase(w.purchaseId, new Date()))!.outcome).toBe('already');
    expect(await stock()).toMatchObject({ held: 4 });
    expect((await storage.cancelPurchase(a.purchaseId, new Date()))!.outcome).toBe('cancelled');
    expect(await stock()).toMatchObject({ sold: 0, held: 0, available: 4 });
    expect(await storage.cancelPurchase('missing', new Date())).toBeNull();
    expect((await storage.beginPayment(a.purchaseId, 'k', new Date()))!.refusal).toBe('not_payable');

    const b = buy('b', 1);
    await storage.applyBatch(event.id, [b]);
    await storage.beginPayment(b.purchaseId, 'k', new Date());
    await storage.recordPayment(b.purchaseId, { kind: 'succeeded', paymentId: 'p' }, new Date());
    expect((await storage.cancelPurchase(b.purchaseId, new Date()))!.outcome).toBe('not_cancellable');
  });

  it('makes a refund due, once, for a charge that succeeds after the hold ended, and records it done', async () => {
    const a = buy('a', 2);
    await storage.applyBatch(event.id, [a]);
    expect((await storage.beginPayment(a.purchaseId, 'k', new Date()))!.refusal).toBeNull();
    await storage.expireHolds(inAMinute(), 10);
    expect((await storage.beginPayment(a.purchaseId, 'k2', inAMinute()))!.refusal).toBe('hold_expired');

    const hook = { provider: 'test', eventId: `evt_${randomUUID()}` };
    const late = await storage.recordPayment(
      a.purchaseId,
      { kind: 'succeeded', paymentId: 'p', webhook: hook },
      new Date(),
    );
    expect(late.effect).toBe('refund_due');
    expect(late.purchase!.status).toBe('expired');
    expect(late.purchase!.refunded).toBe(false);
    // The same webhook again: a duplicate, nothing done.
    const replay = await storage.recordPayment(
      a.purchaseId,
      { kind: 'succeeded', paymentId: 'p', webhook: hook },
      new Date(),
    );
    expect(replay.duplicate).toBe(true);
    // Another delivery of the success (another event id) does not make a second refund due.
    const other = await storage.recordPayment(
      a.purchaseId,
      { kind: 'succeeded', paymentId: 'p' },
      new Date(),
    );
    expect(other.effect).toBe('none');
    // A worker finds the refund due (a crash between the record and the refund loses nothing).
    const work = await storage.paymentWork(new Date(Date.now() + 1000), 10);
    expect(work).toEqual([{ purchaseId: a.purchaseId, refundDue: true }]);
    await storage.recordPayment(a.purchaseId, { kind: 'refunded', refundId: 'r' }, new Date());
    const done = (await storage.getPurchase(a.purchaseId))!;
    expect([done.status, done.refunded]).toEqual(['expired', true]);
    expect((await storage.getStats(event.id))!.purchases).toMatchObject({ expired: 1, refunded: 1 });
    expect(await storage.paymentWork(new Date(Date.now() + 3_600_000), 10)).toEqual([]);
    const history = (await storage.paymentHistory(a.purchaseId)).map((h) => h.kind);
    expect(history).toEqual(['attempt', 'webhook succeeded', 'refund_due', 'succeeded', 'refunded']);
  });

  it('leaves an attempt whose answer was never recorded for a worker to reconcile', async () => {
    const a = buy('a', 1);
    await storage.applyBatch(event.id, [a]);
    await storage.beginPayment(a.purchaseId, 'k', new Date());
    expect(await storage.paymentWork(new Date(), 10)).toEqual([]);
    const later = new Date(Date.now() + 30_000);
    expect(await storage.paymentWork(later, 10)).toEqual([{ purchaseId: a.purchaseId, refundDue: false }]);
    // Taken: a second sweeper at the same moment does not get it again.
    expect(await storage.paymentWork(later, 10)).toEqual([]);
    await storage.recordPayment(
      a.purchaseId,
      { kind: 'declined', paymentId: null, message: 'no' },
      new Date(),
    );
    const declined = (await storage.getPurchase(a.purchaseId))!;
    expect([declined.status, declined.payment?.status]).toEqual(['held', 'declined']);
    expect(await storage.paymentWork(new Date(Date.now() + 3_600_000), 10)).toEqual([]);
  });

  it('keeps provider state with compare-and-set', async () => {
    expect(await storage.providerState('test', 'k')).toBeNull();
    expect(await storage.setProviderState('test', 'k', 'v1', null)).toBe(true);
    expect(await storage.setProviderState('test', 'k', 'v1b', null)).toBe(false);
    const state = (await storage.providerState('test', 'k'))!;
    expect(state.value).toBe('v1');
    expect(await storage.setProviderState('test', 'k', 'v2', state.version)).toBe(true);
    expect(await storage.setProviderState('test', 'k', 'v3', state.version)).toBe(false);
    expect((await storage.providerState('test', 'k'))!.value).toBe('v2');
  });
});
