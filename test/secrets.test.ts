import { spawn } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { logRef } from '../src/shared/logger.js';
import { createEvent, purchase, waitFinal } from './helpers/api.js';
import {
  ADMIN_TOKEN,
  childrenOf,
  freePort,
  runCli,
  startOnsale,
  tempDir,
  until,
  waitForReady,
  type Onsale,
} from './helpers/processes.js';

const EMAIL = 'ada.lovelace@example.com';
/** A credential put where it does not belong, in a query string: refused, and never logged. */
const QUERY_TOKEN = 'query-token-that-must-never-be-logged';

describe('what the logs keep: no credential, no email, no purchase id', () => {
  let onsale: Onsale | undefined;
  afterAll(async () => onsale?.stop());

  it('logs paths without their query, refs instead of ids, and never the admin token', async () => {
    onsale = await startOnsale({ workers: 1, env: { LOG_LEVEL: 'debug' } });
    const base = onsale.baseUrl;
    const event = await createEvent(base);

    // A token in the query string: refused with a Bearer challenge.
    const refused = await fetch(`${base}/api/events/${event.id}/stats?token=${QUERY_TOKEN}`);
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toBe('Bearer realm="onsale"');

    const bought = await purchase(base, event.id, {
      buyerId: EMAIL,
      items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
    });
    expect(bought.status).toBe(202);
    // The purchase id is the key to the tickets: no cache may keep the answers that carry it.
    expect(bought.headers.get('cache-control')).toBe('no-store');
    const purchaseId = bought.body.purchaseId as string;
    const read = await fetch(`${base}/api/purchases/${purchaseId}`);
    expect(read.headers.get('cache-control')).toBe('no-store');
    expect((await waitFinal(base, purchaseId)).status).toBe('confirmed');

    // An admin's search for a buyer's email, and an unknown path that holds a purchase id and a token.
    const search = await fetch(`${base}/api/events/${event.id}/purchases?q=${encodeURIComponent(EMAIL)}`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(search.status).toBe(200);
    expect(JSON.stringify(await search.json())).toContain(purchaseId);
    const lost = await fetch(`${base}/api/purchases/${purchaseId}/nowhere?token=${QUERY_TOKEN}`);
    expect(lost.status).toBe(404);

    const [web, worker] = onsale.processes;
    const ref = logRef(purchaseId);
    await until(() => web!.output().includes(`"route":"unmatched"`));
    await until(() => worker!.output().includes(ref));
    const logs = onsale.processes.map((p) => p.output()).join('\n');
    for (const secret of [QUERY_TOKEN, ADMIN_TOKEN, EMAIL, encodeURIComponent(EMAIL), purchaseId]) {
      expect(logs).not.toContain(secret);
    }
    // The refs still tie the web server's line to the worker's.
    expect(web!.output()).toContain(`"purchaseRef":"${ref}"`);
    expect(worker!.output()).toContain(`"purchaseRef":"${ref}"`);
    expect(web!.output()).toContain('"path":"/api/purchases/[id]/nowhere"');
  });
});

describe('the admin token', () => {
  const dirs: Array<{ remove: () => void }> = [];
  afterAll(() => dirs.forEach((d) => d.remove()));
  const dataDir = () => {
    const d = tempDir();
    dirs.push(d);
    return d.path;
  };

  it.each([['serve'], ['start'], ['cluster']])(
    '%s refuses a short ONSALE_ADMIN_TOKEN with exit 2',
    async (cmd) => {
      const p = runCli([cmd], { ONSALE_DATA_DIR: dataDir(), ONSALE_ADMIN_TOKEN: 'a'.repeat(31) });
      // A server that accepts the token runs on: give it 15 s to refuse, then stop it either way.
      const ran = new Promise<'still running'>((r) => setTimeout(() => r('still running'), 15_000).unref());
      const code = await Promise.race([p.exited.then((e) => e.code), ran]);
      await p.stop('SIGTERM');
      expect(code).toBe(2);
      expect(p.output()).toContain('ONSALE_ADMIN_TOKEN');
      expect(p.output()).toContain('at least 32 characters');
      expect(p.output()).not.toContain('a'.repeat(31));
    },
  );

  it('serve refuses a short token kept in the data folder, naming the file', async () => {
    const dir = dataDir();
    writeFileSync(join(dir, 'admin-token'), 'short\n', { mode: 0o600 });
    const p = runCli(['serve'], { ONSALE_DATA_DIR: dir });
    expect((await p.exited).code).toBe(2);
    expect(p.output()).toContain(join(dir, 'admin-token'));
    expect(p.output()).not.toContain('    at ');
  });

  it('start prints a new token on a terminal only; the folder is 0700, its files 0600', async () => {
    const dir = join(dataDir(), 'data');
    const port = await freePort();
    const env = {
      ONSALE_DATA_DIR: dir,
      PORT: String(port),
      ONSALE_WEB: '1',
      ONSALE_WORKERS_MIN: '1',
      ONSALE_WORKERS_MAX: '1',
    };
    const p = runCliOnTerminal(['start'], env);
    try {
      await until(() => p.output().includes('stop with Ctrl+C'), 20_000);
      const token = readFileSync(join(dir, 'admin-token'), 'utf8').trim();
      expect(token.length).toBeGreaterThanOrEqual(32);
      expect(p.output()).toContain(`admin token (shown once; kept in ${join(dir, 'admin-token')}): ${token}`);
      await waitForReady(`http://127.0.0.1:${port}/readyz`);
      const mode = (path: string) => statSync(path).mode & 0o777;
      expect(mode(dir)).toBe(0o700);
      for (const file of ['admin-token', 'onsale.db', 'onsale.db-wal', 'onsale.db-shm'])
        expect([file, mode(join(dir, file))]).toEqual([file, 0o600]);
    } finally {
      await p.stop();
    }
  });
});

/**
 * Runs `onsale <args>` with a pseudo-terminal as its stdout (util-linux `script`), as a person at a terminal
 * does; `stop` sends SIGTERM to the CLI itself (script's child, which `exec` made the CLI).
 */
function runCliOnTerminal(args: string[], env: Record<string, string>) {
  const cli = join(import.meta.dirname, '../dist/cli.js');
  const command = ['exec', process.execPath, cli, ...args].map((a) => JSON.stringify(a)).join(' ');
  const child = spawn('script', ['-qefc', command, '/dev/null'], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  return {
    output: () => out,
    stop: async () => {
      for (const { pid } of childrenOf(child.pid!)) process.kill(pid, 'SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
