import { spawn } from 'node:child_process';
import { connect } from 'amqplib';
import { afterAll, describe, expect, it } from 'vitest';
import { processesNamed } from '../bench/processes.js';
import { describeSetting, measureRabbitCeiling, messageOf } from '../bench/rabbit-ceiling.js';
import { MAX_PURCHASES_PER_MESSAGE, SEQ_HEADER, SEQS_HEADER } from '../src/adapters/rabbitmq/broker.js';
import { exclusion, RABBITMQ_URL, uniqueName } from './helpers/services.js';

describe('the bench finds the servers of an engine by command name', () => {
  const sleeper = spawn('sleep', ['30']);
  afterAll(() => sleeper.kill());

  it('lists a running process under its name, and a name no process has as empty', () => {
    const found = processesNamed(['sleep', 'no-such-server']);
    expect(found.get('sleep')).toContain(sleeper.pid);
    expect(found.get('no-such-server')).toEqual([]);
  });
});

describe("RabbitMQ's ceiling publishes messages as onsale does", () => {
  it('carries several purchases of one event as a JSON array with their seqs, and a lone one as itself', () => {
    const batch = messageOf(MAX_PURCHASES_PER_MESSAGE);
    const purchases = JSON.parse(batch.body.toString()) as Array<{ eventId: string; purchaseId: string }>;
    expect(purchases).toHaveLength(MAX_PURCHASES_PER_MESSAGE);
    expect(new Set(purchases.map((p) => p.eventId)).size).toBe(1);
    expect(batch.options.headers[SEQS_HEADER]).toHaveLength(MAX_PURCHASES_PER_MESSAGE);

    const lone = messageOf(1);
    expect(JSON.parse(lone.body.toString())).toMatchObject({ purchaseId: purchases[0]!.purchaseId });
    expect(lone.options.headers).toEqual({ [SEQ_HEADER]: expect.any(Number) });
    // About a purchase's 250 bytes each: the broker writes what onsale's messages weigh.
    expect(batch.body.length).toBeGreaterThan(MAX_PURCHASES_PER_MESSAGE * lone.body.length);
  });
});

describe.skipIf(exclusion('rabbitmq') !== '')(
  `RabbitMQ's own ceiling, as the bench measures it${exclusion('rabbitmq')}`,
  () => {
    it('publishes, confirms and drains messages, counts what the broker spent, and leaves no queue', async () => {
      const lines: string[] = [];
      const queue = uniqueName('onsale_test_ceiling');
      const figures = await measureRabbitCeiling(RABBITMQ_URL, { seconds: 0.3, queue }, (line) =>
        lines.push(line),
      );

      expect(figures.perSec).toBeGreaterThan(0);
      expect(figures.consumedPerSec).toBeGreaterThan(0);
      // The broker of the tests runs on this machine: its CPU is read, and a purchase costs it something.
      expect(figures.brokerCpuUsPerPurchase?.publish).toBeGreaterThan(0);
      expect(figures.brokerCpuUsPerPurchase?.consume).toBeGreaterThanOrEqual(0);
      // One line per setting: onsale's messages of a group commit's purchases, and one message per purchase.
      expect(lines).toHaveLength(4);
      expect(lines.join('\n')).toContain(`${describeSetting(figures.setting)}:`);
      expect(lines.filter((line) => line.includes(`of ${MAX_PURCHASES_PER_MESSAGE} purchases`))).toHaveLength(
        3,
      );
      expect(lines.filter((line) => line.includes('of 1 purchase,'))).toHaveLength(1);

      // Its queue is gone: no bench queue is left behind on a shared broker.
      const connection = await connect(RABBITMQ_URL);
      try {
        const channel = await connection.createChannel();
        channel.on('error', () => undefined); // the broker closes the channel on the 404 awaited below
        await expect(channel.checkQueue(queue)).rejects.toThrow(/NOT_FOUND/);
      } finally {
        await connection.close();
      }
    });
  },
);
