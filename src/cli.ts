#!/usr/bin/env node
import cluster from 'node:cluster';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { openQueue, openStorage } from './adapters/index.js';
import { ConfigError, loadConfig, SETTINGS, type Config, type Setting } from './config.js';
import { runAutoscaler } from './processes/autoscaler.js';
import { BalancerMissingError } from './processes/lb/balancer.js';
import { runBalancerWrapper } from './processes/lb/wrapper.js';
import { CHILD_SPEC_ENV, CLUSTER_CHILD_ENV, type ChildSpec } from './processes/messages.js';
import { runStart } from './processes/start.js';
import { adminTokenLine, resolveAdminToken } from './shared/admin-token.js';
import { resolveLogFormat } from './shared/logger.js';
import { AdminCliError, addEventsCommand } from './admin/command.js';
import { addSimulateCommand } from './simulate/command.js';
import { runWebServer } from './processes/web-server.js';
import { runWorker } from './processes/worker.js';

type Key = keyof Config;
const COMMON: Key[] = ['dataDir', 'databaseUrl', 'databaseReplicaUrl', 'queueUrl', 'logLevel', 'logFormat'];
const WEB: Key[] = [
  'roomUrl',
  'port',
  'host',
  'maxQueueDepth',
  'bodyLimit',
  'buyerRate',
  'addressRate',
  'rateLimitExempt',
  'requestTimeout',
  'maxConnectionsPerClient',
  'maxStreamsPerClient',
  'metrics',
  'trustProxy',
  'drainDelay',
  'payments',
  'currency',
];
// Workers reconcile payments and refund late charges: they talk to the same provider, in the same currency.
const WORKER: Key[] = [
  'roomUrl',
  'batchSize',
  'maxAttempts',
  'metrics',
  'smtpUrl',
  'mailFrom',
  'publicUrl',
  'payments',
  'currency',
];

/** Exit status for a bad setting or flag (operations.md). */
const EXIT_BAD_SETTING = 2;

function withSettings(command: Command, keys: Key[]): Command {
  for (const s of SETTINGS as readonly Setting[]) {
    if (!keys.includes(s.key)) continue;
    const fallback = s.fallback({});
    const help = `${s.description}; ${s.accepts} [env ${s.env}${fallback ? `, default ${fallback}` : ''}]`;
    command.addOption(new Option(`${s.flag} <value>`, help));
  }
  return command.allowExcessArguments(false);
}

function configFrom(command: Command): Config {
  const config = loadConfig(command.opts<Partial<Record<Key, string>>>(), process.env);
  // Resolved here, where stdout is the one the user looks at; children get the answer in their config.
  return { ...config, logFormat: resolveLogFormat(config.logFormat) };
}

function program(): Command {
  const root = new Command('onsale')
    .description('Sells tickets when everyone wants them at once.')
    .showHelpAfterError()
    .exitOverride();

  withSettings(
    root
      .command('start')
      .description('everything on one machine: web servers sharing the port, workers, and their supervisor'),
    [...COMMON, ...WEB, ...WORKER, 'web', 'workersMin', 'workersMax'],
  ).action(async (_opts, command: Command) => {
    const config = configFrom(command);
    await runStart(config, resolveAdminToken(config.dataDir, process.env));
  });

  withSettings(
    root
      .command('cluster')
      .description(
        'a load balancer (HAProxy, or nginx with --lb nginx) in front of --web serve processes, the ' +
          'workers and the autoscaler, supervised together; SIGHUP restarts the web servers one by one',
      ),
    [...COMMON, ...WEB, ...WORKER, 'web', 'workersMin', 'workersMax', 'lb'],
  ).action(async (_opts, command: Command) => {
    const config = configFrom(command);
    // Loaded here so that the other roles never load the cluster's code.
    const { runCluster } = await import('./processes/cluster.js');
    await runCluster(config, resolveAdminToken(config.dataDir, process.env));
  });

  withSettings(root.command('serve').description('one web server (run several behind a load balancer)'), [
    ...COMMON,
    ...WEB,
  ]).action(async (_opts, command: Command) => {
    const config = configFrom(command);
    const admin = resolveAdminToken(config.dataDir, process.env);
    const line = adminTokenLine(admin, process.stdout.isTTY === true);
    if (line) process.stdout.write(`${line}\n`);
    await runWebServer(config, admin.token);
  });

  withSettings(root.command('worker').description('one worker: allocates queued purchases'), [
    ...COMMON,
    ...WORKER,
    'metricsPort',
  ]).action(async (_opts, command: Command) => {
    await runWorker(configFrom(command), process.env.ONSALE_WORKER_ID);
  });

  withSettings(root.command('migrate').description('creates or upgrades the database schema, then exits'), [
    ...COMMON,
  ]).action(async (_opts, command: Command) => {
    const config = configFrom(command);
    const storage = await openStorage(config.databaseUrl);
    const queue = await openQueue(config.queueUrl, config);
    await Promise.all([storage.migrate(), queue.migrate()]);
    await Promise.all([storage.close(), queue.close()]);
    process.stdout.write(
      `database schema is up to date (${config.databaseUrl.split(',').map(withoutPassword).join(', ')})\n`,
    );
  });

  const dlq = root
    .command('dlq')
    .description('purchases that failed allocation too often: list them, replay them');
  withSettings(dlq.command('list').description('lists dead letters, oldest first'), [...COMMON])
    .addOption(new Option('--limit <n>', 'how many to list [default 100]').argParser(wholeNumber))
    .addOption(new Option('--json', 'one JSON object per line'))
    .action(async (opts: { limit?: number; json?: boolean }, command: Command) => {
      const config = configFrom(command);
      const queue = await openQueue(config.queueUrl, config);
      const letters = await queue.deadLetters(opts.limit ?? 100);
      await queue.close();
      for (const l of letters) {
        const line = opts.json
          ? JSON.stringify(l)
          : `${l.deadAt}  ${l.purchase.purchaseId}  event ${l.purchase.eventId}  buyer ${JSON.stringify(l.purchase.buyerId)}  ${l.reason}`;
        process.stdout.write(`${line}\n`);
      }
      if (!opts.json) process.stdout.write(`${letters.length} dead letter(s)\n`);
    });
  withSettings(
    dlq
      .command('replay')
      .description('puts dead letters back on the queue (all of them, or the purchase ids given)')
      .argument('[purchaseIds...]', 'purchase ids to replay; none means all'),
    [...COMMON],
  ).action(async (purchaseIds: string[], _opts, command: Command) => {
    const config = configFrom(command);
    const queue = await openQueue(config.queueUrl, config);
    const replayed = await queue.replayDeadLetters(purchaseIds.length > 0 ? purchaseIds : undefined);
    await queue.close();
    process.stdout.write(`${replayed} dead letter(s) put back on the queue\n`);
  });

  addSimulateCommand(root);
  addEventsCommand(root);
  return root;
}

/** A database URL as printed: its password, if any, masked. */
function withoutPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (!parsed.password) return url;
    parsed.password = '***';
    return parsed.toString();
  } catch {
    return url;
  }
}

function wholeNumber(raw: string): number {
  if (!/^\d+$/.test(raw.trim()) || Number(raw) < 1)
    throw new InvalidArgumentError('expected a whole number ≥ 1.');
  return Number(raw);
}

/** A child of `onsale start` or `onsale cluster`: its role and configuration come from the supervisor. */
async function runChild(spec: ChildSpec): Promise<void> {
  const under = cluster.isWorker ? 'start' : 'cluster';
  if (spec.role === 'web') await runWebServer(spec.config, process.env.ONSALE_ADMIN_TOKEN ?? '');
  else if (spec.role === 'autoscaler')
    await runAutoscaler(spec.config, spec.workers ?? spec.config.workersMin, under);
  else if (spec.role === 'lb') await runBalancerWrapper(spec.command ?? [], spec.pidFile);
  else await runWorker(spec.config, spec.workerId, under);
}

async function main(): Promise<void> {
  // A child of `onsale start` (a node:cluster worker) or of `onsale cluster` (spawned with CLUSTER_CHILD_ENV).
  const childSpec = process.env[CHILD_SPEC_ENV];
  if (childSpec && (cluster.isWorker || process.env[CLUSTER_CHILD_ENV] === '1')) {
    delete process.env[CHILD_SPEC_ENV];
    // A child of `onsale cluster` stops when its supervisor goes away (its IPC channel closes), even killed.
    if (!cluster.isWorker) process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'));
    return runChild(JSON.parse(childSpec) as ChildSpec);
  }
  try {
    await program().parseAsync(process.argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      process.exit(
        error.code === 'commander.helpDisplayed' || error.code === 'commander.version' ? 0 : EXIT_BAD_SETTING,
      );
    }
    if (error instanceof AdminCliError) {
      process.stderr.write(`onsale: ${error.message}\n`);
      process.exit(error.exitCode);
    }
    if (error instanceof ConfigError || error instanceof BalancerMissingError) {
      process.stderr.write(`onsale: ${error.message}\n`);
      process.exit(EXIT_BAD_SETTING);
    }
    throw error;
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `onsale: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
