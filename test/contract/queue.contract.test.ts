import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, assert, beforeEach, expect, it } from 'vitest';
import { canonicalBuyerId } from '../../src/domain/buyer.js';
import type { AcceptedPurchase } from '../../src/domain/types.js';
import { headOf, type Queue } from '../../src/ports/queue.js';
import { queueAdapters } from '../helpers/adapters.js';
import { until } from '../helpers/processes.js';
import { describeEach } from '../helpers/services.js';

function accepted(eventId: string, buyerId = `b-${randomUUID()}`, quantity = 1): AcceptedPurchase {
  return {
    purchaseId: randomUUID(),
    eventId,
    buyerId,
    // As the web server computes it: a queue either carries it or derives it again from buyerId.
    canonicalBuyerId: canonicalBuyerId(buyerId),
    items: [{ ticketTypeId: 'tt', quantity }],
    acceptedAt: new Date().toISOString(),
  };
}

async function enqueue(queue: Queue, purchases: AcceptedPurchase[]): Promise<void> {
  const results = await queue.enqueue(purchases.map((purchase) => ({ purchase })));
  expect(results.map((r) => r.status)).toEqual(purchases.map(() => 'accepted'));
}

describeEach(queueAdapters, 'Queue contract: $name', (factory) => {
  let queue: Queue;
  let reopen: () => Queue;
  let cleanup: () => Promise<void>;

  beforeEach(async () => {
    ({ adapter: queue, reopen, cleanup } = await factory.open());
  });
  afterEach(async () => cleanup());
  afterAll(async () => factory.teardown?.());

  it('keeps what it accepted, readable by id and counted in depth, across connections', async () => {
    const batch = [accepted('e1'), accepted('e1'), accepted('e2')];
    await enqueue(queue, batch);
    const other = reopen();
    expect(await other.find(batch[0]!.purchaseId)).toEqual(batch[0]);
    expect(await other.find(randomUUID())).toBeNull();
    const depth = await other.depth();
    expect(depth.depth).toBe(3);
    expect(depth.oldestAcceptedAt).toBe(batch[0]!.acceptedAt);
    expect(await other.depthOf('e1')).toEqual({ queued: 2, deadLetters: 0 });
    expect(await other.depthOf('nope')).toEqual({ queued: 0, deadLetters: 0 });
  });

  it('resolves idempotency keys per event and buyer, atomically with the write', async () => {
    const first = accepted('e1', 'alice');
    const idem = { key: 'k1', requestHash: 'h1' };
    const [a, again, changed, otherBuyer, otherEvent] = await queue.enqueue([
      { purchase: first, idempotency: idem },
      { purchase: accepted('e1', 'alice'), idempotency: idem },
      { purchase: accepted('e1', 'alice'), idempotency: { key: 'k1', requestHash: 'h2' } },
      { purchase: accepted('e1', 'bob'), idempotency: idem },
      { purchase: accepted('e2', 'alice'), idempotency: idem },
    ]);
    expect(a).toEqual({ status: 'accepted', purchaseId: first.purchaseId });
    expect(again).toEqual({ status: 'duplicate', purchaseId: first.purchaseId });
    expect(changed).toEqual({ status: 'conflict' });
    expect(otherBuyer!.status).toBe('accepted');
    expect(otherEvent!.status).toBe('accepted');
    expect((await queue.depth()).depth).toBe(3);
    // Still known after the purchase left the queue.
    const batch = (await queue.claim('w', 10, 5000))!;
    await queue.ack(batch);
    expect(await queue.enqueue([{ purchase: accepted('e1', 'alice'), idempotency: idem }])).toEqual([
      { status: 'duplicate', purchaseId: first.purchaseId },
    ]);
  });

  it('hands out one event at a time, in acceptance order, oldest event first', async () => {
    const e1 = Array.from({ length: 5 }, () => accepted('e1'));
    const e2 = Array.from({ length: 3 }, () => accepted('e2'));
    await enqueue(queue, [e2[0]!]);
    await enqueue(queue, e1);
    await enqueue(queue, e2.slice(1));

    const first = (await queue.claim('w1', 2, 5000))!;
    expect(first.eventId).toBe('e2');
    expect(first.purchases).toEqual(e2.slice(0, 2));
    // While w1 holds e2, w2 gets the other event.
    const second = (await queue.claim('w2', 10, 5000))!;
    expect(second.eventId).toBe('e1');
    expect(second.purchases).toEqual(e1);
    expect(await queue.claim('w3', 10, 5000)).toBeNull();

    await queue.ack(first);
    const next = (await queue.claim('w1', 10, 5000))!;
    expect(next.purchases).toEqual(e2.slice(2));
    await queue.ack(next);
    await queue.ack(second);
    expect(await queue.depth()).toEqual({ depth: 0, oldestAcceptedAt: null });
    expect(await queue.claim('w1', 10, 5000)).toBeNull();
  });

  it('gives a crashed worker’s batch, whole and in order, to another worker once the lease runs out', async () => {
    const purchases = Array.from({ length: 4 }, () => accepted('e1'));
    await enqueue(queue, purchases);
    const leaseMs = 1000;
    // Taken before the claim, so the lease (started by the queue later) cannot run out before
    // claimedAt + leaseMs: the checks below hold however slow the machine is.
    const claimedAt = Date.now();
    const lost = (await queue.claim('dead', 10, leaseMs))!;
    expect(lost.deliveries).toBe(1);
    const other = reopen();
    let again = await other.claim('w2', 10, 5000);
    // An answer that came before claimedAt + leaseMs was given while the lease certainly held.
    if (Date.now() - claimedAt < leaseMs) expect(again).toBeNull();
    // Another worker asks until it gets the batch once the lease ran out.
    const deadline = Date.now() + 20_000;
    while (again === null && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      again = await other.claim('w2', 10, 5000);
    }
    // Not before the lease ran out (a few ms of slack for the servers' clocks).
    expect(Date.now() - claimedAt).toBeGreaterThanOrEqual(leaseMs - 5);
    assert(again, 'the batch never came back after its lease ran out');
    expect(again.purchases).toEqual(lost.purchases);
    expect(again.deliveries).toBe(2);
    // The dead worker's late ack (its commit had landed) removes only what it had claimed.
    await enqueue(queue, [accepted('e1')]);
    await queue.ack(lost);
    expect((await queue.depthOf('e1')).queued).toBe(1);
  });

  it('lets another worker take a released batch at once', async () => {
    await enqueue(queue, [accepted('e1'), accepted('e1')]);
    const batch = (await queue.claim('w1', 10, 60_000))!;
    await queue.release(batch);
    const taken = (await queue.claim('w2', 10, 60_000))!;
    expect(taken.purchases).toEqual(batch.purchases);
  });

  it('gives an event to one worker only, however many claim it at the same moment', async () => {
    const purchases = Array.from({ length: 5 }, () => accepted('e1'));
    await enqueue(queue, purchases);
    const claimers = Array.from({ length: 4 }, () => reopen());
    const batches = await Promise.all(claimers.map((q, i) => q.claim(`w${i}`, 10, 5000)));
    expect(batches.filter((b) => b !== null).map((b) => b!.purchases.length)).toEqual([5]);
  });

  it('keeps acceptance order under concurrent writers', async () => {
    const writers = Array.from({ length: 4 }, () => reopen());
    // A logical clock: when each write was sent and when it was answered. Two writes in flight at once may
    // be queued either way (answers of different connections can arrive in either order), but a write
    // answered before another was sent must come first: that is first come, first served.
    let clock = 0;
    const times = new Map<string, { sent: number; answered: number }>();
    await Promise.all(
      writers.map(async (w) => {
        for (let i = 0; i < 25; i++) {
          const p = accepted('e1');
          const sent = ++clock;
          await w.enqueue([{ purchase: p }]);
          times.set(p.purchaseId, { sent, answered: ++clock });
        }
      }),
    );
    const batch = (await queue.claim('w', 1000, 5000))!;
    const order = batch.purchases.map((p) => p.purchaseId);
    expect([...order].sort()).toEqual([...times.keys()].sort());
    const overtaken: string[] = [];
    order.forEach((earlier, i) => {
      for (const later of order.slice(i + 1)) {
        if (times.get(later)!.answered < times.get(earlier)!.sent)
          overtaken.push(`${later} before ${earlier}`);
      }
    });
    expect(overtaken).toEqual([]);
  });

  it('counts deliveries of the head, and starts again for a new head', async () => {
    const purchases = Array.from({ length: 3 }, () => accepted('e1'));
    await enqueue(queue, purchases);
    for (let i = 1; i <= 3; i++) expect((await queue.claim('w', 10, 5000))!.deliveries).toBe(i);
    const batch = (await queue.claim('w', 10, 5000))!;
    await queue.ack(headOf(batch, 1));
    const rest = (await queue.claim('w', 10, 5000))!;
    expect(rest.purchases).toEqual(purchases.slice(1));
    expect(rest.deliveries).toBe(1);
  });

  it('dead-letters a head, keeps it findable, and replays it at the tail', async () => {
    const [poison, ok, late] = [accepted('e1'), accepted('e1'), accepted('e1')];
    await enqueue(queue, [poison!, ok!]);
    const batch = (await queue.claim('w', 10, 5000))!;
    await queue.deadLetter(headOf(batch, 1), 'ticket type tt is not part of event e1');
    expect(await queue.find(poison!.purchaseId)).toEqual(poison);
    expect(await queue.depthOf('e1')).toEqual({ queued: 1, deadLetters: 1 });
    expect((await queue.depth()).depth).toBe(1);
    const letters = await reopen().deadLetters(10);
    expect(letters.map((l) => [l.purchase, l.reason])).toEqual([
      [poison, 'ticket type tt is not part of event e1'],
    ]);

    const next = (await queue.claim('w', 10, 5000))!;
    expect(next.purchases).toEqual([ok]);
    await queue.ack(next);
    await enqueue(queue, [late!]);
    expect(await queue.replayDeadLetters(['someone-else'])).toBe(0);
    expect(await queue.replayDeadLetters()).toBe(1);
    expect(await queue.deadLetters(10)).toEqual([]);
    const replayed = (await queue.claim('w', 10, 5000))!;
    expect(replayed.purchases).toEqual([late, poison]);
  });

  it('keeps buyers and keys apart whatever they contain, and every string verbatim', async () => {
    // A key-value engine that joined event, buyer and key with ':' would take these for one key.
    const [a, b] = [accepted('e1', 'ann:x'), accepted('e1', 'ann')];
    const odd = {
      ...accepted('e1', 'Zoë "🎟" \\ \u0000 :: %*?[]'),
      items: [{ ticketTypeId: 'tt:1', quantity: 2 }],
    };
    const results = await queue.enqueue([
      { purchase: a!, idempotency: { key: 'k', requestHash: 'h' } },
      { purchase: b!, idempotency: { key: 'x:k', requestHash: 'h' } },
      { purchase: odd, idempotency: { key: ' :*? ', requestHash: 'h h' } },
    ]);
    expect(results.map((r) => r.status)).toEqual(['accepted', 'accepted', 'accepted']);
    expect(await queue.find(odd.purchaseId)).toEqual(odd);
    expect(
      await queue.enqueue([
        { purchase: accepted('e1', odd.buyerId), idempotency: { key: ' :*? ', requestHash: 'h h' } },
      ]),
    ).toEqual([{ status: 'duplicate', purchaseId: odd.purchaseId }]);
    expect((await queue.claim('w', 10, 5000))!.purchases).toEqual([a, b, odd]);
  });

  it('scopes idempotency keys by the canonical buyer id, and hands back the id as typed', async () => {
    const first = accepted('e1', 'Zoë@Example.com');
    const [result] = await queue.enqueue([{ purchase: first, idempotency: { key: 'k', requestHash: 'h' } }]);
    expect(result).toEqual({ status: 'accepted', purchaseId: first.purchaseId });
    // Another spelling of the same buyer, the same key: the same purchase.
    const again = accepted('e1', ' ZOE\u0308@example.com ');
    expect(again.canonicalBuyerId).toBe(first.canonicalBuyerId);
    expect(await queue.enqueue([{ purchase: again, idempotency: { key: 'k', requestHash: 'h' } }])).toEqual([
      { status: 'duplicate', purchaseId: first.purchaseId },
    ]);
    const claimed = (await queue.claim('w', 10, 5000))!.purchases;
    expect(claimed).toEqual([first]);
    expect(claimed[0]!.buyerId).toBe('Zoë@Example.com');
  });

  it('forgets an acked purchase, and starts afresh when an event’s queue empties', async () => {
    const first = accepted('e1');
    await enqueue(queue, [first]);
    await queue.ack((await queue.claim('w', 10, 5000))!);
    expect(await queue.find(first.purchaseId)).toBeNull();
    expect(await queue.depth()).toEqual({ depth: 0, oldestAcceptedAt: null });
    expect(await queue.depthOf('e1')).toEqual({ queued: 0, deadLetters: 0 });

    const second = accepted('e1');
    await enqueue(queue, [second]);
    const batch = (await queue.claim('w', 10, 5000))!;
    expect(batch.purchases).toEqual([second]);
    expect(batch.deliveries).toBe(1);
    // Dead-lettering the only purchase empties the queue too; a replay (naming it twice) brings it back once.
    await queue.deadLetter(batch, 'poison');
    expect(await queue.depthOf('e1')).toEqual({ queued: 0, deadLetters: 1 });
    expect(await queue.claim('w', 10, 5000)).toBeNull();
    expect(await queue.replayDeadLetters([second.purchaseId, second.purchaseId])).toBe(1);
    expect(await queue.depthOf('e1')).toEqual({ queued: 1, deadLetters: 0 });
    const replayed = (await queue.claim('w', 10, 5000))!;
    expect(replayed.purchases).toEqual([second]);
    expect(replayed.deliveries).toBe(1);
    await queue.ack(replayed);
    expect(await queue.depth()).toEqual({ depth: 0, oldestAcceptedAt: null });
  });

  it('enqueues, claims and acks thousands at once (a worker’s batch may be 10,000)', async () => {
    const purchases = Array.from({ length: 10_000 }, () => accepted('e1'));
    await enqueue(queue, purchases);
    // A claim hands out what is ready, up to its max: a broker that pushes messages (RabbitMQ) may not have
    // delivered all 10,000 yet. Claimed and acked batch after batch, they come whole and in order.
    const claimed: string[] = [];
    await until(async () => {
      const batch = await queue.claim('w', 10_000, 5000);
      if (batch) {
        expect(batch.purchases.length).toBeLessThanOrEqual(10_000);
        claimed.push(...batch.purchases.map((p) => p.purchaseId));
        await queue.ack(batch);
      }
      return claimed.length >= purchases.length;
    }, 60_000);
    expect(claimed).toEqual(purchases.map((p) => p.purchaseId));
    expect(await queue.depth()).toEqual({ depth: 0, oldestAcceptedAt: null });
    expect(await queue.find(purchases[9999]!.purchaseId)).toBeNull();
  });

  it('reports the oldest queued purchase of all events, and dead letters oldest first', async () => {
    const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
    const [a, b, c] = [
      { ...accepted('e1'), acceptedAt: at(1) },
      { ...accepted('e2'), acceptedAt: at(2) },
      { ...accepted('e1'), acceptedAt: at(3) },
    ];
    await enqueue(queue, [a, b, c]);
    expect(await queue.depth()).toEqual({ depth: 3, oldestAcceptedAt: at(1) });
    const e1 = (await queue.claim('w', 10, 5000))!;
    expect(e1.eventId).toBe('e1');
    await queue.deadLetter(e1, 'poison');
    expect(await queue.depth()).toEqual({ depth: 1, oldestAcceptedAt: at(2) });
    expect((await queue.deadLetters(1)).map((l) => l.purchase)).toEqual([a]);
    expect((await queue.deadLetters(10)).map((l) => l.purchase)).toEqual([a, c]);
    expect(await queue.replayDeadLetters([c.purchaseId])).toBe(1);
    expect((await queue.deadLetters(10)).map((l) => l.purchase)).toEqual([a]);
    expect(await queue.depth()).toEqual({ depth: 2, oldestAcceptedAt: at(2) });
  });
});
