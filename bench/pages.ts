import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { cleanEnv, freePort, spawnNode, tempDir, waitForHttp } from './processes.js';
import type { LoadShape } from './wrk.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const TOKEN = 'bench-admin-token-0123456789abcdef';

interface PagesPlan {
  rounds: number;
  load: LoadShape;
  warmupSec: number;
}

interface PagesFigures {
  /** Event pages (server-rendered HTML) served per second, median of the rounds. */
  pagePerSec: number;
  /** The same event as the API's JSON, per second: the baseline. */
  apiPerSec: number;
  ratio: number;
  pageP99Ms: number;
  apiP99Ms: number;
  /** What a phone downloads to open the event page: the HTML and each asset it links, raw and gzipped. */
  weight: { html: number; css: number; js: number; icon: number; total: number; gzipTotal: number };
}

/**
 * The buyer's event page under a rush: one `onsale serve` answering GET /events/:id (the HTML page, with
 * live availability) against GET /api/events/:id (the JSON of the same event) from the same process,
 * alternated `rounds` times; then the bytes the page costs a phone.
 */
export async function measurePages(plan: PagesPlan, progress: (line: string) => void): Promise<PagesFigures> {
  const dir = tempDir();
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = spawnNode(
    CLI,
    ['serve'],
    cleanEnv({ ONSALE_DATA_DIR: dir.path, ONSALE_ADMIN_TOKEN: TOKEN, PORT: String(port), LOG_LEVEL: 'warn' }),
  );
  try {
    await waitForHttp(`${base}/readyz`, server);
    const res = await fetch(`${base}/api/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({
        name: 'Bench night',
        ticketTypes: [
          { name: 'General admission', priceCents: 5000, capacity: 50_000, maxPerBuyer: 4 },
          { name: 'VIP', priceCents: 15000, capacity: 500, maxPerBuyer: 2 },
        ],
      }),
    });
    const { id } = (await res.json()) as { id: string };
    const page = `${base}/events/${id}`;
    const api = `${base}/api/events/${id}`;
    await wrkGet(page, { ...plan.load, durationSec: plan.warmupSec });
    const pages: WrkGet[] = [];
    const apis: WrkGet[] = [];
    for (let round = 1; round <= plan.rounds; round++) {
      apis.push(await wrkGet(api, plan.load));
      pages.push(await wrkGet(page, plan.load));
      progress(
        `pages round ${round}/${plan.rounds}: event page ${Math.round(pages.at(-1)!.perSec)}/s, ` +
          `API JSON ${Math.round(apis.at(-1)!.perSec)}/s`,
      );
    }
    const pagePerSec = median(pages.map((r) => r.perSec));
    const apiPerSec = median(apis.map((r) => r.perSec));
    return {
      pagePerSec,
      apiPerSec,
      ratio: pagePerSec / apiPerSec,
      pageP99Ms: median(pages.map((r) => r.p99Ms)),
      apiP99Ms: median(apis.map((r) => r.p99Ms)),
      weight: await pageWeight(base, page),
    };
  } finally {
    await server.stop();
    dir.remove();
  }
}

async function pageWeight(base: string, page: string): Promise<PagesFigures['weight']> {
  const html = Buffer.from(await (await fetch(page)).arrayBuffer());
  const links = [...html.toString().matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]!);
  const files = await Promise.all(
    links.map(async (link) => ({
      link,
      body: Buffer.from(await (await fetch(`${base}${link}`)).arrayBuffer()),
    })),
  );
  const size = (ext: string) =>
    files.filter((f) => f.link.split('?')[0]!.endsWith(ext)).reduce((n, f) => n + f.body.length, 0);
  const all = [html, ...files.map((f) => f.body)];
  return {
    html: html.length,
    css: size('.css'),
    js: size('.js'),
    icon: size('.svg'),
    total: all.reduce((n, b) => n + b.length, 0),
    gzipTotal: all.reduce((n, b) => n + gzipSync(b).length, 0),
  };
}

interface WrkGet {
  perSec: number;
  p99Ms: number;
}

/** One plain wrk GET run; anything but 2xx answers fails the measurement. */
async function wrkGet(url: string, load: LoadShape): Promise<WrkGet> {
  const args = [
    `--threads=${load.threads}`,
    `--connections=${load.connections}`,
    `--duration=${load.durationSec}s`,
    '--timeout=10s',
    '--latency',
    url,
  ];
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr.on('data', (d: Buffer) => (text += d.toString()));
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0 ? resolve(text) : reject(new Error(`wrk ${args.join(' ')}:\n${text}`)),
    );
  });
  const perSec = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s)\s*$/m.exec(out);
  if (!perSec || !p99 || /Non-2xx/.test(out))
    throw new Error(`wrk ${args.join(' ')} did not measure:\n${out}`);
  const unit = { us: 0.001, ms: 1, s: 1000 }[p99[2] as 'us' | 'ms' | 's'];
  return { perSec: Number(perSec[1]), p99Ms: Number(p99[1]) * unit };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}
