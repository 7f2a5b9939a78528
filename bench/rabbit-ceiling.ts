// RabbitMQ's own ceiling for onsale's publishes: persistent messages of a purchase's size sent to a quorum
// queue and confirmed, from one connection, as fast as the broker confirms them, with nothing else running.
// It is the rate onsale's RabbitMQ queue could reach if its index, its web servers and its workers cost
// nothing, and (when the broker runs on this machine) what one message costs the broker in CPU: to publish
// it, and to deliver it to a consumer that acks it (as a worker does, one ack per message).
import { randomUUID } from 'node:crypto';
import { connect, type Channel, type ConfirmChannel } from 'amqplib';
import { DEFAULT_PREFETCH } from '../src/adapters/rabbitmq/broker.js';
import { cpuSecondsOf, processesNamed } from './processes.js';

export interface RabbitCeilingPlan {
  /** Seconds per setting; the best setting is reported. */
  seconds: number;
  /** The queue it declares and deletes at the end (a unique name by default). */
  queue?: string;
}

export interface RabbitCeilingFigures {
  /** Confirmed messages per second of the best setting. */
  perSec: number;
  /** Messages per batch and batches awaiting their confirms at once, of the best setting. */
  batch: number;
  inFlight: number;
  /**
   * The broker's CPU microseconds per message (best setting): to take and confirm it, and to deliver it and
   * take its ack. Null when the broker is not on this machine.
   */
  brokerCpuUsPerMessage: { publish: number; consume: number } | null;
  /** Messages per second delivered and acked, draining what the best setting published. */
  consumedPerSec: number;
  /** CPUs the broker used during the best setting; null when it is not on this machine. */
  brokerBusyCores: number | null;
}

/** Batches as a web server's group commit sends them (one, or two servers' at once), and larger ones. */
const SETTINGS: ReadonlyArray<{ batch: number; inFlight: number }> = [
  { batch: 128, inFlight: 1 },
  { batch: 128, inFlight: 2 },
  { batch: 256, inFlight: 2 },
];

/** The body of a message as onsale publishes one: a purchase's JSON, about 250 bytes. */
const BODY = Buffer.from(
  JSON.stringify({
    purchaseId: `evt_0123456789abcdef-0195a1b2c3d4-${'x'.repeat(22)}`,
    eventId: 'evt_0123456789abcdef',
    buyerId: 'buyer-0123456789',
    canonicalBuyerId: 'buyer-0123456789',
    items: [{ ticketTypeId: 'tt_0123456789abcdef', quantity: 2 }],
    acceptedAt: new Date(0).toISOString(),
    idempotencyKey: randomUUID(),
  }),
);

/** The properties onsale's broker sets on a purchase's message (see src/adapters/rabbitmq/broker.ts). */
const MESSAGE_OPTIONS = {
  persistent: true,
  mandatory: true,
  messageId: 'evt_0123456789abcdef-0195a1b2c3d4-0123456789abcdefghijkl',
  contentType: 'application/json',
  headers: { 'onsale-seq': 123456 },
};

export async function measureRabbitCeiling(
  url: string,
  plan: RabbitCeilingPlan,
  progress: (line: string) => void,
): Promise<RabbitCeilingFigures> {
  const connection = await connect(url);
  const queue = plan.queue ?? `onsale_bench_ceiling_${randomUUID()}`;
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    const consumer = await connection.createChannel();
    await consumer.prefetch(DEFAULT_PREFETCH);
    let best: RabbitCeilingFigures | null = null;
    for (const setting of SETTINGS) {
      const figures = await measureSetting(channel, consumer, queue, setting, plan.seconds);
      const cpu = figures.brokerCpuUsPerMessage;
      progress(
        `RabbitMQ ceiling, batches of ${setting.batch}, ${setting.inFlight} in flight: ` +
          `${Math.round(figures.perSec).toLocaleString('en-US')} confirmed/s` +
          (cpu === null
            ? ''
            : `, broker ${figures.brokerBusyCores!.toFixed(2)} CPU, ${cpu.publish.toFixed(1)} µs per message`) +
          `; drained at ${Math.round(figures.consumedPerSec).toLocaleString('en-US')}/s` +
          (cpu === null ? '' : `, ${cpu.consume.toFixed(1)} µs per message`),
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
  setting: { batch: number; inFlight: number },
  seconds: number,
): Promise<RabbitCeilingFigures> {
  const brokers = processesNamed(['beam.smp']).get('beam.smp')!;
  const brokerCpu = () => cpuSecondsOf(brokers);
  const until = Date.now() + seconds * 1000;
  let confirmed = 0;
  let cpuBefore = brokerCpu();
  let startedAt = performance.now();
  await Promise.all(
    Array.from({ length: setting.inFlight }, async () => {
      while (Date.now() < until) {
        await publishBatch(channel, queue, setting.batch);
        confirmed += setting.batch;
      }
    }),
  );
  const publishSec = (performance.now() - startedAt) / 1000;
  const publishCpu = brokerCpu() - cpuBefore;

  cpuBefore = brokerCpu();
  startedAt = performance.now();
  await drain(consumer, queue, confirmed);
  const consumeSec = (performance.now() - startedAt) / 1000;
  const consumeCpu = brokerCpu() - cpuBefore;

  const onThisMachine = brokers.length > 0;
  return {
    perSec: confirmed / publishSec,
    ...setting,
    brokerCpuUsPerMessage: onThisMachine
      ? { publish: (publishCpu * 1e6) / confirmed, consume: (consumeCpu * 1e6) / confirmed }
      : null,
    brokerBusyCores: onThisMachine ? publishCpu / publishSec : null,
    consumedPerSec: confirmed / consumeSec,
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

function publishBatch(channel: ConfirmChannel, queue: string, size: number): Promise<unknown> {
  return Promise.all(
    Array.from(
      { length: size },
      () =>
        new Promise<void>((resolve, reject) =>
          channel.sendToQueue(queue, BODY, MESSAGE_OPTIONS, (error: unknown) =>
            error ? reject(new Error('RabbitMQ did not confirm a message', { cause: error })) : resolve(),
          ),
        ),
    ),
  );
}
