import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as prettier from 'prettier';
import { afterAll, describe, expect, it } from 'vitest';
import { END_MARKER, renderResultsSection, START_MARKER, withResultsSection } from '../bench/results-file.js';
import { runScript, tempDir } from './helpers/processes.js';

const BENCH = resolve(import.meta.dirname, '../build/bench/cli.js');
const dir = tempDir('onsale-bench-results-');
afterAll(() => dir.remove());

const section = (value: string) =>
  renderResultsSection({
    startedAt: new Date('2026-11-28T10:00:00Z'),
    elapsedSec: 90,
    command: 'npm run bench',
    machine: { cpus: 2, memoryMb: 24_106, node: 'v20.20.2', loadAverage1m: 0.5, loadAverage1mAtEnd: 1.5 },
    rows: [
      ['ackVsBare', value],
      ['a figure with | in it', '1 / 2'],
      ['spaced out', '0.30  (goal ≥ 0.7: MISSED)'],
    ],
    json: '{"ackVsBare":0.9}',
  });

/** Whether the repository's format check (prettier --check) would accept `text` as a Markdown file. */
async function formatted(text: string): Promise<boolean> {
  return prettier.check(text, {
    ...(await prettier.resolveConfig('docs/benchmarks.md')),
    parser: 'markdown',
  });
}

describe('the results the bench writes into a Markdown file', () => {
  it('adds one section at the end, then replaces it, keeping what people wrote around it', async () => {
    const prose = '# Benchmarks\n\nWhat limits each figure, written by a person.\n';
    const once = withResultsSection(prose, section('0.91'));
    expect(once.startsWith(prose)).toBe(true);
    expect(once).toContain('| ackVsBare ');
    expect(once).toContain('0.91');
    const twice = withResultsSection(`${once}\n## Written after\n`, section('0.87'));
    expect(twice.split(START_MARKER)).toHaveLength(2);
    expect(twice).not.toContain('0.91');
    expect(twice).toContain('0.87');
    expect(twice).toContain('## Written after');
    expect(twice.startsWith(prose)).toBe(true);
    expect(await formatted(twice)).toBe(true);
  });

  it('refuses to write into a file whose markers are broken', () => {
    expect(() => withResultsSection(`${START_MARKER}\nno end\n`, section('1'))).toThrow(/markers are broken/);
    expect(() => withResultsSection(`${END_MARKER}\n${START_MARKER}\n`, section('1'))).toThrow(
      /markers are broken/,
    );
  });

  it('`npm run bench -- --write FILE` writes the run it measured: command, machine, figures, JSON', async () => {
    const file = join(dir.path, 'benchmarks.md');
    writeFileSync(file, '# Our benchmarks\n\nProse.\n');
    const run = runScript(BENCH, ['--quick', '--only', 'pages', '--duration', '2', '--write', file]);
    expect((await run.exited).code, run.output()).toBe(0);
    const text = readFileSync(file, 'utf8');
    expect(text.startsWith('# Our benchmarks\n\nProse.\n')).toBe(true);
    expect(text).toContain(`npm run bench -- --quick --only pages --duration 2 --write ${file}`);
    expect(text).toMatch(/Machine: \d+ CPUs, [\d,]+ MB, node v\d+/);
    expect(text).toMatch(
      /\| event pages\/s, HTML \/ API JSON \(onsale serve\) +\| [\d,]+ \/ [\d,]+ = [\d.]+/,
    );
    const json = /```text\n(.*)\n```/.exec(text)?.[1];
    expect(JSON.parse(json!).pages.pagePerSec).toBeGreaterThan(0);
    expect(run.output()).toContain(`results written to ${file}`);
    expect(await formatted(text)).toBe(true);
  }, 120_000);
});
