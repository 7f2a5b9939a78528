import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { sendPurchase } from '../../src/simulate/crowd.js';
import type { SentPurchase } from '../../src/simulate/invariants.js';
import {
  ADMIN_TOKEN,
  childrenOf,
  freePort,
  runCli,
  tempDir,
  until,
  type RunningProcess,
} from './processes.js';

export interface Cluster {
  baseUrl: string;
  dataDir: string;
  process: RunningProcess;
  /** The web servers' own addresses (host:port), web-1 first. */
  servers: string[];
  /** The cluster's children by role title, e.g. pidsOf('onsale-worker'). */
  pidsOf: (title: string) => number[];
  stop: () => Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Runs `onsale cluster` in a temp folder on a free port and waits until its balancer answers. */
export async function startCluster(env: Record<string, string>): Promise<Cluster> {
  const dir = tempDir('onsale-cluster-');
  const port = await freePort();
  const proc = runCli(['cluster'], {
    ONSALE_DATA_DIR: dir.path,
    ONSALE_ADMIN_TOKEN: ADMIN_TOKEN,
    PORT: String(port),
    ...env,
  });
  await until(() => {
    if (proc.child.exitCode !== null) throw new Error(`cluster exited:\n${proc.output()}`);
    return proc.output().includes('onsale cluster is running');
  }, 120_000).catch((error: unknown) => {
    // SIGTERM: the cluster stops its children (SIGKILL would leave them behind).
    void proc.stop('SIGTERM');
    throw new Error(`${String(error)}\n${proc.output()}`);
  });
  const servers = [...proc.output().matchAll(/web-\d+ (127\.0\.0\.1:\d+)/g)].map((m) => m[1]!);
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    dataDir: dir.path,
    process: proc,
    servers,
    pidsOf: (title) =>
      childrenOf(proc.child.pid!)
        .filter((c) => c.title === title)
        .map((c) => c.pid),
    stop: async () => {
      const exit = await proc.stop('SIGTERM');
      dir.remove();
      return exit;
    },
  };
}

/** HAProxy's 2xx answers per server (`show stat` on its control socket), e.g. { 'web-1': 812 }. */
export async function haproxyAnswersByServer(dataDir: string): Promise<Record<string, number>> {
  const csv = await new Promise<string>((resolve, reject) => {
    const socket = connect(join(dataDir, 'lb', 'haproxy.sock'));
    let out = '';
    socket.on('connect', () => socket.write('show stat\n'));
    socket.on('data', (d: Buffer) => (out += d.toString()));
    socket.on('end', () => resolve(out));
    socket.on('error', reject);
  });
  const [header, ...rows] = csv.replace(/^# /, '').trim().split('\n');
  const columns = header!.split(',');
  const at = (row: string[], name: string) => row[columns.indexOf(name)]!;
  const answers: Record<string, number> = {};
  for (const row of rows.map((r) => r.split(','))) {
    if (at(row, 'pxname') === 'web' && at(row, 'svname').startsWith('web-'))
      answers[at(row, 'svname')] = Number(at(row, 'hrsp_2xx'));
  }
  return answers;
}

/** nginx's answers per server address (host:port), from its access log (written at most 1 s late). */
export function nginxAnswersByServer(dataDir: string): Record<string, number> {
  const path = join(dataDir, 'lb', 'access.log');
  const answers: Record<string, number> = {};
  if (!existsSync(path)) return answers;
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    // "... $status $upstream_addr $request_time"; a retried request lists each address tried.
    const m = / (\d{3}) (\S+(?:, \S+)*) [\d.]+$/.exec(line);
    if (!m || !m[1]!.startsWith('2')) continue;
    const last = m[2]!.split(', ').at(-1)!;
    answers[last] = (answers[last] ?? 0) + 1;
  }
  return answers;
}

/**
 * Purchases sent in `lanes` parallel loops until `stop()` resolves, each from a new buyer (no rate limit
 * applies), through `baseUrl`. Records what each client saw; a network failure is status 0.
 */
export function steadyLoad(opts: { baseUrl: string; eventId: string; ticketTypeId: string; lanes: number }): {
  sent: SentPurchase[];
  stop: () => Promise<SentPurchase[]>;
} {
  const sent: SentPurchase[] = [];
  let running = true;
  let n = 0;
  async function lane(): Promise<void> {
    while (running) {
      const buyerId = `steady-${n++}@example.com`;
      const items = [{ ticketTypeId: opts.ticketTypeId, quantity: 1 }];
      sent.push(await sendPurchase(opts.baseUrl, opts.eventId, { buyerId, items }));
    }
  }
  const lanes = Promise.all(Array.from({ length: opts.lanes }, lane));
  return {
    sent,
    stop: async () => {
      running = false;
      await lanes;
      return sent;
    },
  };
}
