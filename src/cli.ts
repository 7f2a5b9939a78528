#!/usr/bin/env node
import cluster from 'node:cluster';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { openQueue, openStorage } from './adapters/index.js';
import { PARTS, type BenchOptions, type Part } from './bench/options.js';
import { ConfigError, loadConfig, SETTINGS, type Config, type Setting } from './config.js';
import { BalancerMissingError } from './cluster/lb.js';
import { resolveAdminToken } from './shared/admin-token.js';
import { addSimulateCommand } from './simulate/command.js';
import { CHILD_SPEC_ENV, runStart, type ChildSpec } from './supervisor/start.js';
import { runWebServer } from './web/server.js';
import { runWorker } from './worker/worker.js';
import { runAutoscaler } from './cluster/autoscaler.js';
import { runBalancerWrapper } from './cluster/lb-wrapper.js';

type Key = keyof Config;
const COMMON: Key[] = ['dataDir', 'databaseUrl', 'queueUrl', 'logLevel'];
const WEB: Key[] = [
  'port',
  'host',
  'maxQueueDepth',
  'bodyLimit',
  'buyerRate',
  'addressRate',
  'rateLimitExempt',
  'metrics',
  'trustProxy',
  'drainDelay',
];
const WORKER: Key[] = ['batchSize', 'maxAttempts', 'metrics'];

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
  return loadConfig(command.opts<Partial<Record<Key, string>>>(), process.env);
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
    const { runCluster } = await import('./cluster/cluster.js');
    await runCluster(config, resolveAdminToken(config.dataDir, process.env));
  });

  withSettings(root.command('serve').description('one web server (run several behind a load balancer)'), [
    ...COMMON,
    ...WEB,
  ]).action(async (_opts, command: Command) => {
    const config = configFrom(command);
    const admin = resolveAdminToken(config.dataDir, process.env);
    if (admin.created)
      process.stdout.write(`admin token (shown once; kept in ${admin.path}): ${admin.token}\n`);
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
    process.stdout.write(`database schema is up to date (${config.databaseUrl})\n`);
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

  root
    .command('bench')
    .description(
      'the benchmark suite: accepted purchases/s of `onsale start` against a bare Fastify handler, and ' +
        'allocated purchases/s of the worker against a naive one-transaction-per-purchase allocator, on the ' +
        'embedded engine, then on PostgreSQL, and with Redis and RabbitMQ queues (needs wrk and, for the ' +
        'engine parts, those servers); prints progress on stderr, then a table and a JSON line on stdout',
    )
    .option('--quick', 'one shorter round of each measurement (under 3 minutes)')
    .addOption(
      new Option(
        '--duration <seconds>',
        'seconds of load per measured wrk run [default 20, 5 with --quick]',
      ).argParser(wholeNumber),
    )
    .addOption(
      new Option('--connections <n>', 'wrk connections, the same for both servers [default 256]').argParser(
        wholeNumber,
      ),
    )
    .addOption(new Option('--threads <n>', 'wrk threads [default 1]').argParser(wholeNumber))
    .addOption(
      new Option(
        '--only <parts>',
        'comma-separated parts to run [default all]: core (embedded SQLite: ackVsBare, allocVsNaive), ' +
          'postgres (allocation on PostgreSQL), redis and rabbitmq (the accept path with that queue and ' +
          'PostgreSQL storage), metrics (the accept path with metrics on and scraped, against off), sale (the ' +
          'whole sale, driven by the simulator, against the baseline shops on PostgreSQL), pages (the event ' +
          'page against the API JSON), cluster (onsale cluster: HAProxy in front of 1, 2, 3 web servers, and ' +
          'the balancer hop against one server straight), simulator (the send rate and CPU per request of onsale ' +
          'simulate with 1 and 2 processes against wrk, on an nginx stub that costs next to nothing, naming what ' +
          'limited each run; needs nginx). ' +
          'A server a chosen part needs that does not answer fails the bench (exit 1)',
      ).argParser(benchParts),
    )
    .option(
      '--postgres-url <url>',
      'admin URL of the PostgreSQL server where throw-away databases are created [env ' +
        'ONSALE_BENCH_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres]',
    )
    .option(
      '--redis-url <url>',
      'Redis server; keys go under a unique prefix, deleted after [env ONSALE_BENCH_REDIS_URL, default ' +
        'redis://127.0.0.1:6379]',
    )
    .option(
      '--rabbitmq-url <url>',
      'RabbitMQ broker; queues go under a unique prefix, deleted after [env ONSALE_BENCH_RABBITMQ_URL, ' +
        'default amqp://guest:guest@127.0.0.1:5672]',
    )
    .option(
      '--write <file>',
      'write the results (command, machine, table, JSON) into this Markdown file, replacing its results ' +
        'section or adding one [default docs/benchmarks.md after a full run: every part, not --quick]',
    )
    .option('--no-write', 'write no results file, even after a full run')
    .allowExcessArguments(false)
    .action(async (opts: BenchOptions) => {
      // Loaded here so that the server roles, which share this entry point, never load the bench.
      const { runBench } = await import('./bench/run.js');
      process.exit(await runBench(opts));
    });

  return root;
}

function benchParts(raw: string): Part[] {
  const parts = raw.split(',').map((p) => p.trim());
  const unknown = parts.filter((p) => !(PARTS as readonly string[]).includes(p));
  if (unknown.length > 0 || parts.length === 0)
    throw new InvalidArgumentError(`expected a comma-separated list of ${PARTS.join(', ')}.`);
  return parts as Part[];
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
  else if (spec.role === 'lb') runBalancerWrapper(spec.command ?? []);
  else await runWorker(spec.config, spec.workerId, under);
}

async function main(): Promise<void> {
  // A child of `onsale start` (a node:cluster worker) or of `onsale cluster` (spawned with ONSALE_CLUSTER_CHILD).
  const childSpec = process.env[CHILD_SPEC_ENV];
  if (childSpec && (cluster.isWorker || process.env.ONSALE_CLUSTER_CHILD === '1')) {
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
