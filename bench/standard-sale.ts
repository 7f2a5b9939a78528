/**
 * The standard sale, in one command (`npm run sale`, `npm run sale -- --engines postgres+redis`): 200,000 buyers
 * for 50,000 tickets in 3 ticket types, arriving at once. For each engine it starts `onsale start` fresh on
 * this machine (embedded: a temp data folder; postgres+redis: a throw-away database and Redis key prefix),
 * plays the crowd with the simulator, writes the JSON and HTML reports to --out, and prints the summary.
 * Exit status 1 if an invariant broke on any engine.
 */
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { mkdirSync, writeFileSync } from 'node:fs';
import { renderHtml } from '../src/simulate/html.js';
import { progressLine, summary } from '../src/simulate/report.js';
import { cleanUpOnExit } from './processes.js';
import { DEFAULT_URLS } from './run.js';
import { contenderName, playSale, saleCrowd, stopContenders, type Contender } from './sale.js';
import { assertPostgresReachable, assertRedisReachable } from '../test/support/services.js';

const ENGINES = ['embedded', 'postgres', 'postgres+redis'] as const;
type Engine = (typeof ENGINES)[number];

const USAGE =
  'usage: npm run sale -- [--engines embedded,postgres+redis] [--buyers 200000] [--tickets 50000] [--processes 1] ' +
  '[--out sale-reports]\n' +
  `engines: ${ENGINES.join(', ')} (default embedded); PostgreSQL and Redis from ONSALE_BENCH_POSTGRES_URL and ` +
  'ONSALE_BENCH_REDIS_URL (defaults: the local servers); --processes: simulator processes (1..64, as ' +
  '`onsale simulate --processes`), sharing its 128 connections and 256 followers\n';

function fail(message: string): never {
  process.stderr.write(`onsale sale: ${message}\n${USAGE}`);
  process.exit(2);
}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        engines: { type: 'string', default: 'embedded' },
        buyers: { type: 'string', default: '200000' },
        tickets: { type: 'string', default: '50000' },
        processes: { type: 'string', default: '1' },
        out: { type: 'string', default: 'sale-reports' },
        help: { type: 'boolean' },
      },
    }));
  } catch (error) {
    fail(error instanceof Error ? error.message : String(error));
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const engines = values.engines.split(',').map((e) => e.trim());
  const unknown = engines.filter((e) => !(ENGINES as readonly string[]).includes(e));
  if (unknown.length > 0 || engines.length === 0)
    fail(`--engines: "${values.engines}" is not a list of ${ENGINES.join(', ')}`);
  const buyers = Number(values.buyers);
  const tickets = Number(values.tickets);
  if (!Number.isInteger(buyers) || buyers < 1) fail(`--buyers: "${values.buyers}" is not a whole number ≥ 1`);
  if (!Number.isInteger(tickets) || tickets < 3)
    fail(`--tickets: "${values.tickets}" is not a whole number ≥ 3`);
  const processes = Number(values.processes);
  if (!/^\d+$/.test(values.processes) || processes < 1 || processes > 64)
    fail(`--processes: "${values.processes}" is not a whole number 1..64`);
  if (engines.some((e) => e !== 'embedded')) await assertPostgresReachable(DEFAULT_URLS.postgres);
  if (engines.includes('postgres+redis')) await assertRedisReachable(DEFAULT_URLS.redis);
  // Ctrl+C or SIGTERM: onsale is stopped and its throw-away database, Redis keys and data folder removed.
  cleanUpOnExit(async () => {
    const removed = await stopContenders();
    process.stderr.write(
      `[sale] stopped; removed: ${removed.length > 0 ? removed.join(', ') : 'nothing (no sale was running)'}\n`,
    );
  });
  mkdirSync(values.out, { recursive: true });

  let broken = false;
  for (const engine of engines as Engine[]) {
    const contender: Contender = { kind: 'onsale', engine };
    const name = contenderName(contender);
    process.stderr.write(
      `[sale] ${name}: ${buyers.toLocaleString('en-US')} buyers for ${tickets.toLocaleString('en-US')} tickets\n`,
    );
    let lastLog = 0;
    const report = await playSale(
      contender,
      { ...saleCrowd(buyers, tickets), processes },
      DEFAULT_URLS,
      (p) => {
        if (p.elapsedSec - lastLog < 5) return;
        lastLog = p.elapsedSec;
        process.stderr.write(`[sale] ${progressLine(p)}\n`);
      },
    );
    const file = join(values.out, `sale-${engine.replace('+', '-')}`);
    writeFileSync(`${file}.json`, `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(`${file}.html`, renderHtml(report));
    process.stdout.write(`\n== ${name} ==\n${summary(report)}reports: ${file}.json, ${file}.html\n`);
    broken ||= !report.invariants.ok;
  }
  return broken ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`onsale sale: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
