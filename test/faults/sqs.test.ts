import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqsQueue } from '../../src/adapters/sqs/queue.js';
import { UnavailableError } from '../../src/domain/errors.js';
import type { AcceptedPurchase } from '../../src/domain/types.js';
import { observe, sendCrowd } from '../../src/simulate/crowd.js';
import { checkInvariants, type SentPurchase } from '../../src/simulate/invariants.js';
import { createEvent, waitDrained, type CreatedEvent } from '../helpers/api.js';
import { makeCrowd, probePurchases, type ProbeAnswer } from '../helpers/crowd.js';
import { ADMIN_TOKEN, LOOPBACK_EXEMPT, startOnsale, type Onsale } from '../helpers/processes.js';
import { exclusion, freshPostgresDatabase, uniqueName } from '../helpers/services.js';
import { FAUXQS_CREDENTIALS, startFauxqs, type Fauxqs } from '../helpers/sqs.js';
import { acceptedPurchase } from '../helpers/purchases.js';

/**
 * SQS as the queue, on a fauxqs process of the test's own, killed mid-flood. fauxqs keeps its queues in
 * memory only, so a restart comes back empty: harsher than SQS, which keeps what it took. What this shows:
 * while the emulator is down a purchase gets 503 with Retry-After, never a 500; once it is back the adapter
 * creates the queue again and sends again every purchase its index still holds, so every purchase answered
 * 202 (before, during or after the outage) reaches a final status and every invariant of api.md holds.
 */
describe.skipIf(exclusion('postgres') !== '')(`SQS faults during a flood${exclusion('postgres')}`, () => {
  let fauxqs: Fauxqs | undefined;
  let onsale: Onsale | undefined;
  let dropDatabase: (() => Promise<void>) | undefined;
  let event: CreatedEvent;

  beforeAll(async () => {
    fauxqs = await startFauxqs();
    const db = await freshPostgresDatabase();
    dropDatabase = db.drop;
    onsale = await startOnsale({
      mode: 'start',
      // Five processes load the AWS SDK at once: on the shared 2-core box that took up to 30 s.
      readyMs: 60_000,
      env: {
        ...LOOPBACK_EXEMPT,
        ...FAUXQS_CREDENTIALS,
        ONSALE_DATABASE_URL: db.url,
        ONSALE_QUEUE_URL: fauxqs.queueUrl(uniqueName('onsale_fault')),
        ONSALE_WEB: '2',
        ONSALE_WORKERS_MIN: '2',
        ONSALE_WORKERS_MAX: '2',
      },
    });
    event = await createEvent(onsale.baseUrl, {
      ticketTypes: [{ name: 'GA', priceCents: 5000, capacity: 300, maxPerBuyer: 4 }],
    });
  }, 120_000);

  afterAll(async () => {
    await onsale?.stop();
    await fauxqs?.kill();
    await dropDatabase?.();
  }, 60_000);

  it('answers 503 + Retry-After while SQS is down, then loses and doubles nothing', async () => {
    const { baseUrl } = onsale!;
    const crowd = makeCrowd({ count: 600, buyers: 400, types: event.ticketTypes, seed: 14 });
    const sent: SentPurchase[] = [];
    const item = [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }];

    const whileDown: ProbeAnswer[] = [];
    let outage: Promise<void> | undefined;
    const crashAndRestart = async () => {
      await fauxqs!.kill();
      whileDown.push(...(await probePurchases(baseUrl, event.id, item, 10, sent)));
      await fauxqs!.start();
    };
    await sendCrowd({
      baseUrl,
      eventId: event.id,
      intents: crowd.slice(0, 400),
      concurrency: 16,
      onAnswer: (record) => {
        sent.push(record);
        if (sent.length === 150) outage = crashAndRestart();
      },
    });
    await outage;
    expect(whileDown.map((a) => a.status)).toEqual(whileDown.map(() => 503));
    expect(whileDown.every((a) => Number(a.retryAfter) >= 1)).toBe(true);

    // Back (empty): the rest of the crowd is accepted, with at most a few 503s while the queue is made again.
    const after = await sendCrowd({
      baseUrl,
      eventId: event.id,
      intents: crowd.slice(400),
      concurrency: 16,
    });
    sent.push(...after);
    expect(after.filter((r) => r.status === 202).length).toBeGreaterThan(0);
    expect([...new Set(sent.map((r) => r.status))].filter((s) => s !== 202 && s !== 503)).toEqual([]);

    await waitDrained(baseUrl, event.id, 120_000);
    const seen = await observe({ baseUrl, eventId: event.id, adminToken: ADMIN_TOKEN, sent });
    expect(checkInvariants({ sent, purchases: seen.purchases, stock: seen.stock })).toEqual([]);
    for (const t of seen.stock) expect(t.sold).toBe(t.capacity);
  }, 180_000);

  it('sends again what the index holds when the queue is gone, and refuses to enqueue while SQS is down', async () => {
    const db = await freshPostgresDatabase();
    const queue = new SqsQueue(fauxqs!.queueUrl(uniqueName('onsale_gone'), 0), db.url);
    try {
      Object.assign(process.env, FAUXQS_CREDENTIALS);
      await queue.migrate();
      const before = [acceptedPurchase('e1'), acceptedPurchase('e1'), acceptedPurchase('e2')];
      await queue.enqueue(before.map((p) => ({ purchase: p })));
      await fauxqs!.kill();
      const refused = await queue
        .enqueue([{ purchase: acceptedPurchase('e1') }])
        .catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(UnavailableError);
      await expect(queue.claim('w', 10, 5000)).rejects.toBeInstanceOf(UnavailableError);
      await fauxqs!.start(); // empty: the queue and its messages are gone
      const claimed: AcceptedPurchase[] = [];
      for (let i = 0; i < 4 && claimed.length < 3; i++) {
        const batch = await queue.claim('w', 10, 5000);
        if (!batch) continue;
        claimed.push(...batch.purchases);
        await queue.ack(batch);
      }
      expect(claimed.map((p) => p.purchaseId).sort()).toEqual(before.map((p) => p.purchaseId).sort());
      expect(await queue.depth()).toEqual({ depth: 0, oldestAcceptedAt: null });
    } finally {
      await queue.close();
      await db.drop();
    }
  }, 60_000);
});
