import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prometheusConfig } from '../src/metrics/prometheus-config.js';
import { sendCrowd } from '../src/simulate/crowd.js';
import { createEvent, getJson, purchase, waitDrained } from './helpers/api.js';
import { makeCrowd } from './helpers/crowd.js';
import { ADMIN_TOKEN, LOOPBACK_EXEMPT, startOnsale, until, type Onsale } from './helpers/processes.js';
import {
  PROMETHEUS_DIR,
  promtool,
  samples,
  startPrometheus,
  type RunningPrometheus,
} from './helpers/prometheus.js';

const DASHBOARD = join(PROMETHEUS_DIR, '../grafana/onsale.json');

/** Every family docs and alerts rely on (histograms are looked up by their _count series), and process defaults. */
const FAMILIES = [
  'onsale_http_request_duration_seconds_count',
  'onsale_purchases_accepted_total',
  'onsale_purchases_refused_total',
  'onsale_purchases_finalized_total',
  'onsale_queue_depth',
  'onsale_queue_oldest_age_seconds',
  'onsale_allocation_batch_size_count',
  'onsale_allocation_duration_seconds_count',
  'onsale_tickets_available',
  'onsale_tickets_sold',
  'onsale_retries_total',
  'onsale_dead_letters',
  'onsale_workers',
  'onsale_purchase_end_to_end_seconds_count',
  'onsale_outbox_depth',
  'onsale_outbox_oldest_age_seconds',
  'onsale_emails_sent_total',
  'onsale_email_failures_total',
  'process_cpu_seconds_total',
  'process_resident_memory_bytes',
  'nodejs_eventloop_lag_p99_seconds',
];

function sum(all: Map<string, number>, name: string, labels = ''): number {
  let total = 0;
  for (const [series, value] of all) {
    const bare = series.split('{')[0];
    if (bare === name && series.includes(labels)) total += value;
  }
  return total;
}

describe('deploy/prometheus', () => {
  it('passes promtool check rules, test rules and check config', async () => {
    const rules = await promtool(['check', 'rules', 'alerts.yml']);
    expect(rules.output).toContain('SUCCESS: 10 rules found');
    expect(rules.code).toBe(0);
    const tests = await promtool(['test', 'rules', 'alerts.test.yml']);
    expect(tests.output).toContain('SUCCESS');
    expect(tests.code).toBe(0);
    // The configuration reads the admin token from a file beside it, which promtool wants to exist.
    const { mkdtempSync, writeFileSync: write, copyFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'onsale-prometheus-config-'));
    try {
      for (const file of ['prometheus.yml', 'alerts.yml'])
        copyFileSync(join(PROMETHEUS_DIR, file), join(dir, file));
      write(join(dir, 'onsale-admin-token'), 'a-token\n');
      const config = await promtool(['check', 'config', join(dir, 'prometheus.yml')]);
      expect(config.code, config.output).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails promtool test rules when a rule is wrong (the tests test something)', async () => {
    const { mkdtempSync, writeFileSync, copyFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'onsale-alerts-'));
    try {
      const broken = readFileSync(join(PROMETHEUS_DIR, 'alerts.yml'), 'utf8').replace(
        'max(onsale_dead_letters) > 0',
        'max(onsale_dead_letters) > 5',
      );
      writeFileSync(join(dir, 'alerts.yml'), broken);
      copyFileSync(join(PROMETHEUS_DIR, 'alerts.test.yml'), join(dir, 'alerts.test.yml'));
      const result = await promtool(['test', 'rules', join(dir, 'alerts.test.yml')]);
      expect(result.code).not.toBe(0);
      expect(result.output).toContain('OnsaleDeadLetters');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('metrics of `onsale start` (2 web servers, 2 workers) scraped by Prometheus during a flood', () => {
  let onsale: Onsale | undefined;
  let prometheus: RunningPrometheus | undefined;

  beforeAll(async () => {
    // Workers held at two: the autoscaler would otherwise add some during the flood (onsale_workers below).
    onsale = await startOnsale({
      mode: 'start',
      env: { ONSALE_WEB: '2', ONSALE_WORKERS_MIN: '2', ONSALE_WORKERS_MAX: '2', ...LOOPBACK_EXEMPT },
    });
    const adminTokenFile = join(onsale.dataDir, 'prometheus-admin-token');
    writeFileSync(adminTokenFile, ADMIN_TOKEN);
    const config = prometheusConfig({
      web: [new URL(onsale.baseUrl).host],
      adminTokenFile,
      ruleFiles: [join(PROMETHEUS_DIR, 'alerts.yml')],
      scrapeIntervalSeconds: 1,
    });
    prometheus = await startPrometheus(config);
    const check = await promtool(['check', 'config', prometheus.configFile]);
    expect(check.code, check.output).toBe(0);
  });

  afterAll(async () => {
    await prometheus?.stop();
    await onsale?.stop();
  });

  it('counts what happened across the whole machine, and Prometheus finds every family', async () => {
    const { baseUrl } = onsale!;
    const event = await createEvent(baseUrl, {
      ticketTypes: [
        { name: 'GA', priceCents: 5000, capacity: 1200, maxPerBuyer: 4 },
        { name: 'VIP', priceCents: 9000, capacity: 200, maxPerBuyer: 2 },
      ],
    });
    const crowd = makeCrowd({ count: 3000, buyers: 1500, types: event.ticketTypes, seed: 5 });
    const [sent] = await Promise.all([
      sendCrowd({ baseUrl, eventId: event.id, intents: crowd, concurrency: 32 }),
      // Refusals among the crowd: bodies without items.
      (async () => {
        for (let i = 0; i < 20; i++) {
          expect((await purchase(baseUrl, event.id, { buyerId: `bad-${i}` })).status).toBe(400);
        }
      })(),
    ]);
    const accepted = sent.filter((r) => r.status === 202).length;
    expect(accepted).toBeGreaterThan(2000);
    const stats = await waitDrained(baseUrl, event.id);

    // The shared-state gauges may be up to a second old (a reading serves the scrapes of one second).
    const scrape = async () =>
      samples(
        await (
          await fetch(`${baseUrl}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
        ).text(),
      );
    await until(async () => sum(await scrape(), 'onsale_queue_depth') === 0);
    // Each web server keeps its own reading: past one more second, the other's is from after the drain too.
    await new Promise((r) => setTimeout(r, 1_100));

    // One scrape of either web server shows the sums over all processes: the same truth every time.
    for (let scrape = 0; scrape < 4; scrape++) {
      const res = await fetch(`${baseUrl}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      expect(res.status).toBe(200);
      const m = samples(await res.text());
      expect(sum(m, 'onsale_purchases_accepted_total')).toBe(accepted);
      expect(sum(m, 'onsale_purchases_accepted_total')).toBe(
        stats.purchases.confirmed + stats.purchases.rejected,
      );
      expect(sum(m, 'onsale_purchases_refused_total', 'reason="invalid"')).toBe(20);
      expect(sum(m, 'onsale_purchases_finalized_total', 'outcome="confirmed"')).toBe(
        stats.purchases.confirmed,
      );
      expect(sum(m, 'onsale_purchases_finalized_total', 'outcome="rejected"')).toBe(stats.purchases.rejected);
      expect(sum(m, 'onsale_purchase_end_to_end_seconds_count')).toBe(accepted);
      expect(sum(m, 'onsale_allocation_batch_size_sum')).toBeGreaterThanOrEqual(accepted);
      expect(sum(m, 'onsale_workers')).toBe(2);
      expect(sum(m, 'onsale_queue_depth')).toBe(0);
      for (const t of stats.ticketTypes) {
        const labels = `{event="${event.id}",ticket_type="${t.id}"}`;
        expect(m.get(`onsale_tickets_sold${labels}`)).toBe(t.sold);
        expect(m.get(`onsale_tickets_available${labels}`)).toBe(t.available);
      }
      // Route patterns, never raw URLs: no purchase or event id in a route label.
      const routes = [...m.keys()].filter((k) => k.startsWith('onsale_http_request_duration_seconds_count'));
      expect(routes.some((k) => k.includes('route="/api/events/:eventId/purchases"'))).toBe(true);
      expect(routes.filter((k) => k.includes(event.id))).toEqual([]);
    }

    // Prometheus has scraped the same totals, and has a sample of every family.
    await until(async () => {
      const r = await prometheus!.query('sum(onsale_purchases_accepted_total)');
      return r.length === 1 && Number(r[0]!.value[1]) === accepted;
    }, 60_000);
    for (const family of FAMILIES) {
      const result = await prometheus!.query(family);
      expect(result.length, family).toBeGreaterThan(0);
    }
    const sold = await prometheus!.query(`sum(onsale_tickets_sold{event="${event.id}"})`);
    expect(Number(sold[0]!.value[1])).toBe(
      stats.ticketTypes.reduce((s: number, t: { sold: number }) => s + t.sold, 0),
    );
  });

  it('runs every query of the Grafana dashboard through Prometheus, which accepts it', async () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
      panels: Array<{ title: string; targets?: Array<{ expr: string }> }>;
      templating: { list: Array<{ name: string; definition?: string }> };
    };
    const exprs = dashboard.panels.flatMap((p) =>
      (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })),
    );
    expect(exprs.length).toBeGreaterThan(15);
    const names = new Set<string>();
    for (const { panel, expr } of exprs) {
      const concrete = expr.replaceAll('$__rate_interval', '1m').replaceAll('$event', '.*');
      expect(concrete, panel).not.toContain('$');
      await expect(prometheus!.query(concrete), panel).resolves.toBeDefined();
      for (const name of concrete.match(/\b(onsale|process|nodejs)_[a-z_]+/g) ?? []) names.add(name);
    }
    // Every metric the dashboard names exists in Prometheus (a typo would make an empty panel, not an error).
    for (const name of names) {
      const result = await prometheus!.query(`count({__name__="${name}"})`);
      expect(result.length, name).toBe(1);
    }
    // The event variable's query too.
    const variable = dashboard.templating.list.find((v) => v.name === 'event')!;
    const labelOf = /label_values\((\w+), (\w+)\)/.exec(variable.definition!)!;
    const res = await getJson(`${prometheus!.url}/api/v1/label/${labelOf[2]}/values?match[]=${labelOf[1]}`);
    expect(res.body.data.length).toBeGreaterThan(0);
  });

  it('serves a scrape that promtool check metrics finds no problem in', async () => {
    const text = await (
      await fetch(`${onsale!.baseUrl}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    ).text();
    const result = await promtool(['check', 'metrics'], text);
    expect(result.output).toBe('');
    expect(result.code).toBe(0);
  });
});
