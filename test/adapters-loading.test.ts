import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from './helpers/processes.js';

const execFileAsync = promisify(execFile);
const DIST = resolve(import.meta.dirname, '../dist');
const DRIVERS = ['better-sqlite3', 'pg', 'ioredis', 'amqplib', '@aws-sdk/client-sqs'];

/**
 * Runs `body` as an ES module in a fresh node (the built code, as `onsale` runs it), then reports which
 * drivers it loaded. Every driver is CommonJS (pg's ESM entry wraps its CommonJS build), so each one
 * loaded, whether imported or required, is in require.cache.
 */
async function driversLoadedBy(body: string): Promise<string[]> {
  const script = `
    import { createRequire } from 'node:module';
    ${body}
    const cache = Object.keys(createRequire(import.meta.url).cache);
    const drivers = ${JSON.stringify(DRIVERS)};
    console.log(JSON.stringify(drivers.filter((d) => cache.some((p) => p.includes('/node_modules/' + d + '/')))));
  `;
  const { stdout } = await execFileAsync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: DIST,
  });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as string[];
}

describe('adapter loading', () => {
  const dir = tempDir();
  afterAll(() => dir.remove());

  it('loading and checking the config loads no driver', async () => {
    const loaded = await driversLoadedBy(`
      const { loadConfig } = await import('${DIST}/config.js');
      loadConfig({}, { ONSALE_DATABASE_URL: 'postgres://127.0.0.1/x', ONSALE_QUEUE_URL: 'amqp://127.0.0.1' });
      loadConfig({}, { ONSALE_QUEUE_URL: 'redis://127.0.0.1', ONSALE_DATA_DIR: '${dir.path}' });
      loadConfig({}, { ONSALE_DATABASE_URL: 'postgres://127.0.0.1/x', ONSALE_QUEUE_URL: 'sqs://onsale' });
    `);
    expect(loaded).toEqual([]);
  });

  it('a SQLite setup loads better-sqlite3 and no other driver', async () => {
    const loaded = await driversLoadedBy(`
      const { loadConfig } = await import('${DIST}/config.js');
      const { openQueue, openStorage } = await import('${DIST}/adapters/index.js');
      const config = loadConfig({}, { ONSALE_DATA_DIR: '${dir.path}' });
      const storage = await openStorage(config.databaseUrl);
      const queue = await openQueue(config.queueUrl, config);
      await storage.migrate();
      await queue.migrate();
      await queue.depth();
      await Promise.all([storage.close(), queue.close()]);
    `);
    expect(loaded).toEqual(['better-sqlite3']);
  });
});
