import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { writeFileAtomically } from '../src/shared/write-atomically.js';

/**
 * The bench's results written into a Markdown file (docs/benchmarks.md for a full run): one section between
 * two markers, replaced by each run, so that the analysis written around it by people stays as it is.
 */
export const START_MARKER =
  '<!-- bench:results:start (written by `npm run bench`; edits here are overwritten) -->';
export const END_MARKER = '<!-- bench:results:end -->';

interface ResultsSection {
  /** When the run started. */
  startedAt: Date;
  elapsedSec: number;
  /** The command that reproduces the run. */
  command: string;
  machine: {
    cpus: number;
    memoryMb: number;
    node: string;
    loadAverage1m: number;
    loadAverage1mAtEnd: number;
  };
  /** The table the bench printed: figure, value. */
  rows: ReadonlyArray<readonly [string, string]>;
  /** The JSON line the bench printed. */
  json: string;
}

/** The section's Markdown, markers included. */
export function renderResultsSection(r: ResultsSection): string {
  // One space between words, as Prettier writes table cells; an escaped pipe so that it stays in its cell.
  const cell = (s: string) => s.replace(/\s+/g, ' ').replace(/\|/g, '\\|');
  const time = (d: Date) => d.toISOString().slice(0, 16).replace('T', ' ');
  const ended = new Date(r.startedAt.getTime() + r.elapsedSec * 1000);
  return [
    START_MARKER,
    '',
    // A fixed heading, so that links to #latest-results keep working.
    '## Latest results',
    '',
    `${time(r.startedAt)}–${time(ended).slice(11)} UTC, commit ${commit()}:`,
    '',
    '```sh',
    r.command,
    '```',
    '',
    `Machine: ${r.machine.cpus} CPUs, ${r.machine.memoryMb.toLocaleString('en-US')} MB, node ${r.machine.node}; ` +
      `load average ${r.machine.loadAverage1m} before and ${r.machine.loadAverage1mAtEnd} after; ` +
      `${Math.round(r.elapsedSec)} s.`,
    '',
    ...table(
      ['figure', 'value'],
      r.rows.map(([k, v]) => [cell(k), cell(v)]),
    ),
    '',
    '<details><summary>The JSON line</summary>',
    '',
    // Not "json": Prettier would reformat it, and the repository's format check would fail.
    '```text',
    r.json,
    '```',
    '',
    '</details>',
    '',
    END_MARKER,
  ].join('\n');
}

/** A Markdown table padded as Prettier pads it, so that the written file passes the format check. */
function table(head: readonly string[], body: ReadonlyArray<readonly string[]>): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)];
}

/**
 * `text` with its results section replaced by `section`, or, when it has none yet, with `section` added at
 * the end. Throws when the markers are broken (one without the other, or in the wrong order), rather than
 * guess which part of a person's document to overwrite.
 */
export function withResultsSection(text: string, section: string): string {
  const start = text.indexOf(START_MARKER);
  const end = text.indexOf(END_MARKER);
  if (start === -1 && end === -1) return `${text.replace(/\n*$/, '\n\n')}${section}\n`;
  if (start === -1 || end === -1 || end < start)
    throw new Error(
      `its bench results markers are broken (expected "${START_MARKER}" and then "${END_MARKER}")`,
    );
  return text.slice(0, start) + section + text.slice(end + END_MARKER.length);
}

/** Writes `section` into the Markdown file at `path` (created if missing), atomically. */
export function writeResultsFile(path: string, section: string): void {
  const text = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmarks\n';
  writeFileAtomically(path, withResultsSection(text, section));
}

/** The checked-out commit, marked when the tree has changes; "unknown" outside a git checkout. */
function commit(): string {
  try {
    const git = (...args: string[]) =>
      execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const hash = git('rev-parse', '--short', 'HEAD');
    return git('status', '--porcelain', '--untracked-files=no') === '' ? hash : `${hash}, with changes`;
  } catch {
    return 'unknown';
  }
}
