import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { openQueue, openStorage } from '../adapters/index.js';
import type { Config } from '../config.js';
import type { AdminToken } from '../shared/admin-token.js';
import { createLogger } from '../shared/logger.js';
import { STOP_DEADLINE_MS } from '../shared/shutdown.js';
import { CHILD_SPEC_ENV, type ChildSpec } from '../supervisor/start.js';
import { isScaleMessage } from './autoscaler.js';
import { balancerArgs, CHECK_MS, CLUSTER_DRAIN_MS, findBalancer, renderConfig, type Backend } from './lb.js';
import { Supervisor } from './supervisor.js';

/** The web servers listen here, reachable by the balancer only; it connects from this address too. */
const INTERNAL_HOST = '127.0.0.1';

/**
 * `onsale cluster`: a load balancer (HAProxy or nginx) on the configured port in front of `config.web`
 * `onsale serve` processes on free local ports, the workers, and the autoscaler that sets how many workers
 * run; all supervised. SIGHUP restarts the web servers one at a time (a rolling restart); SIGTERM/SIGINT
 * stops everything within 10 s.
 */
export async function runCluster(config: Config, admin: AdminToken): Promise<void> {
  process.title = 'onsale-supervisor';
  const logger = createLogger(config.logLevel, 'cluster');
  // Before anything else: without a balancer there is no cluster (the caller exits 2 with how to install it).
  const balancer = findBalancer(config.lb);

  const storage = openStorage(config.databaseUrl);
  const queue = openQueue(config.queueUrl, config);
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

  const supervisor = new Supervisor(logger);
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
        ONSALE_CLUSTER_CHILD: '1',
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
    supervisor.run(server.name, () => child({ role: 'web', config: webConfig(server) }));

  // The number of worker processes the cluster runs: the one place it is known.
  let workers = 0;
  let nextWorker = 1;
  async function setWorkers(count: number): Promise<void> {
    const target = Math.min(config.workersMax, Math.max(config.workersMin, count));
    while (workers < target) {
      const name = `worker-${nextWorker++}`;
      supervisor.run(name, () => child({ role: 'worker', config, workerId: name }));
      workers += 1;
    }
    const retiring: Array<Promise<void>> = [];
    // The newest go first; each finishes its batch before it exits.
    for (const name of supervisor
      .names('worker-')
      .reverse()
      .slice(0, Math.max(0, workers - target))) {
      retiring.push(supervisor.retire(name));
    }
    workers = target;
    await Promise.all(retiring);
  }
  await setWorkers(config.workersMin);

  supervisor.run('autoscaler', () => {
    const scaler = child({ role: 'autoscaler', config, workers });
    scaler.on('message', (message) => {
      if (isScaleMessage(message) && !stopping) void setWorkers(message.workers);
    });
    return scaler;
  });

  // The balancer runs under a small wrapper (onsale-lb) that stops it when this process goes away.
  const lbCommand = [balancer, ...balancerArgs(config.lb, configPath, runDir)];
  supervisor.run('lb', () => child({ role: 'lb', config, command: lbCommand }));

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
      admin.created
        ? `  admin token (shown once; kept in ${admin.path}): ${admin.token}`
        : admin.path
          ? `  admin token: in ${admin.path}`
          : '',
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

/** A port nothing listens on now, for one web server. */
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
