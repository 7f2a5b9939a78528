import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { DEPLOY_EXAMPLE, renderHaproxy, renderNginx } from '../src/processes/lb/balancer.js';
import { SETTINGS } from '../src/config.js';
import { prometheusConfig } from '../src/metrics/prometheus-config.js';

const DEPLOY = resolve(import.meta.dirname, '../deploy');

describe('deploy/ balancer templates', () => {
  // Regenerate with: npm run build && node scripts/render-deploy.mjs
  it('are what onsale cluster generates for the documented example addresses', () => {
    expect(readFileSync(join(DEPLOY, 'haproxy/haproxy.cfg'), 'utf8')).toBe(renderHaproxy(DEPLOY_EXAMPLE));
    expect(readFileSync(join(DEPLOY, 'nginx/nginx.conf'), 'utf8')).toBe(renderNginx(DEPLOY_EXAMPLE));
  });
});

describe('deploy/prometheus/prometheus.yml', () => {
  it('is what prometheusConfig() generates for its example targets, and its jobs are those of the alert rules', () => {
    const example = parseAllDocuments(readFileSync(join(DEPLOY, 'prometheus/prometheus.yml'), 'utf8'));
    expect(example).toHaveLength(1);
    const generated = prometheusConfig({
      web: ['127.0.0.1:3000', '127.0.0.1:3001'],
      workers: ['127.0.0.1:9464', '127.0.0.1:9465'],
      adminTokenFile: 'onsale-admin-token',
      ruleFiles: ['alerts.yml'],
    });
    expect(example[0]!.toJS()).toEqual(JSON.parse(generated));
    // The web-server-down rule names a job that both this file and onsale cluster's configuration define.
    const alerts = readFileSync(join(DEPLOY, 'prometheus/alerts.yml'), 'utf8');
    const jobs = [...alerts.matchAll(/job="([^"]+)"/g)].map((m) => m[1]);
    expect(jobs.length).toBeGreaterThan(0);
    const clusterJobs = (
      JSON.parse(prometheusConfig({ targetsFile: '/run/targets.json', adminTokenFile: '/run/token' })) as {
        scrape_configs: Array<{ job_name: string }>;
      }
    ).scrape_configs.map((j) => j.job_name);
    for (const job of jobs) expect(clusterJobs).toContain(job);
  });
});

type Doc = { kind: string; metadata: { name: string }; spec?: any; data?: any; stringData?: any };

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return yamlFiles(path);
    return /\.ya?ml$/.test(name) ? [path] : [];
  });
}

function load(files: string[]): Doc[] {
  return files.flatMap((file) =>
    parseAllDocuments(readFileSync(file, 'utf8')).map((doc) => {
      expect(doc.errors, file).toEqual([]);
      return doc.toJS() as Doc;
    }),
  );
}

const main = load(yamlFiles(join(DEPLOY, 'k8s')).filter((f) => !f.includes('alternatives')));
const all = load(yamlFiles(join(DEPLOY, 'k8s')));
const ofKind = (kind: string, docs = main) => docs.filter((d) => d.kind === kind);
const deployment = (name: string) => ofKind('Deployment').find((d) => d.metadata.name === name)!;
const containers = (d: Doc) => [
  ...(d.spec.template.spec.initContainers ?? []),
  ...d.spec.template.spec.containers,
];
// An empty selector would select every pod: it selects nothing here.
const selects = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

describe('deploy/k8s manifests', () => {
  it('hold the web and worker Deployments, Service, HPA, PDBs, ScaledObject and config', () => {
    expect(
      ofKind('Deployment')
        .map((d) => d.metadata.name)
        .sort(),
    ).toEqual(['onsale-web', 'onsale-worker']);
    expect(ofKind('Service')).toHaveLength(1);
    expect(ofKind('HorizontalPodAutoscaler')).toHaveLength(1);
    expect(ofKind('PodDisruptionBudget')).toHaveLength(2);
    expect(ofKind('ScaledObject')).toHaveLength(1);
    // Every event's backlog, not one event's stream: the queue depth over all of them.
    const trigger = ofKind('ScaledObject')[0]!.spec.triggers[0];
    expect(trigger.type).toBe('prometheus');
    expect(trigger.metadata.query).toBe('max(onsale_queue_depth)');
    expect(JSON.stringify(ofKind('ScaledObject')[0])).not.toMatch(/EVENT-ID|stream/);
    expect(ofKind('ScaledObject', all).map((s) => s.spec.triggers[0].type)).toContain('rabbitmq');
    expect(ofKind('ConfigMap')).toHaveLength(1);
  });

  it('select the pods they mean: Deployment, Service and PDB selectors match the pod labels', () => {
    for (const d of ofKind('Deployment'))
      expect(selects(d.spec.selector.matchLabels, d.spec.template.metadata.labels), d.metadata.name).toBe(
        true,
      );
    const web = deployment('onsale-web').spec.template.metadata.labels;
    const worker = deployment('onsale-worker').spec.template.metadata.labels;
    expect(selects(ofKind('Service')[0]!.spec.selector, web)).toBe(true);
    expect(selects(ofKind('Service')[0]!.spec.selector, worker)).toBe(false);
    const pdbs = ofKind('PodDisruptionBudget').map((p) => p.spec.selector.matchLabels);
    expect(pdbs.filter((s) => selects(s, web))).toHaveLength(1);
    expect(pdbs.filter((s) => selects(s, worker))).toHaveLength(1);
    for (const scaler of [...ofKind('HorizontalPodAutoscaler'), ...ofKind('ScaledObject', all)])
      expect(ofKind('Deployment').map((d) => d.metadata.name)).toContain(scaler.spec.scaleTargetRef.name);
    // The HPA scales the web servers on CPU, KEDA the workers.
    expect(ofKind('HorizontalPodAutoscaler')[0]!.spec.scaleTargetRef.name).toBe('onsale-web');
    expect(ofKind('HorizontalPodAutoscaler')[0]!.spec.metrics[0].resource.name).toBe('cpu');
    for (const s of ofKind('ScaledObject', all)) expect(s.spec.scaleTargetRef.name).toBe('onsale-worker');
  });

  it('probe /readyz for readiness and /healthz for liveness on the port the server listens on', () => {
    const web = deployment('onsale-web');
    const container = web.spec.template.spec.containers[0];
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    expect(container.livenessProbe.httpGet.path).toBe('/healthz');
    const port = container.ports.find(
      (p: { name: string }) => p.name === container.readinessProbe.httpGet.port,
    );
    expect(String(port.containerPort)).toBe(ofKind('ConfigMap')[0]!.data.PORT);
    expect(ofKind('ConfigMap')[0]!.data.HOST).toBe('0.0.0.0');
    const service = ofKind('Service')[0]!;
    expect(service.spec.ports[0].targetPort).toBe(port.name);
  });

  it('run onsale commands with settings that exist, from a ConfigMap and Secrets that exist', () => {
    const known = new Set<string>([...SETTINGS.map((s) => s.env), 'ONSALE_ADMIN_TOKEN']);
    const configMaps = new Map(ofKind('ConfigMap').map((c) => [c.metadata.name, c.data]));
    const secrets = new Map(ofKind('Secret').map((s) => [s.metadata.name, s.stringData]));
    for (const d of ofKind('Deployment')) {
      for (const c of containers(d)) {
        expect(c.command.slice(0, 2)).toEqual(['node', 'dist/cli.js']);
        expect(['serve', 'worker', 'migrate']).toContain(c.command[2]);
        for (const from of c.envFrom ?? []) {
          const source = from.configMapRef
            ? configMaps.get(from.configMapRef.name)
            : secrets.get(from.secretRef.name);
          expect(source, JSON.stringify(from)).toBeDefined();
          for (const name of Object.keys(source)) expect(known, name).toContain(name);
        }
        for (const e of c.env ?? []) expect(known, e.name).toContain(e.name);
      }
    }
    // The drain delay is shorter than the grace period Kubernetes gives a pod to stop.
    const grace = deployment('onsale-web').spec.template.spec.terminationGracePeriodSeconds;
    expect(Number(configMaps.get('onsale-config').ONSALE_DRAIN_DELAY) / 1000 + 9).toBeLessThanOrEqual(grace);
    // Every TriggerAuthentication reads a Secret that is defined.
    const allSecrets = new Set(ofKind('Secret', all).map((s) => s.metadata.name));
    for (const auth of ofKind('TriggerAuthentication', all))
      for (const ref of auth.spec.secretTargetRef) expect(allSecrets).toContain(ref.name);
  });
});
