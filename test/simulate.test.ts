import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { clock } from '../src/simulate/play.js';
import type { SimulationReport } from '../src/simulate/run.js';
import { launchBrowser } from './helpers/browser.js';
import { startBrokenShop, type Fault } from './helpers/broken-shop.js';
import {
  ADMIN_TOKEN,
  LOOPBACK_EXEMPT,
  alive,
  childrenOf,
  runCli,
  startOnsale,
  tempDir,
  until,
} from './helpers/processes.js';
import { POSTGRES_ADMIN_URL, REDIS_URL } from './helpers/services.js';

/** Alive and not a zombie (an orphan's zombie stays until PID 1 reaps it, which some containers never do). */
function running(pid: number): boolean {
  try {
    return alive(pid) && !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** `onsale simulate`, through the real CLI: its checks catch broken servers, and pass against onsale. */

const dir = tempDir('onsale-simulate-');
afterAll(() => dir.remove());

async function simulate(
  url: string,
  name: string,
  flags: string[],
): Promise<{ code: number | null; output: string; report: SimulationReport }> {
  const json = join(dir.path, `${name}.json`);
  const run = runCli(
    [
      'simulate',
      '--url',
      url,
      '--report-json',
      json,
      '--report-html',
      join(dir.path, `${name}.html`),
      ...flags,
    ],
    { ONSALE_ADMIN_TOKEN: ADMIN_TOKEN },
  );
  const { code } = await run.exited;
  let report: SimulationReport;
  try {
    report = JSON.parse(readFileSync(json, 'utf8')) as SimulationReport;
  } catch {
    throw new Error(`no report from simulate (exit ${code}):\n${run.output()}`);
  }
  return { code, output: run.output(), report };
}

describe('onsale simulate against deliberately broken servers', () => {
  const small = [
    '--buyers',
    '200',
    '--tickets',
    '30',
    '--ticket-types',
    '1',
    '--max-quantity',
    '1',
    '--repeat',
    '0',
  ];
  const cases: Array<[Fault, string, string[]]> = [
    ['oversell', 'no_oversell', []],
    ['out_of_order', 'first_come_first_served', ['--connections', '4']],
    ['drop', 'nothing_lost', ['--settle', '2']],
    ['no_limit', 'per_buyer_limit', ['--repeat', '1', '--max-per-buyer', '1', '--buyers', '20']],
    // Two processes: their times are merged on one clock, so the order across them is still checked.
    ['out_of_order', 'first_come_first_served', ['--connections', '4', '--processes', '2']],
  ];

  it('passes against the same server without a fault (the control)', async () => {
    const shop = await startBrokenShop('honest', ADMIN_TOKEN);
    try {
      const { code, output, report } = await simulate(shop.url, 'honest', small);
      expect(code, output).toBe(0);
      expect(report.invariants).toMatchObject({ ok: true, violations: [] });
      expect(report.totals.ticketsSold).toBe(30);
    } finally {
      await shop.close();
    }
  }, 300_000);

  for (const [fault, invariant, extra] of cases) {
    const title = `${fault}${extra.includes('--processes') ? ', --processes 2' : ''}`;
    it(`fails naming ${invariant} against a server that breaks it (${title})`, async () => {
      const shop = await startBrokenShop(fault, ADMIN_TOKEN);
      try {
        const { code, output, report } = await simulate(shop.url, title.replace(/\W+/g, '-'), [
          ...small,
          ...extra,
        ]);
        expect(code, output).toBe(1);
        expect(report.invariants.ok).toBe(false);
        expect(report.invariants.violations.map((v) => v.invariant)).toContain(invariant);
        expect(output).toContain(`${invariant}:`);
        expect(output).toContain('INVARIANTS BROKEN');
      } finally {
        await shop.close();
      }
    }, 300_000);
  }
});

describe('onsale simulate against onsale', () => {
  it('plays a burst against `onsale start`: everything accepted, sold out, every invariant held', async () => {
    const onsale = await startOnsale({ mode: 'start', env: LOOPBACK_EXEMPT });
    try {
      const { code, output, report } = await simulate(onsale.baseUrl, 'start', [
        '--buyers',
        '3000',
        '--tickets',
        '900',
      ]);
      expect(code, output).toBe(0);
      expect(report.invariants).toEqual({
        ok: true,
        checked: [
          'no_oversell',
          'nothing_lost',
          'no_double_effect',
          'per_buyer_limit',
          'first_come_first_served',
        ],
        violations: [],
      });
      const t = report.totals;
      expect(t.buyers).toBe(3000);
      expect(t.requests).toBeGreaterThan(3000); // some buyers come back
      expect(t.accepted + t.gaveUp).toBe(t.requests);
      expect(t.confirmed + t.rejected).toBe(t.accepted);
      expect(t.notFinal).toBe(0);
      expect(t.ticketsSold).toBe(900);
      expect(t.capacity).toBe(900);
      expect(report.stock).toHaveLength(3);
      expect(report.rejections.sold_out).toBeGreaterThan(0);
      expect(report.timeToSellOutSec).toBeGreaterThan(0);
      expect(report.ackLatencyMs.count).toBeGreaterThanOrEqual(t.accepted);
      expect(report.endToEndLatencyMs.count).toBe(t.accepted);
      expect(report.endToEndLatencyMs.p99).toBeGreaterThanOrEqual(report.endToEndLatencyMs.p50);
      const perSecond = report.timeline.reduce((n, s) => n + s.accepted, 0);
      expect(perSecond).toBe(t.accepted);
      expect(output).toContain('invariants: all held');
      // The simulator's own cost: CPU per request sent and what one core of it could send.
      expect(report.clientCpu).toMatchObject({ processes: 1 });
      expect(report.clientCpu.cpuMs).toBeGreaterThan(0);
      expect(report.clientCpu.includes).toContain('retries');
      // The machine's CPUs, read from /proc/stat over the same time: at least what the simulator used.
      expect(report.clientCpu.cpus).toBe(availableParallelism());
      expect(report.clientCpu.machineBusyCores).toBeGreaterThanOrEqual(report.clientCpu.busyCores * 0.9);
      expect(report.clientCpuMsPerRequest).toBeCloseTo(report.clientCpu.cpuMs / t.attempts, 2);
      // The same figure, as requests per second of one core (within the rounding of the milliseconds).
      expect(report.clientRequestsPerCoreSec * report.clientCpuMsPerRequest).toBeGreaterThan(980);
      expect(report.clientRequestsPerCoreSec * report.clientCpuMsPerRequest).toBeLessThan(1020);
      expect(output).toMatch(
        /simulator CPU [\d.]+ ms per request \(one core of it sends about [\d,]+ req\/s\)/,
      );
    } finally {
      await onsale.stop();
    }
  }, 300_000);

  it('with --processes 2: the same crowd split in two, merged totals that add up, every invariant held', async () => {
    const onsale = await startOnsale({ mode: 'start', env: LOOPBACK_EXEMPT });
    try {
      const { code, output, report } = await simulate(onsale.baseUrl, 'processes', [
        '--buyers',
        '3000',
        '--tickets',
        '900',
        '--processes',
        '2',
      ]);
      expect(code, output).toBe(0);
      expect(report.invariants.ok).toBe(true);
      expect(report.options.processes).toBe(2);
      const t = report.totals;
      // The crowd was planned once and split: the same seed plans as many requests as one process sends.
      const single = JSON.parse(readFileSync(join(dir.path, 'start.json'), 'utf8')) as SimulationReport;
      expect(t.requests).toBe(single.totals.requests);
      expect(t.buyers).toBe(3000);
      expect(t.accepted + t.gaveUp).toBe(t.requests);
      expect(t.confirmed + t.rejected).toBe(t.accepted);
      expect(t.notFinal).toBe(0);
      expect(t.ticketsSold).toBe(900);
      // Every accepted purchase is one the server stored, and the reverse: no request played twice or lost.
      const stats = (await (
        await fetch(`${onsale.baseUrl}/api/events/${report.eventId}/stats`, {
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        })
      ).json()) as { purchases: Record<string, number> };
      const stored = Object.values(stats.purchases).reduce((a, b) => a + b, 0);
      expect(stored).toBe(t.accepted);
      expect(stats.purchases.confirmed).toBe(t.confirmed);
      expect(stats.purchases.rejected).toBe(t.rejected);
      expect(report.timeline.reduce((n, s) => n + s.sent, 0)).toBe(t.attempts);
      expect(report.timeline.reduce((n, s) => n + s.accepted, 0)).toBe(t.accepted);
      expect(report.endToEndLatencyMs.count).toBe(t.accepted);
      // The simulator's own cost, of both children and the parent.
      expect(report.clientCpu.processes).toBe(2);
      expect(report.clientCpu.cpuMs).toBeGreaterThan(0);
      expect(report.clientCpuMsPerRequest).toBeCloseTo(report.clientCpu.cpuMs / t.attempts, 2);
      expect(output).toContain('2 process(es) used');
      expect(output).toContain('invariants: all held');
    } finally {
      await onsale.stop();
    }
  }, 300_000);

  it('plays a ramp against `onsale serve` + `onsale worker`, following purchases by SSE', async () => {
    const onsale = await startOnsale({ mode: 'split', workers: 1, env: LOOPBACK_EXEMPT });
    try {
      const { code, output, report } = await simulate(onsale.baseUrl, 'split', [
        '--buyers',
        '600',
        '--tickets',
        '200',
        '--arrival',
        'ramp',
        '--duration',
        '3',
        '--follow',
        'sse',
      ]);
      expect(code, output).toBe(0);
      expect(report.invariants.ok).toBe(true);
      expect(report.totals.notFinal).toBe(0);
      expect(report.totals.ticketsSold).toBe(200);
      expect(report.options).toMatchObject({ arrival: 'ramp', follow: 'sse' });
      expect(report.options).not.toHaveProperty('adminToken');
      // A ramp spreads the crowd over its duration: requests are sent in more than one second.
      expect(report.timeline.filter((s) => s.sent > 0).length).toBeGreaterThanOrEqual(2);
    } finally {
      await onsale.stop();
    }
  }, 300_000);

  // Reads the report the first test of this block wrote.
  it('renders its HTML report in Chromium, under its own CSP, with its charts and no console error', async () => {
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      const requests: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') errors.push(m.text());
      });
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('request', (r) => requests.push(r.url()));
      await page.goto(`file://${join(dir.path, 'start.html')}`);
      expect(await page.locator('h1').textContent()).toBe('Flash sale simulation');
      expect(await page.locator('.verdict').textContent()).toBe('All invariants held');
      // Throughput, tickets left, two latencies, rejections, stock (and refusals, when there were any).
      expect(await page.locator('svg.chart').count()).toBeGreaterThanOrEqual(6);
      expect(await page.locator('polyline.series').count()).toBe(5);
      expect(await page.locator('.invariants li.ok').count()).toBe(5);
      expect(await page.locator('.cost').textContent()).toMatch(/simulator CPU [\d.]+ ms per request/);
      // The stylesheet is allowed by its hash: were it blocked, the body would have no max-width.
      expect(
        await page.locator('body').evaluate((b) => b.ownerDocument.defaultView!.getComputedStyle(b).maxWidth),
      ).toBe('1100px');
      const box = await page.locator('svg.chart').first().boundingBox();
      expect(box!.height).toBeGreaterThan(100);
      expect(errors).toEqual([]);
      expect(requests.filter((u) => !u.startsWith('file://'))).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 300_000);

  it('refuses bad flags with exit status 2, naming the flag', async () => {
    const bad: Array<[string[], string]> = [
      [['--buyers', '0'], '--buyers'],
      [['--arrival', 'sideways'], '--arrival'],
      [['--repeat', '2'], '--repeat'],
      [['--url', 'ftp://x'], '--url'],
      [['--follow', 'telepathy'], '--follow'],
      [['--processes', '0'], '--processes'],
      [['--processes', '65'], '--processes'],
      [['--processes', 'two'], '--processes'],
    ];
    for (const [flags, name] of bad) {
      const run = runCli(['simulate', ...flags], { ONSALE_ADMIN_TOKEN: ADMIN_TOKEN });
      expect((await run.exited).code, run.output()).toBe(2);
      expect(run.output()).toContain(name);
    }
    const noToken = runCli(['simulate', '--url', 'http://127.0.0.1:9']);
    expect((await noToken.exited).code).toBe(2);
    expect(noToken.output()).toContain('--admin-token');
  }, 300_000);

  it('with --processes: every process dates requests on one clock (first come, first served compares them)', () => {
    // A child's clock() read between two of the parent's: with per-process clocks (performance.now(), which
    // starts at each process's birth) the child's reading would be far below the parent's.
    const before = clock();
    const play = pathToFileURL(fileURLToPath(new URL('../dist/simulate/play.js', import.meta.url))).href;
    const out = execFileSync(process.execPath, [
      '--input-type=module',
      '-e',
      `import { clock } from '${play}'; process.stdout.write(String(clock()));`,
    ]);
    const after = clock();
    const child = Number(out.toString());
    expect(child).toBeGreaterThanOrEqual(before);
    expect(child).toBeLessThanOrEqual(after);
  });

  it('with --processes 2: a child that dies fails the run naming it; SIGTERM stops the children', async () => {
    const shop = await startBrokenShop('honest', ADMIN_TOKEN);
    // A long ramp, so that the children are still sending when they are killed.
    const long = ['--buyers', '200000', '--arrival', 'ramp', '--duration', '120', '--processes', '2'];
    const start = async () => {
      const run = runCli(['simulate', '--url', shop.url, ...long], { ONSALE_ADMIN_TOKEN: ADMIN_TOKEN });
      await until(() => childrenOf(run.child.pid!).length === 2, 30_000);
      return { run, children: childrenOf(run.child.pid!).map((c) => c.pid) };
    };
    try {
      const crashed = await start();
      process.kill(crashed.children[0]!, 'SIGKILL');
      expect((await crashed.run.exited).code, crashed.run.output()).toBe(1);
      expect(crashed.run.output()).toMatch(
        new RegExp(`simulator process [12] of 2 \\(pid ${crashed.children[0]}\\) was killed by SIGKILL`),
      );
      await until(() => !running(crashed.children[1]!), 10_000);

      const stopped = await start();
      stopped.run.child.kill('SIGTERM');
      expect((await stopped.run.exited).code, stopped.run.output()).toBe(130);
      expect(stopped.children.length).toBeGreaterThan(0);
      await until(() => stopped.children.every((pid) => !running(pid)), 10_000);
    } finally {
      await shop.close();
    }
  }, 300_000);
});

describe('npm run sale', () => {
  it('on SIGINT stops onsale and removes its throw-away database, Redis keys and data folder, saying so', async () => {
    const script = fileURLToPath(new URL('../build/bench/standard-sale.js', import.meta.url));
    const sale = spawn(
      process.execPath,
      [script, '--engines', 'postgres+redis', '--buyers', '100000', '--tickets', '20000', '--out', dir.path],
      {
        env: {
          PATH: process.env.PATH ?? '',
          HOME: process.env.HOME ?? '/tmp',
          ONSALE_BENCH_POSTGRES_URL: POSTGRES_ADMIN_URL,
          ONSALE_BENCH_REDIS_URL: REDIS_URL,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    sale.stdout.on('data', (d: Buffer) => (output += d.toString()));
    sale.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((r) => sale.once('exit', (code) => r(code)));
    const postgres = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
    await postgres.connect();
    const redis = new Redis(REDIS_URL);
    const databaseExists = async (name: string) =>
      (await postgres.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1;
    const saleDatabases = async () =>
      (
        await postgres.query<{ datname: string }>(
          "SELECT datname FROM pg_database WHERE datname LIKE 'onsale_sale_%'",
        )
      ).rows.map((r) => r.datname);
    try {
      const before = await saleDatabases();
      // Selling: the first progress line comes once purchases are on the Redis queue and in the database.
      await until(() => /\[sale\] +[\d.]+ s +sent [1-9]/.test(output), 120_000);
      const selling = (await saleDatabases()).filter((d) => !before.includes(d));
      sale.kill('SIGINT');
      expect(await exited, output).toBe(130);
      const removed =
        /\[sale\] stopped; removed: PostgreSQL database (\w+), Redis keys (\w+):\*, data folder (\S+)\n/.exec(
          output,
        );
      expect(removed, output).not.toBeNull();
      const [, database, prefix, folder] = removed!;
      expect(selling).toContain(database); // it existed while selling
      expect(await databaseExists(database!)).toBe(false);
      expect(await redis.keys(`${prefix}:*`)).toEqual([]);
      expect(existsSync(folder!)).toBe(false);
    } finally {
      if (sale.exitCode === null) sale.kill('SIGKILL');
      await postgres.end();
      redis.disconnect();
    }
  }, 300_000);
});
