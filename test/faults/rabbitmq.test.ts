import { connect, type Channel } from 'amqplib';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  brokerNames,
  DEFAULT_PARTITIONS,
  MAX_PURCHASES_PER_MESSAGE,
  parseRabbitUrl,
  partitionOf,
  SEQ_HEADER,
} from '../../src/adapters/rabbitmq/broker.js';
import { RabbitQueue } from '../../src/adapters/rabbitmq/queue.js';
import { UnavailableError } from '../../src/domain/errors.js';
import { headOf } from '../../src/ports/queue.js';
import { observe, sendCrowd } from '../../src/simulate/crowd.js';
import { checkInvariants, type SentPurchase } from '../../src/simulate/invariants.js';
import { createEvent, purchase, waitDrained, type CreatedEvent } from '../helpers/api.js';
import { makeCrowd, probePurchases, type ProbeAnswer } from '../helpers/crowd.js';
import {
  ADMIN_TOKEN,
  LOOPBACK_EXEMPT,
  childrenOf,
  freePort,
  startOnsale,
  until,
  type Onsale,
} from '../helpers/processes.js';
import { rabbitQueue, rabbitUrl, startPrivateRabbit, type PrivateRabbit } from '../helpers/rabbitmq.js';
import {
  describeEach,
  exclusion,
  freshPostgresDatabase,
  RABBITMQ_URL,
  uniqueName,
} from '../helpers/services.js';
import { acceptedPurchase } from '../helpers/purchases.js';

/** The database beside RabbitMQ: it holds the storage and the queue's index (PostgreSQL only). */
const DATABASES = [
  {
    name: 'postgres',
    excluded: exclusion('rabbitmq', 'postgres'),
    open: async () => {
      const db = await freshPostgresDatabase();
      return { env: { ONSALE_DATABASE_URL: db.url }, drop: db.drop };
    },
  },
];

/**
 * RabbitMQ as the queue, on a private node this test may kill (the shared broker is left alone):
 * onsale start (two web servers, two workers) under a flood while the broker crashes and restarts, and
 * while a worker is SIGKILLed. While the broker is down a purchase gets 503 with Retry-After, never a 500;
 * afterwards every 202 reaches a final status and every invariant of api.md holds.
 */
describeEach(DATABASES, 'RabbitMQ faults during a flood, $name', (database) => {
  let rabbit: PrivateRabbit | undefined;
  let onsale: Onsale | undefined;
  let dropDatabase: (() => Promise<void>) | undefined;
  let event: CreatedEvent;

  beforeAll(async () => {
    rabbit = await startPrivateRabbit();
    const db = await database.open();
    dropDatabase = db.drop;
    onsale = await startOnsale({
      mode: 'start',
      env: {
        ...LOOPBACK_EXEMPT,
        ...db.env,
        ONSALE_QUEUE_URL: rabbitUrl(uniqueName('onsale_fault'), rabbit.url),
        ONSALE_WEB: '2',
        ONSALE_WORKERS_MIN: '2',
        ONSALE_WORKERS_MAX: '2',
      },
    });
    event = await createEvent(onsale.baseUrl, {
      ticketTypes: [
        { name: 'GA', priceCents: 5000, capacity: 1500, maxPerBuyer: 4 },
        { name: 'VIP', priceCents: 9000, capacity: 300, maxPerBuyer: 2 },
      ],
    });
  }, 120_000);

  afterAll(async () => {
    await onsale?.stop();
    await rabbit?.destroy();
    await dropDatabase?.();
  }, 60_000);

  it('answers 503 + Retry-After while the broker is down, then loses and doubles nothing', async () => {
    const { baseUrl } = onsale!;
    const supervisor = onsale!.processes[0]!.child.pid!;
    const crowd = makeCrowd({ count: 7000, buyers: 3500, types: event.ticketTypes, seed: 11 });
    const sent: SentPurchase[] = [];
    const item = [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }];

    // Phase 1: the broker crashes mid-flood (SIGKILL of its VM) and comes back on the same data.
    const whileDown: ProbeAnswer[] = [];
    let outage: Promise<void> | undefined;
    const crashAndRestart = async () => {
      await rabbit!.kill();
      // Probes while it is down: each must be refused with 503 and Retry-After.
      whileDown.push(...(await probePurchases(baseUrl, event.id, item, 20, sent)));
      await rabbit!.start();
    };
    await sendCrowd({
      baseUrl,
      eventId: event.id,
      intents: crowd.slice(0, 3000),
      concurrency: 32,
      onAnswer: (record) => {
        sent.push(record);
        if (sent.length === 1000) outage = crashAndRestart();
      },
    });
    await outage;
    expect(whileDown).toHaveLength(20);
    expect(whileDown.map((a) => a.status)).toEqual(whileDown.map(() => 503));
    expect(whileDown.every((a) => Number(a.retryAfter) >= 1)).toBe(true);
    // Refused at once, not after a hanging request.
    expect(Math.max(...whileDown.map((a) => a.ms))).toBeLessThan(2_000);

    // Back: both web servers accept again within seconds (fresh connections, so that node:cluster hands
    // them to either web server; ten 202s in a row).
    const deadline = Date.now() + 30_000;
    for (let inARow = 0, i = 0; inARow < 10; i++) {
      const sentAt = performance.now();
      const answer = await purchase(
        baseUrl,
        event.id,
        { buyerId: `back-${i}`, items: item },
        { connection: 'close' },
      );
      expect(answer.status === 202 || answer.status === 503).toBe(true);
      sent.push({
        buyerId: `back-${i}`,
        items: item,
        sentAt,
        answeredAt: performance.now(),
        status: answer.status,
        ...(answer.status === 202 ? { purchaseId: answer.body.purchaseId as string } : {}),
      });
      inARow = answer.status === 202 ? inARow + 1 : 0;
      if (Date.now() > deadline) throw new Error('purchases still refused 30 s after RabbitMQ restarted');
      if (answer.status !== 202) await new Promise((r) => setTimeout(r, 100));
    }

    // Phase 2: a worker dies mid-flood; the supervisor restarts it and RabbitMQ hands its messages over.
    let killed: { pid: number; title: string } | undefined;
    const phase2 = await sendCrowd({
      baseUrl,
      eventId: event.id,
      intents: crowd.slice(3000),
      concurrency: 32,
      onAnswer: (record) => {
        sent.push(record);
        if (sent.length === 4500) {
          killed = childrenOf(supervisor).find((c) => c.title === 'onsale-worker');
          if (killed) process.kill(killed.pid, 'SIGKILL');
        }
      },
    });
    expect(killed).toBeDefined();
    await until(() => childrenOf(supervisor).filter((c) => c.title === 'onsale-worker').length === 2, 30_000);

    // 202, or 503 while the broker was down: never a 500. A worker's death costs no buyer anything.
    expect([...new Set(sent.map((r) => r.status))].filter((s) => s !== 202 && s !== 503)).toEqual([]);
    expect(sent.filter((r) => r.status === 503).length).toBeGreaterThan(0);
    expect(phase2.filter((r) => r.status !== 202)).toEqual([]);

    await waitDrained(baseUrl, event.id, 120_000);
    const seen = await observe({ baseUrl, eventId: event.id, adminToken: ADMIN_TOKEN, sent });
    expect(checkInvariants({ sent, purchases: seen.purchases, stock: seen.stock })).toEqual([]);
    for (const t of seen.stock) expect(t.sold).toBe(t.capacity);
  }, 300_000);
});

/**
 * What a broker alone would get wrong, on the shared RabbitMQ (a prefix of each test's own): messages that
 * no index row backs, redelivery counts inflated by prefetch, dead letters on the broker's side.
 */
describe.skipIf(exclusion('rabbitmq', 'postgres') !== '')(
  `RabbitMQ queue: the index and the broker together${exclusion('rabbitmq', 'postgres')}`,
  () => {
    let opened: Awaited<ReturnType<typeof rabbitQueue>>;

    beforeEach(async () => {
      opened = await rabbitQueue();
    });
    afterEach(async () => opened.cleanup());

    async function onBroker<T>(use: (channel: Channel) => Promise<T>): Promise<T> {
      const conn = await connect(RABBITMQ_URL);
      try {
        return await use(await conn.createChannel());
      } finally {
        await conn.close();
      }
    }

    it('drops a message whose publisher never committed it (a web server that died after the confirm)', async () => {
      const orphan = acceptedPurchase('e1');
      const real = acceptedPurchase('e1');
      const { partitions } = brokerNames(opened.prefix, DEFAULT_PARTITIONS);
      await onBroker(async (channel) => {
        channel.sendToQueue(
          partitions[partitionOf('e1', DEFAULT_PARTITIONS)]!,
          Buffer.from(JSON.stringify(orphan)),
          {
            persistent: true,
            headers: { [SEQ_HEADER]: 0 },
          },
        );
      });
      await opened.adapter.enqueue([{ purchase: real }]);
      const batch = (await opened.adapter.claim('w', 10, 5000))!;
      expect(batch.purchases).toEqual([real]);
      await opened.adapter.ack(batch);
      expect(await opened.adapter.find(orphan.purchaseId)).toBeNull();
      expect(await opened.adapter.depth()).toEqual({ depth: 0, oldestAcceptedAt: null });
      await opened.adapter.close(); // anything not acked would go back to the queue now
      const left = await onBroker(async (channel) =>
        channel.checkQueue(partitions[partitionOf('e1', DEFAULT_PARTITIONS)]!),
      );
      expect(left.messageCount).toBe(0);
    });

    it('counts deliveries by claims, not by what RabbitMQ redelivered after a worker died', async () => {
      const purchases = Array.from({ length: 5 }, () => acceptedPurchase('e1'));
      await opened.adapter.enqueue(purchases.map((purchase) => ({ purchase })));
      const first = (await opened.adapter.claim('dead', 1, 60_000))!;
      expect(first.deliveries).toBe(1);
      // The worker dies: its connection closes, and RabbitMQ redelivers all five (x-delivery-count 1).
      await opened.adapter.close();
      const other = opened.reopen();
      const again = (await other.claim('w2', 10, 5000))!;
      expect(again.purchases).toEqual(purchases);
      expect(again.deliveries).toBe(2);
      await other.ack(headOf(again, 1));
      // The next head was prefetched by the dead worker but never tried: its first delivery.
      const rest = (await other.claim('w2', 10, 5000))!;
      expect(rest.purchases).toEqual(purchases.slice(1));
      expect(rest.deliveries).toBe(1);
    });

    /** Messages waiting on every partition of this queue (unacked ones count once their holder closed). */
    async function messagesOnPartitions(): Promise<number> {
      const { partitions } = brokerNames(opened.prefix, DEFAULT_PARTITIONS);
      return onBroker(async (channel) => {
        let total = 0;
        for (const name of partitions) total += (await channel.checkQueue(name)).messageCount;
        return total;
      });
    }

    it('sends one event’s purchases of an enqueue as one message, acked once the last of them is done', async () => {
      const e1 = Array.from({ length: 5 }, () => acceptedPurchase('e1'));
      const e2 = Array.from({ length: 2 }, () => acceptedPurchase('e2'));
      await opened.adapter.enqueue([...e1, ...e2].map((purchase) => ({ purchase })));
      expect(await messagesOnPartitions()).toBe(2);

      // A worker takes two purchases of e1's message, applies them, and dies before the other three.
      const first = (await opened.adapter.claim('w1', 2, 60_000))!;
      expect(first.purchases).toEqual(e1.slice(0, 2));
      await opened.adapter.ack(first);
      await opened.adapter.close(); // the message was not acked: RabbitMQ delivers it again, whole
      expect(await messagesOnPartitions()).toBe(2);

      // The next worker gets exactly the three left, in order: the two applied ones are dropped.
      const other = opened.reopen();
      const rest = (await other.claim('w2', 10, 5000))!;
      expect(rest.purchases).toEqual(e1.slice(2));
      await other.ack(rest);
      const second = (await other.claim('w2', 10, 5000))!;
      expect(second.purchases).toEqual(e2);
      await other.ack(second);
      expect(await other.depth()).toEqual({ depth: 0, oldestAcceptedAt: null });
      await other.close();
      expect(await messagesOnPartitions()).toBe(0);
    });

    it('splits a large batch of one event into messages of at most MAX_PURCHASES_PER_MESSAGE', async () => {
      const purchases = Array.from({ length: MAX_PURCHASES_PER_MESSAGE + 4 }, () => acceptedPurchase('e1'));
      await opened.adapter.enqueue(purchases.map((purchase) => ({ purchase })));
      expect(await messagesOnPartitions()).toBe(2);
      const batch = (await opened.adapter.claim('w', 100, 5000))!;
      expect(batch.purchases).toEqual(purchases);
      await opened.adapter.ack(batch);
      await opened.adapter.close();
      expect(await messagesOnPartitions()).toBe(0);
    });

    it('dead-letters one purchase of a message and still delivers the others', async () => {
      const purchases = Array.from({ length: 3 }, () => acceptedPurchase('e1'));
      await opened.adapter.enqueue(purchases.map((purchase) => ({ purchase })));
      const batch = (await opened.adapter.claim('w', 10, 5000))!;
      await opened.adapter.deadLetter(headOf(batch, 1), 'poison');
      const rest = (await opened.adapter.claim('w', 10, 5000))!;
      expect(rest.purchases).toEqual(purchases.slice(1));
      await opened.adapter.ack(rest);
      expect(await opened.adapter.depthOf('e1')).toEqual({ queued: 0, deadLetters: 1 });
      expect((await opened.adapter.deadLetters(10)).map((d) => d.purchase)).toEqual([purchases[0]]);
      await opened.adapter.close();
      expect(await messagesOnPartitions()).toBe(0);
    });

    it('also moves dead letters to the {prefix}.dead queue on the broker', async () => {
      const poison = acceptedPurchase('e1');
      await opened.adapter.enqueue([{ purchase: poison }]);
      await opened.adapter.deadLetter((await opened.adapter.claim('w', 10, 5000))!, 'poison');
      const { deadQueue } = brokerNames(opened.prefix, DEFAULT_PARTITIONS);
      let dead = 0;
      for (let i = 0; i < 50 && dead === 0; i++) {
        dead = (await onBroker((channel) => channel.checkQueue(deadQueue))).messageCount;
        if (dead === 0) await new Promise((r) => setTimeout(r, 20));
      }
      expect(dead).toBe(1);
      expect(await opened.adapter.depthOf('e1')).toEqual({ queued: 0, deadLetters: 1 });
    });

    it('refuses at once, and records nothing, while the broker is unreachable', async () => {
      const down = new RabbitQueue(
        rabbitUrl(opened.prefix, `amqp://guest:guest@127.0.0.1:${await freePort()}`),
        opened.databaseUrl,
      );
      try {
        const started = Date.now();
        await expect(down.enqueue([{ purchase: acceptedPurchase('e1') }])).rejects.toBeInstanceOf(
          UnavailableError,
        );
        await expect(down.enqueue([{ purchase: acceptedPurchase('e1') }])).rejects.toBeInstanceOf(
          UnavailableError,
        );
        expect(Date.now() - started).toBeLessThan(2_000);
        await expect(down.ping()).rejects.toBeInstanceOf(UnavailableError);
        expect((await down.depth()).depth).toBe(0);
      } finally {
        await down.close();
      }
    });

    it('refuses to start on a prefix created with another partition count', async () => {
      const url = new URL(rabbitUrl(opened.prefix));
      url.searchParams.set('partitions', '4');
      const other = new RabbitQueue(url.toString(), opened.databaseUrl);
      try {
        await expect(other.migrate()).rejects.toThrow(/created with 8 partitions, not 4/);
      } finally {
        await other.close();
      }
    });
  },
);

describe('RabbitMQ queue URL', () => {
  it('takes its own parameters out and hides the password', () => {
    const s = parseRabbitUrl(
      'amqp://guest:secret@host:5672/vh?prefix=sale1&partitions=16&prefetch=2000&heartbeat=10',
    );
    expect(s).toEqual({
      amqpUrl: 'amqp://guest:secret@host:5672/vh?heartbeat=10',
      display: 'amqp://guest:***@host:5672/vh?heartbeat=10',
      prefix: 'sale1',
      partitions: 16,
      prefetch: 2000,
    });
    expect(parseRabbitUrl('amqps://h').prefix).toBe('onsale');
    expect(() => parseRabbitUrl('amqp://h?prefix=a%20b')).toThrow(/prefix/);
    expect(() => parseRabbitUrl('amqp://h?partitions=0')).toThrow(/partitions/);
    expect(() => parseRabbitUrl('redis://h')).toThrow(/amqp/);
  });

  it('spreads events over partitions the same way in every process', () => {
    expect(partitionOf('e1', 8)).toBe(partitionOf('e1', 8));
    const used = new Set(Array.from({ length: 200 }, (_, i) => partitionOf(`event-${i}`, 8)));
    expect(used.size).toBe(8);
  });
});
