import { spawn } from 'node:child_process';
import { connect } from 'amqplib';
import { afterAll, describe, expect, it } from 'vitest';
import { processesNamed } from '../bench/processes.js';
import { measureRabbitCeiling } from '../bench/rabbit-ceiling.js';
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
      // The broker of the tests runs on this machine: its CPU is read, and a message costs it something.
      expect(figures.brokerCpuUsPerMessage?.publish).toBeGreaterThan(0);
      expect(figures.brokerCpuUsPerMessage?.consume).toBeGreaterThanOrEqual(0);
      expect(lines).toHaveLength(3);
      expect(lines.join('\n')).toContain(`batches of ${figures.batch}, ${figures.inFlight} in flight`);

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
