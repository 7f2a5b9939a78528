import cluster, { type Worker as ClusterChild } from 'node:cluster';
import type { AddressInfo } from 'node:net';
import { openQueue, openStorage } from '../adapters/index.js';
import type { Config } from '../config.js';
import { enableMetrics, setWorkerCount } from '../metrics/metrics.js';
import { adminTokenLine, type AdminToken } from '../shared/admin-token.js';
import { createLogger } from '../shared/logger.js';
import { STOP_DEADLINE_MS } from '../shared/shutdown.js';
import { createDemoEvent } from './demo-event.js';
import { serveMachineMetrics } from './machine-metrics.js';
import { CHILD_SPEC_ENV, isScaleMessage, type ChildSpec } from './messages.js';
import { restartDelay } from './supervisor.js';

/**
 * `onsale start`: the supervisor (the node:cluster primary) migrates the database, makes the demo event on
 * a fresh one, then runs `config.web` web servers sharing the port and `config.workersMin` workers, and
 * restarts any child that dies. SIGTERM/SIGINT stops the children and waits for them (at most 10 s).
 */
export async function runStart(config: Config, admin: AdminToken): Promise<void> {
  process.title = 'onsale-supervisor';
  const logger = createLogger(config.logLevel, 'supervisor', undefined, config.logFormat);

  const storage = await openStorage(config.databaseUrl);
  const queue = await openQueue(config.queueUrl, config);
  await Promise.all([storage.migrate(), queue.migrate()]);
  const demo = (await storage.listEvents()).length === 0 ? await createDemoEvent(storage) : null;
  await Promise.all([storage.close(), queue.close()]);

  // The web servers accept their connections themselves, from the port's socket they share. Under the
  // default (round robin), this process accepts each connection and hands it to a web server, keeping it
  // until that server says it took it: one handed to a server just killed stays open here, unanswered,
  // for as long as the client waits. Here a killed server's connections close with it, and those not yet
  // accepted wait in the socket's queue for the others. One accept per wake-up (UV_TCP_SINGLE_ACCEPT)
  // lets the servers share a burst of new connections instead of the first awake taking them all.
  cluster.schedulingPolicy = cluster.SCHED_NONE;

  let stopping = false;
  const children = new Map<ClusterChild, ChildSpec>();
  if (config.metrics) {
    enableMetrics();
    serveMachineMetrics();
  }
  const countWorkers = () => setWorkerCount([...children.values()].filter((s) => s.role === 'worker').length);
  const restarts = new Map<string, { count: number }>();
  const startedAt = new WeakMap<ClusterChild, number>();
  /** Workers stopped by the autoscaler: their exit is not a crash. */
  const retired = new Set<ClusterChild>();

  function fork(spec: ChildSpec): ClusterChild {
    const child = cluster.fork({
      [CHILD_SPEC_ENV]: JSON.stringify(spec),
      ONSALE_ADMIN_TOKEN: admin.token,
      ...(spec.role === 'web' ? { UV_TCP_SINGLE_ACCEPT: '1' } : {}),
    });
    children.set(child, spec);
    startedAt.set(child, Date.now());
    countWorkers();
    if (spec.role === 'autoscaler') {
      child.on('message', (message: unknown) => {
        if (isScaleMessage(message) && !stopping) setWorkers(message.workers);
      });
    }
    child.on('exit', (code, signal) => {
      children.delete(child);
      countWorkers();
      if (stopping || retired.delete(child)) return;
      const slot = spec.workerId ?? spec.role;
      const history = restarts.get(slot) ?? { count: 0 };
      restarts.set(slot, history);
      // Back off when a child keeps crashing (a bad database, a full disk), up to 30 s between tries.
      const delay = restartDelay(history, Date.now() - (startedAt.get(child) ?? 0));
      logger.warn(
        { role: spec.role, pid: child.process.pid, code, signal, restartInMs: delay },
        'child died; restarting',
      );
      setTimeout(() => {
        if (!stopping) fork(spec.role === 'autoscaler' ? { ...spec, workers } : spec);
      }, delay).unref();
    });
    return child;
  }

  // The number of worker processes: the one place it is known. The autoscaler child asks for more or fewer.
  let workers = 0;
  let nextWorker = 1;
  function setWorkers(count: number): void {
    const target = Math.min(config.workersMax, Math.max(config.workersMin, count));
    for (; workers < target; workers++) fork({ role: 'worker', config, workerId: `worker-${nextWorker++}` });
    // The newest go first; each finishes its batch before it exits.
    const running = [...children].filter(([c, s]) => s.role === 'worker' && !retired.has(c)).reverse();
    for (const [child] of running.slice(0, Math.max(0, workers - target))) {
      retired.add(child);
      child.process.kill('SIGTERM');
    }
    workers = target;
  }

  let announced = false;
  cluster.on('listening', (_child, address: AddressInfo) => {
    if (announced) return;
    announced = true;
    announce(config, address.port, admin, demo);
  });

  for (let i = 0; i < config.web; i++) fork({ role: 'web', config });
  setWorkers(config.workersMin);
  fork({ role: 'autoscaler', config, workers });
  logger.info({ web: config.web, workers, pid: process.pid }, 'supervisor started');

  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping all children');
    for (const child of children.keys()) child.process.kill('SIGTERM');
    const deadline = setTimeout(() => {
      for (const child of children.keys()) child.process.kill('SIGKILL');
      process.exit(1);
    }, STOP_DEADLINE_MS + 500);
    const check = setInterval(() => {
      if (children.size > 0) return;
      clearInterval(check);
      clearTimeout(deadline);
      logger.info('stopped');
      process.exit(0);
    }, 50);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

function announce(
  config: Config,
  port: number,
  admin: AdminToken,
  demo: Awaited<ReturnType<typeof createDemoEvent>> | null,
): void {
  const base = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  const lines = [``, `onsale is running at ${base}`];
  lines.push(`  pages: ${base}/ for buyers, ${base}/admin for the admin`);
  if (demo) {
    const type = demo.ticketTypes[0]!;
    lines.push(
      `  demo event "${demo.name}": ${base}/api/events/${demo.id}`,
      `  buy a ticket:`,
      `    curl -i -X POST ${base}/api/events/${demo.id}/purchases \\`,
      `      -H 'content-type: application/json' \\`,
      `      -d '{"buyerId":"you@example.com","items":[{"ticketTypeId":"${type.id}","quantity":2}]}'`,
      `  then follow the statusUrl it answers with.`,
    );
  }
  lines.push(`  ${mailLine(config)}`);
  const token = adminTokenLine(admin, process.stdout.isTTY === true);
  if (token) lines.push(`  ${token}`);
  lines.push(`  stop with Ctrl+C`, ``);
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** Where ticket emails go, for the banner: the SMTP server (its password masked), or that mail is off. */
export function mailLine(config: Config): string {
  if (!config.smtpUrl) {
    return 'ticket emails: off; the worker logs each one it would send (set ONSALE_SMTP_URL=smtp://host:port to send them)';
  }
  const url = new URL(config.smtpUrl);
  return `ticket emails: via ${url.protocol}//${url.host} from ${config.mailFrom}, links to ${config.publicUrl}`;
}
