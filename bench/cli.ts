#!/usr/bin/env node
/**
 * The bench's entry point (`npm run bench`, `node build/bench/cli.js`): the benchmark suite of run.ts, with
 * its options; kept out of the product's CLI so that the npm package ships without the benchmarks.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { PARTS, type BenchOptions, type Part } from './options.js';
import { runBench } from './run.js';

/** Exit status for a bad flag, as the product's CLI (operations.md). */
const EXIT_BAD_FLAG = 2;

function program(): Command {
  return new Command('npm run bench --')
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
        'comma-separated parts to run [default all]: core (embedded SQLite: ackVsBare, allocVsCeiling), ' +
          'postgres (allocation on PostgreSQL), redis and rabbitmq (the accept path with that queue and ' +
          'PostgreSQL storage), metrics (the accept path with metrics on and scraped, against off), sale (the ' +
          'whole sale, driven by the simulator, against the baseline shops on PostgreSQL), pages (the event ' +
          'page against the API JSON), cluster (onsale cluster: HAProxy in front of 1, 2, 3 web servers, and ' +
          'the balancer hop against one server straight), simulator (the send rate and CPU per request of onsale ' +
          'simulate with 1 and 2 processes against wrk, on an nginx stub that costs next to nothing, naming what ' +
          'limited each run; needs nginx), scale-out (accept and allocation on 1 and 2 PostgreSQL shards, and ' +
          'reads from a primary against a streaming replica), waiting-room (place reads against a bare GET, ' +
          'joins, and a 200,000-buyer sale behind the room with its wait estimate), overload (an open-loop ' +
          "crowd at 3× the advisory-lock shop's rate against both shops and onsale; writes docs/overload.html), " +
          'checkout (the standard sale with 10-second holds and a paying mix, against the same sale without ' +
          'holds). ' +
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
    .showHelpAfterError()
    .exitOverride()
    .action(async (opts: BenchOptions) => {
      process.exit(await runBench(opts));
    });
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

try {
  await program().parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError)
    process.exit(
      error.code === 'commander.helpDisplayed' || error.code === 'commander.version' ? 0 : EXIT_BAD_FLAG,
    );
  process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
}
