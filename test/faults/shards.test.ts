import { afterAll, describe, expect, it } from 'vitest';
import { observe, sendCrowd } from '../../src/simulate/crowd.js';
import { checkInvariants, type SentPurchase } from '../../src/simulate/invariants.js';
import { createEvent, getJson, waitDrained, type CreatedEvent } from '../helpers/api.js';
import { makeCrowd } from '../helpers/crowd.js';
import { startPrivatePostgres, type PrivatePostgres } from '../helpers/private-postgres.js';
import { ADMIN_TOKEN, LOOPBACK_EXEMPT, startOnsale, type Onsale } from '../helpers/processes.js';
import { samples } from '../helpers/prometheus.js';
import { exclusion, included } from '../helpers/services.js';

/** How long the second shard's server stays down mid-flood. */
const OUTAGE_MS = 3_000;

/**
 * Events sharded over two PostgreSQL servers of the test's own (ONSALE_DATABASE_URL with two URLs, the
 * default table queue: one per shard), under `onsale start`. Events spread over both shards, and admin
 * stats and metrics say which. A flood on an event of each shard; mid-flood the second shard's server is
 * stopped: the first shard's sale goes on without a single error, the second's answers 503 `unavailable`
 * (never a 500, never a lost 202), and once it is back both drain with every invariant kept.
 */
describe.skipIf(!included('postgres'))(`Two shards, one stopped mid-flood${exclusion('postgres')}`, () => {
  const servers: PrivatePostgres[] = [];
  let onsale: Onsale | undefined;

  afterAll(async () => {
    await onsale?.stop();
    for (const s of servers) s.remove();
  });

  it('spreads events over both shards, and one shard down leaves the other untouched and loses nothing', async () => {
    servers.push(await startPrivatePostgres(), await startPrivatePostgres());
    const urls = await Promise.all(servers.map((s) => s.createDatabase('onsale')));
    onsale = await startOnsale({
      mode: 'start',
      env: {
        ...LOOPBACK_EXEMPT,
        ONSALE_DATABASE_URL: urls.join(','),
        ONSALE_WEB: '2',
        ONSALE_WORKERS_MIN: '2',
        ONSALE_WORKERS_MAX: '2',
      },
    });
    const { baseUrl } = onsale;

    // Events go to the shards in turn: six events land on both, and stats name the shard of each.
    const events: Array<CreatedEvent & { shard: number }> = [];
    for (let i = 0; i < 6; i++) {
      const event = await createEvent(baseUrl, {
        name: `Night ${i}`,
        ticketTypes: [
          { name: 'GA', priceCents: 5000, capacity: 1500, maxPerBuyer: 4 },
          { name: 'VIP', priceCents: 9000, capacity: 500, maxPerBuyer: 2 },
        ],
      });
      const stats = await getJson(`${baseUrl}/api/events/${event.id}/stats`, true);
      expect(stats.status).toBe(200);
      events.push({ ...event, shard: stats.body.shard });
    }
    expect(new Set(events.map((e) => e.shard))).toEqual(new Set([0, 1]));
    const listed = await getJson(`${baseUrl}/api/events`);
    // (with the demo event `onsale start` made on its first start)
    expect(listed.body.events.map((e: { id: string }) => e.id)).toEqual(
      expect.arrayContaining(events.map((e) => e.id)),
    );
    const onFirst = events.find((e) => e.shard === 0)!;
    const onSecond = events.find((e) => e.shard === 1)!;
    const metrics = await fetch(`${baseUrl}/metrics`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    const m = samples(await metrics.text());
    expect(m.get(`onsale_event_shard{event="${onFirst.id}"}`)).toBe(0);
    expect(m.get(`onsale_event_shard{event="${onSecond.id}"}`)).toBe(1);

    const second = servers[1]!;
    const sentFirst: SentPurchase[] = [];
    const sentSecond: SentPurchase[] = [];
    let outage: Promise<void> | undefined;
    let listedDuringOutage: { status: number; body: any } | undefined;
    let firstAtStop = 0;
    let firstAtStart = 0;
    const crowd = (seed: number, prefix: string) =>
      makeCrowd({ count: 2500, buyers: 1000, types: onFirst.ticketTypes, seed, buyerPrefix: prefix });
    await Promise.all([
      sendCrowd({
        baseUrl,
        eventId: onFirst.id,
        intents: crowd(21, 'first'),
        concurrency: 16,
        onAnswer: (record) => sentFirst.push(record),
      }),
      sendCrowd({
        baseUrl,
        eventId: onSecond.id,
        intents: makeCrowd({
          count: 2500,
          buyers: 1000,
          types: onSecond.ticketTypes,
          seed: 22,
          buyerPrefix: 'second',
        }),
        concurrency: 16,
        onAnswer: (record) => {
          sentSecond.push(record);
          if (sentSecond.length !== 600) return;
          outage = (async () => {
            second.stop('fast');
            firstAtStop = sentFirst.length;
            await new Promise((r) => setTimeout(r, OUTAGE_MS / 2));
            listedDuringOutage = await getJson(`${baseUrl}/api/events`);
            await new Promise((r) => setTimeout(r, OUTAGE_MS / 2));
            firstAtStart = sentFirst.length;
            second.start();
          })();
        },
      }),
    ]);
    await outage;

    // The first shard's sale went on through the outage, and not one of its buyers saw an error.
    expect(firstAtStart - firstAtStop).toBeGreaterThan(0);
    expect(sentFirst.filter((r) => r.status !== 202 && r.status !== 200).map((r) => r.status)).toEqual([]);
    // Its events are still listed while the other shard is down.
    expect(listedDuringOutage?.status).toBe(200);
    expect(listedDuringOutage?.body.events.map((e: { id: string }) => e.id)).toContain(onFirst.id);
    // The second shard's buyers were told to come back, never given a 500.
    const secondStatuses = new Set(sentSecond.map((r) => r.status));
    expect([...secondStatuses].filter((s) => s !== 202 && s !== 200 && s !== 503)).toEqual([]);
    expect(sentSecond.some((r) => r.status === 503)).toBe(true);

    // Back up: every 202 of both reaches a final status, and no invariant is broken on either shard.
    for (const [event, sent] of [
      [onFirst, sentFirst],
      [onSecond, sentSecond],
    ] as const) {
      await waitDrained(baseUrl, event.id, 120_000);
      const seen = await observe({ baseUrl, eventId: event.id, adminToken: ADMIN_TOKEN, sent });
      expect(sent.filter((r) => r.status === 202).length).toBeGreaterThan(500);
      expect(checkInvariants({ sent, purchases: seen.purchases, stock: seen.stock })).toEqual([]);
    }
    const output = onsale.processes[0]!.output();
    expect(output).not.toContain('child died');
    expect(output).not.toContain('request failed');
  }, 300_000);
});
