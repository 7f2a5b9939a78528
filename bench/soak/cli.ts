#!/usr/bin/env node
/**
 * `npm run soak -- [--minutes N] [--engines embedded|postgres+redis|postgres+rabbitmq] [--seed N]
 * [--report-json PATH]`: the chaos soak of soak.ts. Progress on stderr, a summary on stdout; exit 0 only when everything held, 1
 * otherwise, 2 for a bad flag.
 */
import { writeFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import type { Topology } from './onsale.js';
import { ENGINE_SETS, runSoak, type EngineSet, type SoakReport } from './soak.js';

function minutes(raw: string): number {
  const n = Number(raw.trim());
  if (raw.trim() === '' || !Number.isFinite(n) || n < 0.5 || n > 24 * 60)
    throw new InvalidArgumentError('expected minutes from 0.5 to 1440.');
  return n;
}

function topologies(raw: string): Topology[] {
  const list = raw.split(',').map((t) => t.trim());
  if (
    list.length === 0 ||
    list.some((t) => t !== 'start' && t !== 'cluster') ||
    new Set(list).size < list.length
  )
    throw new InvalidArgumentError('expected start, cluster, or both separated by a comma.');
  return list as Topology[];
}

function seed(raw: string): number {
  if (!/^\d+$/.test(raw.trim())) throw new InvalidArgumentError('expected a whole number.');
  return Number(raw.trim()) >>> 0;
}

export function summary(r: SoakReport): string {
  const lines = [
    `soak ${r.ok ? 'HELD' : 'FAILED'}: ${r.engines}, ${r.minutes} min (${r.durationSec} s), seed ${r.seed}, ` +
      `topologies ${r.topologies.join(' then ')}; load ${r.loadBefore.join(' ')} → ${r.loadAfter.join(' ')}`,
    `faults injected / survived, per kind:`,
    ...Object.entries(r.perKind).map(([k, n]) => `  ${k.padEnd(18)} ${n.injected} / ${n.survived}`),
    ...Object.entries(r.skipped).map(([k, why]) => `  ${k.padEnd(18)} skipped: ${why}`),
    `sales: ${r.rounds.length} events, ${r.rounds.reduce((n, x) => n + x.accepted, 0)} purchases accepted, ` +
      `${r.rounds.reduce((n, x) => n + x.confirmed, 0)} confirmed, ` +
      `${r.rounds.reduce((n, x) => n + x.notFinal, 0)} not final, ` +
      `${r.rounds.filter((x) => !x.invariantsOk).length} with a broken invariant; ` +
      `${r.rounds.reduce((n, x) => n + x.gaveUp, 0)} requests given up by their buyers`,
    `500s logged by the web servers: ${r.serverErrorsLogged}`,
    `memory (RSS) of the longest-lived processes:`,
    ...r.memory.map(
      (m) =>
        `  ${m.role.padEnd(10)} ${String(m.pid).padEnd(8)} ${m.firstMiB} → ${m.lastMiB} MiB over ` +
        `${m.spanSec} s, ${m.slopeMiBPerMin} MiB/min: ${m.flat ? 'flat' : 'GROWS'}`,
    ),
    ...(r.problems.length > 0 ? ['problems:', ...r.problems.map((p) => `  - ${p}`)] : []),
  ];
  return lines.join('\n');
}

async function main(): Promise<number> {
  const program = new Command('npm run soak --')
    .description(
      'the chaos soak: the simulator sells events against onsale (start, then cluster) while processes are ' +
        'killed and paused, the private PostgreSQL, Redis or RabbitMQ restarted and the embedded disk ' +
        'filled; exit 0 when every invariant held, every accepted purchase became final, no 500 was ' +
        'answered, onsale came back after every fault and memory stayed flat',
    )
    .addOption(new Option('--minutes <n>', 'how long to inject faults').default(10).argParser(minutes))
    .addOption(new Option('--engines <set>', 'the engines').choices(ENGINE_SETS).default('embedded'))
    .addOption(
      new Option('--topologies <list>', 'start, cluster or start,cluster (the time is shared 60/40)')
        .default(['start', 'cluster'], 'start,cluster')
        .argParser(topologies),
    )
    .addOption(
      new Option('--seed <n>', 'seed of the fault schedule and the crowds').default(1).argParser(seed),
    )
    .addOption(new Option('--report-json <path>', 'write the whole report as JSON here'))
    .exitOverride()
    .allowExcessArguments(false);
  try {
    program.parse();
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    throw error;
  }
  const flags = program.opts<{
    minutes: number;
    engines: EngineSet;
    seed: number;
    topologies: Topology[];
    reportJson?: string;
  }>();
  const report = await runSoak({
    minutes: flags.minutes,
    engines: flags.engines,
    seed: flags.seed,
    topologies: flags.topologies,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  if (flags.reportJson) writeFileSync(flags.reportJson, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`${summary(report)}\n`);
  return report.ok ? 0 : 1;
}

process.exitCode = await main();
// Pools and timers of the simulator may linger: the verdict is in.
process.exit();
