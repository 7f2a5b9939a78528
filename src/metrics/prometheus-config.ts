/**
 * A Prometheus configuration that scrapes the given onsale processes with the alert rules of
 * deploy/prometheus/alerts.yml: what deploy/prometheus/prometheus.yml shows, for a topology known at run
 * time (the tests, and `onsale cluster`). JSON is valid YAML, so the text can be written as prometheus.yml.
 */
export function prometheusConfig(opts: {
  /** HOST:PORT of each web server (one per machine under `onsale start`). */
  web: string[];
  /** HOST:PORT of each standalone worker's metrics listener (ONSALE_METRICS_PORT). */
  workers?: string[];
  /** Absolute paths of rule files, typically deploy/prometheus/alerts.yml. */
  ruleFiles?: string[];
  scrapeIntervalSeconds?: number;
}): string {
  const interval = `${opts.scrapeIntervalSeconds ?? 5}s`;
  const jobs = [{ job_name: 'onsale-web', static_configs: [{ targets: opts.web }] }];
  if (opts.workers?.length) {
    jobs.push({ job_name: 'onsale-worker', static_configs: [{ targets: opts.workers }] });
  }
  const config = {
    global: { scrape_interval: interval, evaluation_interval: interval },
    rule_files: opts.ruleFiles ?? [],
    scrape_configs: jobs,
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}
