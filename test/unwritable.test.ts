import Database from 'better-sqlite3';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { guarded } from '../src/adapters/sqlite/database.js';
import { UnavailableError } from '../src/domain/errors.js';
import { createEvent, purchase } from './helpers/api.js';
import { ADMIN_TOKEN, startOnsale, runCli, tempDir, until, type Onsale } from './helpers/processes.js';

const GENERIC_503 = 'the service is unavailable right now; try again';

describe('a data folder that cannot be written', () => {
  const dir = tempDir();
  afterAll(() => dir.remove());
  // chmod 0500 does not stop root, who runs these tests in CI: a folder whose parent is a regular file
  // cannot be created by anyone (ENOTDIR), whoever runs the test.
  const file = join(dir.path, 'a-file');
  writeFileSync(file, 'not a folder');
  const unwritable = join(file, 'data');

  it.each([['start'], ['serve'], ['worker'], ['migrate']])(
    '%s says which folder and setting in one line, and exits 2',
    async (cmd) => {
      const p = runCli([cmd], { ONSALE_DATA_DIR: unwritable });
      expect((await p.exited).code).toBe(2);
      const out = p.output().trim();
      expect(out.split('\n')).toHaveLength(1);
      expect(out).toContain(unwritable);
      expect(out).toMatch(/ONSALE_DATA_DIR|ONSALE_DATABASE_URL/);
      expect(out).not.toContain('    at ');
    },
  );

  it('names ONSALE_DATABASE_URL when the database file is the one that cannot be made', async () => {
    const ok = join(dir.path, 'ok');
    mkdirSync(ok);
    const p = runCli(['serve'], {
      ONSALE_DATA_DIR: ok,
      ONSALE_DATABASE_URL: `sqlite:${file}/onsale.db`,
      ONSALE_ADMIN_TOKEN: ADMIN_TOKEN,
    });
    expect((await p.exited).code).toBe(2);
    expect(p.output()).toContain('ONSALE_DATABASE_URL');
    expect(p.output()).not.toContain('    at ');
  });
});

describe('a database that cannot be written while running', () => {
  it('SQLITE_READONLY is storage unavailability (a 503 with Retry-After), not a bug', () => {
    const dir = tempDir();
    try {
      const path = join(dir.path, 'ro.db');
      const writable = new Database(path);
      writable.exec('CREATE TABLE t (a INTEGER)');
      writable.close();
      const readOnly = new Database(path, { readonly: true });
      let thrown: unknown;
      try {
        guarded(() => readOnly.prepare('INSERT INTO t VALUES (1)').run());
      } catch (error) {
        thrown = error;
      }
      readOnly.close();
      expect(thrown).toBeInstanceOf(UnavailableError);
      expect((thrown as UnavailableError).retryAfterSeconds).toBe(1);
    } finally {
      dir.remove();
    }
  });

  let onsale: Onsale | undefined;
  afterAll(async () => onsale?.stop());

  it('answers 503 with a generic message while the database is locked; the log tells why', async () => {
    onsale = await startOnsale({ workers: 0 });
    const event = await createEvent(onsale.baseUrl);
    // Another connection holds the write lock past the server's busy timeout (5 s).
    const locker = new Database(join(onsale.dataDir, 'onsale.db'));
    locker.exec('BEGIN EXCLUSIVE');
    try {
      const res = await purchase(onsale.baseUrl, event.id, {
        buyerId: 'ada@example.com',
        items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
      });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('1');
      expect(res.body.error).toEqual({ code: 'unavailable', message: GENERIC_503 });
    } finally {
      locker.exec('ROLLBACK');
      locker.close();
    }
    const web = onsale.processes[0]!;
    await until(() => web.output().includes('SQLITE_BUSY'));
    expect(web.output()).not.toContain('ada@example.com');
  }, 30_000);
});
