import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { openQueue, openStorage } from '../adapters/index.js';
import type { Config } from '../config.js';
import { prometheusConfig, scrapeTargets, type ScrapeTarget } from '../metrics/prometheus-config.js';
import { adminTokenLine, type AdminToken } from '../shared/admin-token.js';
import { createLogger } from '../shared/logger.js';
import { STOP_DEADLINE_MS } from '../shared/shutdown.js';
import { writeFileAtomically } from '../shared/write-atomically.js';
import {
  CHILD_SPEC_ENV,
  CLUSTER_CHILD_ENV,
  isScaleMessage,
  isWorkersMessage,
  type ChildSpec,
  type WorkersMessage,
} from './messages.js';
import {
  balancerArgs,
  CHECK_MS,
  CLUSTER_DRAIN_MS,
  findBalancer,
  renderConfig,
  type Backend,
} from './lb/balancer.js';
import { Supervisor } from './supervisor.js';

/**
 * The web servers listen here, reachable by the balancer only; it connects from this address too. The
 * workers and the autoscaler serve their /metrics here, for a Prometheus on the same machine.
 */
const INTERNAL_HOST = '127.0.0.1';
/** The alert rules the generated Prometheus configuration loads, when onsale runs from its checkout. */
const ALERT_RULES = resolve(import.meta.dirname, '../../deploy/prometheus/alerts.yml');

/**
 * `onsale cluster`: a load balancer (HAProxy or nginx) on the configured port in front of `config.web`
 * `onsale serve` processes on free local ports, the workers, and the autoscaler that sets how many workers
 * run; all supervised. SIGHUP restarts the web servers one at a time (a rolling restart); SIGTERM/SIGINT
 * stops everything within 10 s. With metrics on, every process is scraped on its own port: the cluster
 * writes a Prometheus configuration next to the balancer's, and a targets file it rewrites whenever the
 * autoscaler changes the workers.
 */
export async function runCluster(config: Config, admin: AdminToken): Promise<void> {
  process.title = 'onsale-supervisor';
  const logger = createLogger(config.logLevel, 'cluster', undefined, config.logFormat);
  // Before anything else: without a balancer there is no cluster (the caller exits 2 with how to install it).
  const balancer = findBalancer(config.lb);

  const storage = await openStorage(config.databaseUrl);
  const queue = await openQueue(config.queueUrl, config);
  await Promise.all([storage.migrate(), queue.migrate()]);
  await Promise.all([storage.close(), queue.close()]);

  const runDir = join(config.dataDir, 'lb');
  mkdirSync(runDir, { recursive: true });
  const servers: Backend[] = [];
  for (let i = 1; i <= config.web; i++) {
    servers.push({ name: `web-${i}`, host: INTERNAL_HOST, port: await freePort(INTERNAL_HOST) });
  }
  const configPath = join(runDir, config.lb === 'haproxy' ? 'haproxy.cfg' : 'nginx.conf');
  writeFileSync(
    configPath,
    renderConfig(config.lb, { listenHost: config.host, listenPort: config.port, servers, runDir }),
  );

  // What Prometheus scrapes, by process name; the targets file is written again whenever it changes.
  const targets = new Map<string, ScrapeTarget>();
  for (const server of servers)
    targets.set(server.name, {
      role: 'web',
      instance: server.name,
      address: `${server.host}:${server.port}`,
    });
  const targetsPath = join(runDir, 'prometheus-targets.json');
  const prometheusPath = join(runDir, 'prometheus.yml');
  const writeTargets = () => {
    if (!config.metrics) return;
    try {
      writeFileAtomically(targetsPath, scrapeTargets([...targets.values()]));
    } catch (error) {
      // Prometheus keeps the targets it had; the workers change all the same.
      logger.error({ err: error, path: targetsPath }, 'cannot write the Prometheus targets file');
    }
  };
  /** A free local port for the /metrics of a worker or the autoscaler (none with metrics off). */
  const metricsPort = async () => (config.metrics ? await freePort(INTERNAL_HOST) : null);

  // The autoscaler exports onsale_workers, the worker processes alive, and the web servers show it to the
  // admin: each is told when it asks and each time that number changes.
  let scaler: ChildProcess | null = null;
  const webChildren = new Set<ChildProcess>();
  const tellWorkers = (to: Iterable<ChildProcess | null> = [scaler, ...webChildren]) => {
    const message: WorkersMessage = { type: 'onsale-workers', workers: supervisor.alive('worker-') };
    for (const target of to) {
      try {
        if (target?.connected) target.send(message, () => {});
      } catch {
        // It is going away; the next one asks when it starts.
      }
    }
  };
  const supervisor = new Supervisor(logger, tellWorkers);
  let stopping = false;
  let rolling = false;
  const cli = process.argv[1]!;
  // Every child has an IPC channel: when this process dies, even by SIGKILL, the channel closes and the
  // children stop (cli.ts), so none is left behind.
  const child = (spec: ChildSpec): ChildProcess =>
    spawn(process.execPath, [...process.execArgv, cli, spec.role], {
      env: {
        ...process.env,
        [CHILD_SPEC_ENV]: JSON.stringify(spec),
        [CLUSTER_CHILD_ENV]: '1',
        ONSALE_ADMIN_TOKEN: admin.token,
      },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });

  const webConfig = (server: Backend): Config => ({
    ...config,
    host: server.host,
    port: server.port,
    // The balancer connects from INTERNAL_HOST; its X-Forwarded-For names the buyer.
    trustProxy: [...new Set([INTERNAL_HOST, ...config.trustProxy])],
    drainDelay: Math.max(config.drainDelay, CLUSTER_DRAIN_MS),
  });
  for (const server of servers)
    supervisor.run(server.name, () => {
      const web = child({ role: 'web', config: webConfig(server) });
      webChildren.add(web);
      web.on('exit', () => webChildren.delete(web));
      web.on('message', (message) => {
        if (isWorkersMessage(message) && message.workers === undefined) tellWorkers([web]);
      });
      return web;
    });

  // The number of worker processes the cluster runs: the one place it is known.
  let workers = 0;
  let nextWorker = 1;
  /** Starts or retires workers; resolves with the retirements under way. */
  async function applyWorkers(count: number): Promise<Array<Promise<void>>> {
    const target = Math.min(config.workersMax, Math.max(config.workersMin, count));
    while (workers < target) {
      const name = `worker-${nextWorker++}`;
      // Its port is picked once: restarted, the worker listens where Prometheus already looks.
      const port = await metricsPort();
      const workerConfig: Config = { ...config, host: INTERNAL_HOST, metricsPort: port };
      supervisor.run(name, () => child({ role: 'worker', config: workerConfig, workerId: name }));
      if (port !== null)
        targets.set(name, { role: 'worker', instance: name, address: `${INTERNAL_HOST}:${port}` });
      workers += 1;
    }
    const retiring: Array<Promise<void>> = [];
    // The newest go first; each finishes its batch before it exits.
    for (const name of supervisor
      .names('worker-')
      .reverse()
      .slice(0, Math.max(0, workers - target))) {
      targets.delete(name);
      retiring.push(supervisor.retire(name));
    }
    workers = target;
    writeTargets();
    return retiring;
  }
  // One change at a time (picking ports waits), but a retirement in progress does not hold up the next.
  let scaling: Promise<unknown> = Promise.resolve();
  async function setWorkers(count: number): Promise<void> {
    const applied = scaling.then(() => applyWorkers(count));
    scaling = applied.catch(() => undefined);
    await Promise.all(await applied);
  }
  await setWorkers(config.workersMin);

  const scalerPort = await metricsPort();
  if (scalerPort !== null)
    targets.set('autoscaler', {
      role: 'autoscaler',
      instance: 'autoscaler',
      address: `${INTERNAL_HOST}:${scalerPort}`,
    });
  supervisor.run('autoscaler', () => {
    const scalerConfig: Config = { ...config, host: INTERNAL_HOST, metricsPort: scalerPort };
    scaler = child({ role: 'autoscaler', config: scalerConfig, workers });
    scaler.on('message', (message) => {
      if (isScaleMessage(message) && !stopping)
        setWorkers(message.workers).catch((error: unknown) =>
          logger.error({ err: error, workers: message.workers }, 'cannot change the workers'),
        );
      else if (isWorkersMessage(message) && message.workers === undefined) tellWorkers([scaler]);
    });
    return scaler;
  });

  // Prometheus: the targets first, so that the configuration never names a missing file.
  writeTargets();
  if (config.metrics) {
    // The web servers' /metrics asks for the admin token: Prometheus reads it from the data folder's
    // token file, or from a copy (mode 0600) when the token came from ONSALE_ADMIN_TOKEN.
    let adminTokenFile = admin.path;
    if (adminTokenFile === null) {
      adminTokenFile = join(runDir, 'prometheus-admin-token');
      writeFileSync(adminTokenFile, `${admin.token}\n`, { mode: 0o600 });
    }
    writeFileSync(
      prometheusPath,
      prometheusConfig({
        targetsFile: targetsPath,
        adminTokenFile,
        ruleFiles: existsSync(ALERT_RULES) ? [ALERT_RULES] : [],
      }),
    );
  }

  // The balancer runs under a small wrapper (onsale-lb) that stops it when this process goes away.
  const lbCommand = [balancer, ...balancerArgs(config.lb, configPath, runDir)];
  const pidFile = join(runDir, 'balancer.pid');
  supervisor.run('lb', () => child({ role: 'lb', config, command: lbCommand, pidFile }));

  const base = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${config.port}`;

  /** Restarts the web servers one at a time, each taking load again before the next one drains. */
  async function rollingRestart(): Promise<void> {
    if (rolling || stopping) return;
    rolling = true;
    logger.info({ web: servers.length }, 'rolling restart of the web servers');
    if (servers.length === 1) logger.warn('one web server only: buyers are refused while it restarts');
    try {
      for (const server of servers) {
        if (stopping) break;
        await supervisor.restart(server.name);
        await waitReady(`http://${server.host}:${server.port}/readyz`, () => stopping);
        // HAProxy puts it back after two good checks; nginx at its first answer.
        await sleep(config.lb === 'haproxy' ? 3 * CHECK_MS : 0);
        logger.info({ server: server.name, pid: supervisor.pid(server.name) }, 'web server restarted');
      }
      logger.info('rolling restart done');
    } finally {
      rolling = false;
    }
  }

  process.on('SIGHUP', () => void rollingRestart());
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping the cluster');
    void supervisor.stopAll(['lb'], STOP_DEADLINE_MS + 500).then((inTime) => {
      logger.info('stopped');
      process.exit(inTime ? 0 : 1);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  await waitReady(`${base}/readyz`, () => stopping);
  if (stopping) return;
  logger.info({ lb: config.lb, web: servers.length, workers, pid: process.pid }, 'cluster started');
  process.stdout.write(
    [
      '',
      `onsale cluster is running at ${base}`,
      `  ${config.lb} (config ${configPath}) in front of ${servers.length} web server(s): ` +
        servers.map((s) => `${s.name} ${s.host}:${s.port}`).join(', '),
      `  ${workers} worker(s), scaled between ${config.workersMin} and ${config.workersMax} by the autoscaler`,
      config.metrics
        ? `  Prometheus config (every process; targets in ${targetsPath}): ${prometheusPath}`
        : '  metrics off (ONSALE_METRICS=off): no Prometheus config',
      `  ${adminTokenLine(admin, process.stdout.isTTY === true) ?? ''}`.trimEnd(),
      `  rolling restart of the web servers: kill -HUP ${process.pid}; stop with Ctrl+C`,
      '',
    ]
      .filter((line, i, all) => line !== '' || i === 0 || i === all.length - 1)
      .join('\n') + '\n',
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `url` until it answers 200 (or `give up` says so). */
async function waitReady(url: string, giveUp: () => boolean): Promise<void> {
  while (!giveUp()) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await res.body?.cancel();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
}

/** A port nothing listens on now, for one web server or one process's /metrics. */
async function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
