import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteQueue } from '../src/adapters/sqlite/queue.js';
import { ADMIN_TOKEN, freePort, runCli, tempDir, until, waitForReady } from './helpers/processes.js';

const dirs: Array<{ remove: () => void }> = [];
afterAll(() => dirs.forEach((d) => d.remove()));

function dataDir(): string {
  const d = tempDir();
  dirs.push(d);
  return d.path;
}

function titlesOfChildren(pid: number): string[] {
  const out = execFileSync('ps', ['-o', 'args=', '--ppid', String(pid)], { encoding: 'utf8' });
  return out.trim().split('\n').sort();
}

describe('onsale command line', () => {
  it.each(['start', 'serve', 'worker', 'migrate', 'cluster'])(
    '%s --help describes the command and its settings',
    async (cmd) => {
      const p = runCli([cmd, '--help']);
      expect((await p.exited).code).toBe(0);
      expect(p.output()).toContain(`Usage: onsale ${cmd}`);
      expect(p.output()).toContain('--database-url');
      expect(p.output()).toContain('ONSALE_DATA_DIR');
    },
  );

  it.each([
    [['serve'], { PORT: 'eighty' }, 'PORT'],
    [['serve', '--port', '70000'], {}, '--port'],
    [['serve', '--max-queue-depth', '-1'], {}, '--max-queue-depth'],
    [['serve'], { ONSALE_DATABASE_URL: 'mysql://localhost/x' }, 'ONSALE_DATABASE_URL'],
    [['serve'], { ONSALE_QUEUE_URL: 'nats://localhost' }, 'ONSALE_QUEUE_URL'],
    [['serve'], { LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [['serve'], { ONSALE_BUYER_RATE: 'lots' }, 'ONSALE_BUYER_RATE'],
    [['start', '--workers-min', '5', '--workers-max', '2'], {}, 'ONSALE_WORKERS_MAX'],
    [['worker', '--batch-size', '0'], {}, '--batch-size'],
    [['cluster'], { ONSALE_LB: 'traefik' }, 'ONSALE_LB'],
    [['serve'], { ONSALE_TRUST_PROXY: 'the balancer' }, 'ONSALE_TRUST_PROXY'],
    [['serve', '--drain-delay', '9000'], {}, '--drain-delay'],
    [['serve'], { ONSALE_REQUEST_TIMEOUT: '10' }, 'ONSALE_REQUEST_TIMEOUT'],
    [['serve', '--max-connections-per-client', '0'], {}, '--max-connections-per-client'],
    [['serve'], { ONSALE_MAX_STREAMS_PER_CLIENT: 'many' }, 'ONSALE_MAX_STREAMS_PER_CLIENT'],
    [['serve', '--no-such-flag'], {}, '--no-such-flag'],
    [['launch'], {}, 'launch'],
  ] as Array<[string[], Record<string, string>, string]>)(
    '%j %j exits 2 naming %s',
    async (args, env, named) => {
      const p = runCli(args, { ONSALE_DATA_DIR: dataDir(), ...env });
      expect((await p.exited).code).toBe(2);
      expect(p.output()).toContain(named);
    },
  );

  it.each([
    [
      'postgres://127.0.0.1/a,sqlite:/tmp/b.db',
      'none',
      'ONSALE_DATABASE_URL',
      'shard 2 is not a postgres:// URL',
    ],
    [
      'postgres://127.0.0.1/a,postgres://',
      'none',
      'ONSALE_DATABASE_URL',
      'shard 2 needs a host and a database',
    ],
    ['postgres://127.0.0.1/a,postgres://127.0.0.1/a', 'none', 'ONSALE_DATABASE_URL', 'listed twice'],
    [
      'postgres://127.0.0.1/a',
      'postgres://127.0.0.1/r,postgres://127.0.0.1/s',
      'ONSALE_DATABASE_REPLICA_URL',
      '2 replicas listed for 1',
    ],
    [
      'postgres://127.0.0.1/a,postgres://127.0.0.1/b',
      ',mysql://127.0.0.1/r',
      'ONSALE_DATABASE_REPLICA_URL',
      'replica 2 is not a postgres:// URL',
    ],
    [
      'sqlite:/tmp/x.db',
      'postgres://127.0.0.1/r',
      'ONSALE_DATABASE_REPLICA_URL',
      'replicas need a postgres:// database',
    ],
  ])('shards %s with replicas %s exit 2 naming %s: %s', async (database, replicas, named, why) => {
    const p = runCli(['serve'], {
      ONSALE_DATA_DIR: dataDir(),
      ONSALE_DATABASE_URL: database,
      ONSALE_DATABASE_REPLICA_URL: replicas,
    });
    expect((await p.exited).code).toBe(2);
    expect(p.output()).toContain(named);
    expect(p.output()).toContain(why);
  });

  it.each(['start', 'serve', 'worker', 'cluster'])(
    '%s refuses RabbitMQ with a SQLite database (exit 2), naming both settings',
    async (cmd) => {
      const p = runCli([cmd], { ONSALE_DATA_DIR: dataDir(), ONSALE_QUEUE_URL: 'amqp://127.0.0.1:1' });
      expect((await p.exited).code).toBe(2);
      expect(p.output()).toContain('ONSALE_QUEUE_URL (--queue-url) is RabbitMQ');
      expect(p.output()).toContain('ONSALE_DATABASE_URL (--database-url) must be postgres://');
    },
  );

  it('refuses SQS with a SQLite database, and an SQS URL with credentials without repeating them (exit 2)', async () => {
    const sqlite = runCli(['serve'], { ONSALE_DATA_DIR: dataDir(), ONSALE_QUEUE_URL: 'sqs://onsale' });
    expect((await sqlite.exited).code).toBe(2);
    expect(sqlite.output()).toContain('ONSALE_QUEUE_URL (--queue-url) is SQS');
    expect(sqlite.output()).toContain('ONSALE_DATABASE_URL (--database-url) must be postgres://');
    const secret = runCli(['serve'], {
      ONSALE_DATA_DIR: dataDir(),
      ONSALE_DATABASE_URL: 'postgres://127.0.0.1:1/x',
      ONSALE_QUEUE_URL: 'sqs://AKIAEXAMPLE:s3cr3tKey@onsale',
    });
    expect((await secret.exited).code).toBe(2);
    expect(secret.output()).toContain('ONSALE_QUEUE_URL (--queue-url) is not an SQS queue URL');
    expect(secret.output()).not.toContain('s3cr3tKey');
  });

  it('migrate creates the schema once and can run again', async () => {
    const dir = dataDir();
    for (let i = 0; i < 2; i++) {
      const p = runCli(['migrate'], { ONSALE_DATA_DIR: dir });
      expect((await p.exited).code).toBe(0);
      expect(p.output()).toContain('up to date');
    }
    expect(statSync(join(dir, 'onsale.db')).size).toBeGreaterThan(0);
  });

  it('start on a fresh folder opens a demo event, tells where the token is, and stops cleanly on SIGTERM', async () => {
    const dir = dataDir();
    const port = await freePort();
    const env = {
      ONSALE_DATA_DIR: dir,
      PORT: String(port),
      ONSALE_WEB: '2',
      ONSALE_WORKERS_MIN: '2',
      ONSALE_WORKERS_MAX: '2',
    };
    const first = runCli(['start'], env);
    await until(() => first.output().includes('stop with Ctrl+C'), 15_000);
    const token = readFileSync(join(dir, 'admin-token'), 'utf8').trim();
    expect(statSync(join(dir, 'admin-token')).mode & 0o777).toBe(0o600);
    const out = first.output();
    expect(out).toContain(`onsale is running at http://127.0.0.1:${port}`);
    expect(out).toContain(`pages: http://127.0.0.1:${port}/ for buyers, http://127.0.0.1:${port}/admin`);
    // Its stdout is a pipe here (a log file, a journal): the token stays in its file, only the path is told.
    expect(out).toContain(`admin token: in ${join(dir, 'admin-token')}`);
    expect(out).not.toContain(token);
    const eventUrl = /demo event "DJ Night \(demo\)": (\S+)/.exec(out)![1]!;
    const event = (await (await fetch(eventUrl)).json()) as { ticketTypes: unknown[]; buyerIdKind: string };
    expect(event.ticketTypes.length).toBeGreaterThan(0);
    // The buyer page asks for an email: the demo event takes nothing else, so one person is one buyer.
    expect(event.buyerIdKind).toBe('email');
    expect(out).toContain('curl -i -X POST');
    // Workers name themselves once loaded, which may come after the web servers answer.
    const expectedTitles = [
      'onsale-autoscaler',
      'onsale-web',
      'onsale-web',
      'onsale-worker',
      'onsale-worker',
    ];
    await until(() => titlesOfChildren(first.child.pid!).join() === expectedTitles.join(), 15_000).catch(
      () => {},
    );
    expect(titlesOfChildren(first.child.pid!)).toEqual(expectedTitles);
    expect(
      execFileSync('ps', ['-o', 'args=', '-p', String(first.child.pid)], { encoding: 'utf8' }).trim(),
    ).toBe('onsale-supervisor');

    const stoppedAt = Date.now();
    expect(await first.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(Date.now() - stoppedAt).toBeLessThan(10_000);

    // The second start reuses the folder: same token, not printed, no second demo event.
    const second = runCli(['start'], env);
    await until(() => second.output().includes('stop with Ctrl+C'), 15_000);
    expect(second.output()).not.toContain(token);
    expect(second.output()).not.toContain('demo event');
    const list = (await (await fetch(`http://127.0.0.1:${port}/api/events`)).json()) as { events: unknown[] };
    expect(list.events).toHaveLength(1);
    const stats = await fetch(`${eventUrl}/stats`, { headers: { authorization: `Bearer ${token}` } });
    expect(stats.status).toBe(200);
    expect((await second.stop('SIGINT')).code).toBe(0);
  });

  it('serve exits 0 on SIGTERM within the deadline, ending open status streams', async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const env = { ONSALE_DATA_DIR: dataDir(), PORT: String(port), ONSALE_ADMIN_TOKEN: ADMIN_TOKEN };
    const serve = runCli(['serve'], env);
    await waitForReady(`${base}/readyz`, serve);
    expect(
      execFileSync('ps', ['-o', 'args=', '-p', String(serve.child.pid)], { encoding: 'utf8' }).trim(),
    ).toBe('onsale-web');
    // No worker runs, so the purchase stays queued and its stream stays open.
    const created = await fetch(`${base}/api/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` },
      body: JSON.stringify({ name: 'x', ticketTypes: [{ name: 'GA', priceCents: 1, capacity: 1 }] }),
    });
    const event = (await created.json()) as { id: string; ticketTypes: Array<{ id: string }> };
    const bought = await fetch(`${base}/api/events/${event.id}/purchases`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        buyerId: 'b',
        items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
      }),
    });
    const { statusUrl } = (await bought.json()) as { statusUrl: string };
    const stream = await fetch(`${base}${statusUrl}/events`);
    const reader = stream.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toContain('"status":"queued"');

    const stoppedAt = Date.now();
    expect(await serve.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(Date.now() - stoppedAt).toBeLessThan(10_000);
    await expect(
      (async () => {
        while (!(await reader.read()).done);
      })(),
    ).resolves.toBeUndefined();
  });

  it('dlq list shows a poison purchase the worker dead-lettered, and dlq replay puts it back', async () => {
    const dir = dataDir();
    const env = { ONSALE_DATA_DIR: dir };
    expect((await runCli(['migrate'], env).exited).code).toBe(0);
    const queue = new SqliteQueue(`sqlite:${join(dir, 'onsale.db')}`);
    const purchaseId = randomUUID();
    await queue.enqueue([
      {
        purchase: {
          purchaseId,
          eventId: 'no-such-event',
          buyerId: 'poison',
          canonicalBuyerId: 'poison',
          items: [{ ticketTypeId: 'nope', quantity: 1 }],
          acceptedAt: new Date().toISOString(),
        },
      },
    ]);
    const worker = runCli(['worker', '--max-attempts', '2'], env);
    await until(() => worker.output().includes('purchase dead-lettered'), 15_000);
    expect((await worker.stop()).code).toBe(0);

    const list = runCli(['dlq', 'list'], env);
    expect((await list.exited).code).toBe(0);
    expect(list.output()).toContain(purchaseId);
    expect(list.output()).toContain('1 dead letter(s)');
    const replay = runCli(['dlq', 'replay', purchaseId], env);
    expect((await replay.exited).code).toBe(0);
    expect(replay.output()).toContain('1 dead letter(s) put back on the queue');
    expect(await queue.depthOf('no-such-event')).toEqual({ queued: 1, deadLetters: 0 });
    await queue.close();
  });
});
