/**
 * Log lines on a terminal are pino-pretty's readable lines, elsewhere JSON; LOG_FORMAT forces either, and a
 * bad value is a bad setting. Each case runs the real `onsale serve` and reads what it wrote.
 */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, runCli, tempDir, until, waitForReady } from './helpers/processes.js';

const CLI = resolve(import.meta.dirname, '../dist/cli.js');
const dir = tempDir();
afterAll(() => dir.remove());

async function serveAndReadLog(env: Record<string, string>): Promise<string> {
  const port = await freePort();
  const proc = runCli(['serve'], {
    ONSALE_DATA_DIR: dir.path,
    PORT: String(port),
    LOG_LEVEL: 'info',
    ...env,
  });
  await waitForReady(`http://127.0.0.1:${port}/readyz`, proc);
  await until(() => proc.output().includes('listening'));
  await proc.stop();
  return proc.output();
}

describe('log format', () => {
  it('writes JSON lines when stdout is not a terminal', async () => {
    const out = await serveAndReadLog({});
    const line = out.split('\n').find((l) => l.includes('listening'))!;
    expect(JSON.parse(line)).toMatchObject({ level: 30, role: 'web' });
  });

  it('writes readable lines with LOG_FORMAT=pretty, and JSON with LOG_FORMAT=json', async () => {
    const pretty = await serveAndReadLog({ LOG_FORMAT: 'pretty' });
    const line = pretty.split('\n').find((l) => l.includes('listening'))!;
    expect(() => JSON.parse(line)).toThrow();
    expect(line).toMatch(/INFO.*\(\d+\)?.*listening/);
    const json = await serveAndReadLog({ LOG_FORMAT: 'json' });
    expect(JSON.parse(json.split('\n').find((l) => l.includes('listening'))!)).toMatchObject({ role: 'web' });
  });

  it('writes coloured readable lines on a terminal (a pseudo-terminal made by script)', async () => {
    const port = await freePort();
    const command = `${process.execPath} ${CLI} serve & pid=$!; for i in $(seq 1 200); do sleep 0.1; if curl -sf http://127.0.0.1:${port}/readyz >/dev/null 2>&1; then break; fi; done; sleep 0.5; kill $pid; wait $pid`;
    const { stdout } = await promisify(execFile)('script', ['-qec', command, '/dev/null'], {
      env: {
        PATH: process.env.PATH ?? '',
        HOME: '/tmp',
        ONSALE_DATA_DIR: dir.path,
        PORT: String(port),
        LOG_LEVEL: 'info',
      },
      timeout: 60_000,
    });
    const line = stdout.split('\n').find((l) => l.includes('listening'))!;
    expect(line).toBeDefined();
    expect(line).toContain('\u001b['); // ANSI colours
    expect(line).toMatch(/INFO/);
  });

  it('refuses a bad LOG_FORMAT with exit status 2, naming the setting', async () => {
    const proc = runCli(['serve'], { ONSALE_DATA_DIR: dir.path, LOG_FORMAT: 'xml' });
    expect((await proc.exited).code).toBe(2);
    expect(proc.output()).toMatch(/LOG_FORMAT.*"xml".*json, pretty or auto/);
  });
});
