import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ScrapeTarget } from '../src/metrics/prometheus-config.js';
import { sendCrowd } from '../src/simulate/crowd.js';
import { createEvent, waitDrained, type CreatedEvent } from './helpers/api.js';
import { startCluster, type Cluster } from './helpers/cluster.js';
import { makeCrowd } from './helpers/crowd.js';
import { ADMIN_TOKEN, LOOPBACK_EXEMPT, until } from './helpers/processes.js';
import { promtool, startPrometheus, type RunningPrometheus } from './helpers/prometheus.js';
import { freshPostgresDatabase } from './helpers/services.js';

/**
 * `onsale cluster` scraped by the real Prometheus with the configuration the cluster wrote: every process
 * (web servers, workers, the autoscaler) is a target of its own, found through the targets file that the
 * cluster rewrites when the autoscaler changes the workers.
 */
describe('metrics of `onsale cluster` (2 web servers, 1 to 3 workers) scraped with the config it wrote', () => {
  let db: { url: string; drop: () => Promise<void> } | undefined;
  let c: Cluster | undefined;
  let prometheus: RunningPrometheus | undefined;
  let configPath = '';
  let targetsPath = '';

  beforeAll(async () => {
    db = await freshPostgresDatabase();
    c = await startCluster({
      ...LOOPBACK_EXEMPT,
      ONSALE_DATABASE_URL: db.url,
      ONSALE_WEB: '2',
      ONSALE_WORKERS_MIN: '1',
      ONSALE_WORKERS_MAX: '3',
      LOG_LEVEL: 'info',
    });
    const banner = /Prometheus config \(every process; targets in (\S+)\): (\S+)/.exec(c.process.output());
    expect(banner, c.process.output()).not.toBeNull();
    targetsPath = banner![1]!;
    configPath = banner![2]!;
    expect(configPath).toBe(`${c.dataDir}/lb/prometheus.yml`);
    // Scraped every second rather than every 5 s, so that a worker the autoscaler adds for a few seconds is
    // seen; the rest is the cluster's configuration as written.
    const config = JSON.parse(readFileSync(configPath, 'utf8')) as { global: Record<string, string> };
    config.global.scrape_interval = config.global.evaluation_interval = '1s';
    prometheus = await startPrometheus(JSON.stringify(config));
  });

  afterAll(async () => {
    await prometheus?.stop();
    await c?.stop();
    await db?.drop();
  });

  const targets = () =>
    JSON.parse(readFileSync(targetsPath, 'utf8')) as Array<{
      targets: string[];
      labels: Pick<ScrapeTarget, 'role' | 'instance'>;
    }>;
  const addressOf = (instance: string) => targets().find((t) => t.labels.instance === instance)?.targets[0];
  /** Prometheus's `up` per target, as "job role instance" → 0 or 1. */
  const up = async () =>
    Object.fromEntries(
      (await prometheus!.query('up')).map((r) => [
        `${r.metric.job} ${r.metric.role} ${r.metric.instance}`,
        Number(r.value[1]),
      ]),
    );
  /** onsale_workers as Prometheus has it: exactly one series, from the autoscaler, every time it is asked. */
  const workersGauge = async () => {
    const result = await prometheus!.query('onsale_workers');
    expect(result.map((r) => r.metric)).toEqual([
      expect.objectContaining({ job: 'onsale-autoscaler', role: 'autoscaler', instance: 'autoscaler' }),
    ]);
    return Number(result[0]!.value[1]);
  };
  const liveWorkers = () => c!.pidsOf('onsale-worker').length;

  it('writes a config promtool accepts, with the alert rules and a targets file naming every process', async () => {
    const check = await promtool(['check', 'config', configPath]);
    expect(check.code, check.output).toBe(0);
    expect(check.output).toContain('1 rule files found');
    expect(targets().map((t) => `${t.labels.role} ${t.labels.instance}`)).toEqual([
      'web web-1',
      'web web-2',
      'worker worker-1',
      'autoscaler autoscaler',
    ]);
    // The web targets are the web servers the balancer sends to.
    expect([addressOf('web-1'), addressOf('web-2')]).toEqual(c!.servers);
  });

  it('scrapes each web server, the worker and the autoscaler; counters agree with the purchases stored', async () => {
    await until(
      async () =>
        JSON.stringify(await up()) ===
        JSON.stringify({
          'onsale-autoscaler autoscaler autoscaler': 1,
          'onsale-web web web-1': 1,
          'onsale-web web web-2': 1,
          'onsale-worker worker worker-1': 1,
        }),
      60_000,
    ).catch(async (error: unknown) => {
      throw new Error(`${String(error)}: up = ${JSON.stringify(await up())}`);
    });

    const event = await createEvent(c!.baseUrl, {
      ticketTypes: [{ name: 'GA', priceCents: 5000, capacity: 500, maxPerBuyer: 4 }],
    });
    const crowd = makeCrowd({ count: 800, buyers: 400, types: event.ticketTypes, seed: 3 });
    const sent = await sendCrowd({ baseUrl: c!.baseUrl, eventId: event.id, intents: crowd, concurrency: 16 });
    const accepted = sent.filter((r) => r.status === 202).length;
    expect(accepted).toBeGreaterThan(700);
    const stats = await waitDrained(c!.baseUrl, event.id);
    expect(stats.purchases.confirmed + stats.purchases.rejected).toBe(accepted);

    // Each web server counts what it accepted; Prometheus's sum over them is the purchases stored.
    await until(async () => {
      const r = await prometheus!.query('sum(onsale_purchases_accepted_total)');
      return r.length === 1 && Number(r[0]!.value[1]) === accepted;
    }, 60_000);
    const byWeb = await prometheus!.query('onsale_purchases_accepted_total > 0');
    expect(byWeb.length).toBeGreaterThan(0);
    for (const r of byWeb) expect(r.metric.role).toBe('web');

    // Allocation metrics come from the worker targets only.
    await until(async () => {
      const r = await prometheus!.query('sum(onsale_purchases_finalized_total)');
      return r.length === 1 && Number(r[0]!.value[1]) === accepted;
    }, 60_000);
    const batches = await prometheus!.query('onsale_allocation_batch_size_count > 0');
    expect(batches.length).toBeGreaterThan(0);
    for (const r of batches) expect(r.metric).toMatchObject({ job: 'onsale-worker', role: 'worker' });
    const allocated = await prometheus!.query('sum(onsale_allocation_batch_size_sum{role="worker"})');
    expect(Number(allocated[0]!.value[1])).toBeGreaterThanOrEqual(accepted);

    // One onsale_workers series for the cluster, the worker processes alive (the autoscaler may have added
    // one during the flood: asked until both readings agree).
    await until(async () => (await workersGauge()) === liveWorkers(), 60_000);
    // The "no worker alive" rule reads it, and is quiet.
    const noWorker = await prometheus!.query('ALERTS{alertname="OnsaleNoWorker"}');
    expect(noWorker).toEqual([]);
  });

  it('restarts a killed worker on the same metrics port', async () => {
    await until(() => liveWorkers() === 1, 60_000);
    const [name] = targets()
      .filter((t) => t.labels.role === 'worker')
      .map((t) => t.labels.instance);
    const address = addressOf(name!)!;
    const [pid] = c!.pidsOf('onsale-worker');
    const killedAt = Date.now() / 1000;
    process.kill(pid!, 'SIGKILL');
    await until(() => c!.pidsOf('onsale-worker').some((p) => p !== pid), 30_000);
    // The new process answers where Prometheus already looks: its start time is after the kill.
    let started = 0;
    await until(async () => {
      const text = await fetch(`http://${address}/metrics`).then(
        (r) => r.text(),
        () => '',
      );
      started = Number(/^process_start_time_seconds (\d+)/m.exec(text)?.[1] ?? 0);
      return started > 0;
    }, 30_000);
    expect(started).toBeGreaterThanOrEqual(Math.floor(killedAt));
    expect(addressOf(name!)).toBe(address);
    await until(async () => (await up())[`onsale-worker worker ${name}`] === 1, 30_000);
  });

  it('lists the workers the autoscaler adds and retires, and onsale_workers follows', async () => {
    await until(() => liveWorkers() === 1, 60_000);
    const event: CreatedEvent = await createEvent(c!.baseUrl, {
      ticketTypes: [{ name: 'GA', priceCents: 5000, capacity: 2000, maxPerBuyer: 4 }],
    });
    // The admin's stats, through the balancer, say the workers the cluster runs (its page shows them).
    const statsWorkers = async () => {
      const res = await fetch(`${c!.baseUrl}/api/events/${event.id}/stats`, {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      return ((await res.json()) as { workers?: number }).workers;
    };
    // The only worker stalls, so a burst leaves a backlog that ages and the autoscaler adds workers.
    const stalled = c!.pidsOf('onsale-worker')[0]!;
    process.kill(stalled, 'SIGSTOP');
    try {
      const crowd = makeCrowd({ count: 1000, buyers: 500, types: event.ticketTypes, seed: 13 });
      await sendCrowd({ baseUrl: c!.baseUrl, eventId: event.id, intents: crowd, concurrency: 16 });
      await until(() => liveWorkers() >= 2, 30_000);
      await until(async () => ((await statsWorkers()) ?? 0) >= 2, 30_000);
    } finally {
      process.kill(stalled, 'SIGCONT');
    }
    const workerTargets = () => targets().filter((t) => t.labels.role === 'worker');
    expect(workerTargets().length).toBeGreaterThanOrEqual(2);
    const added = workerTargets().at(-1)!.labels.instance;
    expect(added).not.toBe('worker-1');
    // Prometheus found the new worker through the targets file and scraped it, and onsale_workers rose
    // with it. Read over the last minutes: the autoscaler retires the new worker 5 s after the queue is quiet.
    await until(async () => {
      const r = await prometheus!.query(`max_over_time(up{job="onsale-worker",instance="${added}"}[5m])`);
      return r.length === 1 && r[0]!.value[1] === '1';
    }, 60_000);
    await until(async () => {
      const r = await prometheus!.query('max_over_time(onsale_workers[5m])');
      return r.length === 1 && Number(r[0]!.value[1]) >= 2;
    }, 60_000);

    // Drained and quiet: back to one worker, in the targets file and in onsale_workers.
    await waitDrained(c!.baseUrl, event.id, 120_000);
    await until(() => workerTargets().length === 1 && liveWorkers() === 1, 90_000);
    await until(async () => (await workersGauge()) === 1, 60_000);
    // Both web servers were told (the balancer alternates between them).
    for (let i = 0; i < 4; i++) expect(await statsWorkers()).toBe(liveWorkers());
    await until(async () => (await up())[`onsale-worker worker ${added}`] === undefined, 60_000);
  });
});
