// RabbitMQ's own ceiling for onsale's publishes: messages shaped as onsale sends them (one event's purchases
// of a group commit as one persistent message, a JSON array of up to MAX_PURCHASES_PER_MESSAGE) sent to a
// quorum queue and confirmed, from one connection, as fast as the broker confirms them, with nothing else
// running. It is the rate onsale's RabbitMQ queue could reach if its index, its web servers and its workers
// cost nothing, and (when the broker runs on this machine) what one purchase costs the broker in CPU: to
// publish it, and to deliver it to a consumer that acks each message (as a worker does).
import { randomUUID } from 'node:crypto';
import { connect, type Channel, type ConfirmChannel, type Options } from 'amqplib';
import {
  asMessages,
  DEFAULT_PREFETCH,
  MAX_PURCHASES_PER_MESSAGE,
  propertiesOf,
} from '../src/adapters/rabbitmq/broker.js';
import type { AcceptedPurchase } from '../src/domain/types.js';
import { cpuSecondsOf, processesNamed } from './processes.js';

export interface RabbitCeilingPlan {
  /** Seconds per setting; the best setting is reported. */
  seconds: number;
  /** The queue it declares and deletes at the end (a unique name by default). */
  queue?: string;
}

/** How a setting publishes: `messages` messages of `purchasesPerMessage` each per round, `inFlight` rounds at once. */
export interface RabbitCeilingSetting {
  purchasesPerMessage: number;
  messages: number;
  inFlight: number;
}

export interface RabbitCeilingFigures {
  /** Purchases confirmed per second by the best setting. */
  perSec: number;
  setting: RabbitCeilingSetting;
  /**
   * The broker's CPU microseconds per purchase (best setting): to take and confirm it, and to deliver it and
   * take its message's ack. Null when the broker is not on this machine.
   */
  brokerCpuUsPerPurchase: { publish: number; consume: number } | null;
  /** Purchases per second delivered and acked, draining what the best setting published. */
  consumedPerSec: number;
  /** CPUs the broker used during the best setting; null when it is not on this machine. */
  brokerBusyCores: number | null;
}

/**
 * A group commit's purchases of one event in messages of 16: one web server's batch of 64 awaiting its
 * confirms, two servers' at once, and larger batches; then one message per purchase, as onsale published
 * before it batched, for comparison.
 */
const SETTINGS: readonly RabbitCeilingSetting[] = [
  { purchasesPerMessage: MAX_PURCHASES_PER_MESSAGE, messages: 4, inFlight: 1 },
  { purchasesPerMessage: MAX_PURCHASES_PER_MESSAGE, messages: 4, inFlight: 2 },
  { purchasesPerMessage: MAX_PURCHASES_PER_MESSAGE, messages: 16, inFlight: 2 },
  { purchasesPerMessage: 1, messages: 128, inFlight: 2 },
];

/** A purchase as onsale publishes one (its JSON is about 270 bytes). */
const PURCHASE: AcceptedPurchase = {
  purchaseId: `evt_0123456789abcdef-0195a1b2c3d4-${'x'.repeat(22)}`,
  eventId: 'evt_0123456789abcdef',
  buyerId: 'buyer-0123456789',
  canonicalBuyerId: 'buyer-0123456789',
  items: [{ ticketTypeId: 'tt_0123456789abcdef', quantity: 2 }],
  acceptedAt: new Date(0).toISOString(),
};

/**
 * The message onsale's broker publishes for `purchases` purchases of one event (asMessages and propertiesOf
 * of src/adapters/rabbitmq/broker.ts, so that the ceiling sends what onsale sends).
 */
export function messageOf(purchases: number): { body: Buffer; options: Options.Publish } {
  const payload = JSON.stringify(PURCHASE);
  const outgoing = Array.from({ length: purchases }, (_, i) => ({
    partition: 0,
    seq: 123456 + i,
    purchase: PURCHASE,
    payload,
  }));
  const [message, ...more] = asMessages(outgoing);
  if (!message || more.length > 0) throw new Error(`${purchases} purchases do not make one message`);
  return { body: Buffer.from(message.body), options: propertiesOf(message) };
}

/** How a setting reads in the bench's progress lines. */
export function describeSetting(s: RabbitCeilingSetting): string {
  return (
    `${s.messages} message${s.messages > 1 ? 's' : ''} of ${s.purchasesPerMessage} ` +
    `purchase${s.purchasesPerMessage > 1 ? 's' : ''}, ${s.inFlight} in flight`
  );
}

export async function measureRabbitCeiling(
  url: string,
  plan: RabbitCeilingPlan,
  progress: (line: string) => void,
): Promise<RabbitCeilingFigures> {
  // noDelay as onsale's broker connection sets it: Nagle's algorithm would hold each small round ~45 ms.
  const connection = await connect(url, { noDelay: true });
  const queue = plan.queue ?? `onsale_bench_ceiling_${randomUUID()}`;
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    const consumer = await connection.createChannel();
    await consumer.prefetch(DEFAULT_PREFETCH);
    let best: RabbitCeilingFigures | null = null;
    for (const setting of SETTINGS) {
      const figures = await measureSetting(channel, consumer, queue, setting, plan.seconds);
      const cpu = figures.brokerCpuUsPerPurchase;
      progress(
        `RabbitMQ ceiling, ${describeSetting(setting)}: ` +
          `${Math.round(figures.perSec).toLocaleString('en-US')} purchases confirmed/s` +
          (cpu === null
            ? ''
            : `, broker ${figures.brokerBusyCores!.toFixed(2)} CPU, ${cpu.publish.toFixed(1)} µs per purchase`) +
          `; drained at ${Math.round(figures.consumedPerSec).toLocaleString('en-US')}/s` +
          (cpu === null ? '' : `, ${cpu.consume.toFixed(1)} µs per purchase`),
      );
      if (best === null || figures.perSec > best.perSec) best = figures;
    }
    await channel.deleteQueue(queue);
    return best!;
  } finally {
    await connection.close();
  }
}

/** Publishes for `seconds`, then drains the queue. */
async function measureSetting(
  channel: ConfirmChannel,
  consumer: Channel,
  queue: string,
  setting: RabbitCeilingSetting,
  seconds: number,
): Promise<RabbitCeilingFigures> {
  const brokers = processesNamed(['beam.smp']).get('beam.smp')!;
  const brokerCpu = () => cpuSecondsOf(brokers);
  const message = messageOf(setting.purchasesPerMessage);
  const until = Date.now() + seconds * 1000;
  let messages = 0;
  let cpuBefore = brokerCpu();
  let startedAt = performance.now();
  await Promise.all(
    Array.from({ length: setting.inFlight }, async () => {
      while (Date.now() < until) {
        await publishRound(channel, queue, message, setting.messages);
        messages += setting.messages;
      }
    }),
  );
  const publishSec = (performance.now() - startedAt) / 1000;
  const publishCpu = brokerCpu() - cpuBefore;

  cpuBefore = brokerCpu();
  startedAt = performance.now();
  await drain(consumer, queue, messages);
  const consumeSec = (performance.now() - startedAt) / 1000;
  const consumeCpu = brokerCpu() - cpuBefore;

  const purchases = messages * setting.purchasesPerMessage;
  const onThisMachine = brokers.length > 0;
  return {
    perSec: purchases / publishSec,
    setting,
    brokerCpuUsPerPurchase: onThisMachine
      ? { publish: (publishCpu * 1e6) / purchases, consume: (consumeCpu * 1e6) / purchases }
      : null,
    brokerBusyCores: onThisMachine ? publishCpu / publishSec : null,
    consumedPerSec: purchases / consumeSec,
  };
}

/** Consumes `count` messages of `queue`, acking each on its own, then cancels the subscription. */
async function drain(consumer: Channel, queue: string, count: number): Promise<void> {
  let left = count;
  let done = () => {};
  let fail = (_error: Error) => {};
  const drained = new Promise<void>((resolve, reject) => ([done, fail] = [resolve, reject]));
  if (count === 0) done();
  const { consumerTag } = await consumer.consume(queue, (message) => {
    if (message === null) return fail(new Error(`RabbitMQ cancelled the consumer of ${queue}`));
    consumer.ack(message);
    if (--left === 0) done();
  });
  await drained;
  await consumer.cancel(consumerTag);
}

/** Publishes `count` copies of `message` and resolves once RabbitMQ confirmed every one. */
function publishRound(
  channel: ConfirmChannel,
  queue: string,
  message: ReturnType<typeof messageOf>,
  count: number,
): Promise<unknown> {
  return Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<void>((resolve, reject) =>
          channel.sendToQueue(queue, message.body, message.options, (error: unknown) =>
            error ? reject(new Error('RabbitMQ did not confirm a message', { cause: error })) : resolve(),
          ),
        ),
    ),
  );
}
