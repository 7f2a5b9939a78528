/** The kinds of onsale process Prometheus scrapes; each is one job, `onsale-<role>`, and a `role` label. */
const SCRAPE_ROLES = ['web', 'worker', 'autoscaler'] as const;
type ScrapeRole = (typeof SCRAPE_ROLES)[number];

/** One process to scrape: its /metrics at `address` (HOST:PORT), `instance` naming it (web-1, worker-2). */
export interface ScrapeTarget {
  role: ScrapeRole;
  instance: string;
  address: string;
}

/** How often Prometheus reads a targets file again, besides when it sees the file change. */
const TARGETS_REFRESH = '30s';

/**
 * A Prometheus configuration that scrapes the given onsale processes with the alert rules of
 * deploy/prometheus/alerts.yml: what deploy/prometheus/prometheus.yml shows, for a topology known at run
 * time (the tests, and `onsale cluster`). JSON is valid YAML, so the text can be written as prometheus.yml.
 *
 * Either fixed lists (`web`, `workers`), or a `targetsFile` (file_sd, written with scrapeTargets()) for
 * processes that come and go: every job reads that one file and keeps its own role's targets.
 */
export function prometheusConfig(opts: {
  /** HOST:PORT of each web server (one per machine under `onsale start`). */
  web?: string[];
  /** HOST:PORT of each standalone worker's metrics listener (ONSALE_METRICS_PORT). */
  workers?: string[];
  /** Absolute path of a targets file listing every process with its role (`onsale cluster`). */
  targetsFile?: string;
  /**
   * A file holding the admin token, which the web servers' /metrics asks for (workers' and the autoscaler's
   * own listeners are internal and ask for none).
   */
  adminTokenFile: string;
  /** Absolute paths of rule files, typically deploy/prometheus/alerts.yml. */
  ruleFiles?: string[];
  scrapeIntervalSeconds?: number;
}): string {
  const interval = `${opts.scrapeIntervalSeconds ?? 5}s`;
  const { targetsFile } = opts;
  const auth = (role: ScrapeRole) =>
    role === 'web' ? { authorization: { type: 'Bearer', credentials_file: opts.adminTokenFile } } : {};
  const jobs: object[] = targetsFile
    ? SCRAPE_ROLES.map((role) => ({
        job_name: `onsale-${role}`,
        ...auth(role),
        file_sd_configs: [{ files: [targetsFile], refresh_interval: TARGETS_REFRESH }],
        relabel_configs: [{ source_labels: ['role'], regex: role, action: 'keep' }],
      }))
    : [
        { role: 'web' as const, targets: opts.web ?? [] },
        { role: 'worker' as const, targets: opts.workers ?? [] },
      ]
        .filter((job) => job.role === 'web' || job.targets.length > 0)
        .map(({ role, targets }) => ({
          job_name: `onsale-${role}`,
          ...auth(role),
          static_configs: [{ targets, labels: { role } }],
        }));
  const config = {
    global: { scrape_interval: interval, evaluation_interval: interval },
    rule_files: opts.ruleFiles ?? [],
    scrape_configs: jobs,
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}

/** A file_sd targets file (JSON) for prometheusConfig({ targetsFile }): one group per process. */
export function scrapeTargets(targets: readonly ScrapeTarget[]): string {
  const groups = targets.map((t) => ({
    targets: [t.address],
    labels: { role: t.role, instance: t.instance },
  }));
  return `${JSON.stringify(groups, null, 2)}\n`;
}
