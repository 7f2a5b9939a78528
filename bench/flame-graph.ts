/**
 * A flame graph (SVG) and a table of the functions that spent the most CPU, from a V8 .cpuprofile (as
 * `node --cpu-prof` writes it). Used for docs/benchmarks.md's profile of the accept path:
 *   node build/bench/flame-graph.js PROFILE.cpuprofile OUT.svg [TITLE] [SKIP_SECONDS]
 * prints the table (Markdown) on stdout and writes the SVG. SKIP_SECONDS leaves out the first seconds of
 * the profile (start-up and warm-up), so that it shows the process under load.
 */
import { readFileSync, writeFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

interface Frame {
  name: string;
  where: string;
  selfUs: number;
  totalUs: number;
  children: Frame[];
}

/** Frames V8 adds that are not work of the process: waiting in the event loop. */
const IDLE = new Set(['(idle)']);

function where(url: string, line: number): string {
  if (!url) return '';
  const path = url.replace(/^file:\/\//, '');
  const inPackage = /node_modules\/(.+)$/.exec(path);
  const short = inPackage ? inPackage[1]! : path.replace(/^.*\/(dist|build|src)\//, '$1/');
  return `${short}:${line + 1}`;
}

/** The call tree with each frame's self and total time, idle time and the first `skipUs` left out. */
function callTree(profile: Profile, skipUs: number): Frame {
  const selfUs = new Map<number, number>();
  let at = 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (at >= skipUs) selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  });
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const build = (node: ProfileNode): Frame => {
    const children = (node.children ?? [])
      .map((id) => byId.get(id)!)
      .filter((c) => !IDLE.has(c.callFrame.functionName))
      .map(build)
      .filter((c) => c.totalUs > 0);
    const self = selfUs.get(node.id) ?? 0;
    return {
      name: node.callFrame.functionName || '(anonymous)',
      where: where(node.callFrame.url, node.callFrame.lineNumber),
      selfUs: self,
      totalUs: self + children.reduce((sum, c) => sum + c.totalUs, 0),
      children: children.sort((a, b) => b.totalUs - a.totalUs),
    };
  };
  return build(profile.nodes[0]!);
}

/** Self time summed per function (name and place), the largest first. */
export function topFunctions(root: Frame, count: number): Array<{ fn: string; selfUs: number }> {
  const sums = new Map<string, number>();
  const walk = (f: Frame) => {
    const key = f.where ? `${f.name} (${f.where})` : f.name;
    sums.set(key, (sums.get(key) ?? 0) + f.selfUs);
    f.children.forEach(walk);
  };
  walk(root);
  return [...sums]
    .map(([fn, selfUs]) => ({ fn, selfUs }))
    .sort((a, b) => b.selfUs - a.selfUs)
    .slice(0, count);
}

const WIDTH = 1200;
const ROW = 16;

function colour(f: Frame): string {
  if (f.where.includes('adapters/sqlite') || f.name.includes('better-sqlite3')) return '#e07b39';
  if (/^(dist|build|src)\//.test(f.where)) return '#d9534f';
  if (/^(fastify|find-my-way|avvio|light-my-request|@fastify|pino)/.test(f.where)) return '#5b9bd5';
  if (f.where.startsWith('node:')) return '#9fbf5f';
  return '#b0b0b0';
}

const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** An icicle-style flame graph (callers on top): one row per stack depth, width by total time. */
function svg(root: Frame, title: string): string {
  const rects: string[] = [];
  let depth = 0;
  const draw = (f: Frame, x: number, level: number) => {
    const w = (f.totalUs / root.totalUs) * WIDTH;
    if (w < 1) return;
    depth = Math.max(depth, level);
    const y = 30 + level * ROW;
    const pct = ((f.totalUs / root.totalUs) * 100).toFixed(1);
    const label = `${f.name}${f.where ? ` ${f.where}` : ''}`;
    const text = w > 40 ? label.slice(0, Math.floor(w / 6.5)) : '';
    rects.push(
      `<g><title>${escape(label)}: ${pct}% (self ${((f.selfUs / root.totalUs) * 100).toFixed(1)}%)</title>` +
        `<rect x="${x.toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="${ROW - 1}" fill="${colour(f)}"/>` +
        (text ? `<text x="${(x + 3).toFixed(1)}" y="${y + 11}">${escape(text)}</text>` : '') +
        `</g>`,
    );
    let cx = x;
    for (const c of f.children) {
      draw(c, cx, level + 1);
      cx += (c.totalUs / root.totalUs) * WIDTH;
    }
  };
  draw(root, 0, 0);
  const height = 30 + (depth + 1) * ROW + 24;
  const legend =
    'red: onsale; orange: SQLite adapter; blue: Fastify and its parts; green: Node internals; grey: V8, GC, native';
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" font-family="monospace" font-size="10">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="4" y="16" font-size="13">${escape(title)}</text>`,
    ...rects,
    `<text x="4" y="${height - 8}">${legend}</text>`,
    `</svg>`,
  ].join('\n');
}

function main(): void {
  const [input, output, title = 'CPU profile', skip = '0'] = process.argv.slice(2);
  if (!input || !output) {
    process.stderr.write('usage: flame-graph.js PROFILE.cpuprofile OUT.svg [TITLE] [SKIP_SECONDS]\n');
    process.exit(2);
  }
  const root = callTree(JSON.parse(readFileSync(input, 'utf8')) as Profile, Number(skip) * 1e6);
  writeFileSync(output, svg(root, title));
  const lines = ['| self % | function (file:line) |', '| -----: | --- |'];
  for (const { fn, selfUs } of topFunctions(root, 25)) {
    lines.push(`| ${((selfUs / root.totalUs) * 100).toFixed(1)} | \`${fn}\` |`);
  }
  process.stdout.write(`busy ${(root.totalUs / 1e6).toFixed(2)} s of CPU samples\n${lines.join('\n')}\n`);
}

main();
