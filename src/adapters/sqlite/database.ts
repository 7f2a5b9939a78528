import Database, { type Statement } from 'better-sqlite3';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { UnavailableError } from '../../domain/errors.js';
import { ConfigError } from '../../shared/config-error.js';
import { ensureDataDir } from '../../shared/data-dir.js';

export type SqliteDatabase = Database.Database;

/** `sqlite:PATH` (or `sqlite://PATH`) to a file path. */
function sqlitePath(url: string): string {
  const path = url.replace(/^sqlite:(\/\/)?/, '');
  if (!path) throw new Error(`"${url}" names no file: expected sqlite:PATH`);
  return path;
}

/** The page cache of storage's connections: the indexes a worker writes stay in memory as tables grow. */
const STORAGE_CACHE_MIB = 32;
/**
 * SQLite's default page cache, for the queue's connections: an enqueue appends at the right edge of the
 * table and a lease reads its left edge, so a few pages are all they touch. A web server holds one per
 * process; 32 MiB there filled with the pages it appended and was a fifth of its memory under a rush.
 */
export const SMALL_CACHE_MIB = 2;

/**
 * Opens a connection tuned for many processes writing at once: WAL lets readers run beside the one writer,
 * busy_timeout makes a writer wait for the lock rather than fail, and synchronous=FULL fsyncs each commit,
 * so that a 202 survives even a power cut. Group commit keeps that fsync off the per-purchase path.
 * `cacheMiB` is the connection's page cache: large where a worker writes indexes that must stay in memory
 * as tables grow, SQLite's own 2 MiB where a connection touches only a few pages per statement.
 */
export function openSqlite(url: string, cacheMiB: number = STORAGE_CACHE_MIB): SqliteDatabase {
  const path = sqlitePath(url);
  const db = path === ':memory:' ? new Database(path) : openFile(path);
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  db.pragma(`cache_size = -${cacheMiB * 1024}`);
  return db;
}

/** Errors that say the file or its folder cannot be written (a lock, SQLITE_BUSY, is not one of them). */
const UNWRITABLE = /^(EACCES|EPERM|EROFS|ENOTDIR|EISDIR|ENOENT|SQLITE_CANTOPEN|SQLITE_READONLY|SQLITE_PERM)/;
const SETTING = 'ONSALE_DATABASE_URL (--database-url, by default in ONSALE_DATA_DIR)';

/**
 * Opens (creating it, its folder 0700 and the file 0600: a purchase id is the key to its tickets) a
 * database file in WAL mode; SQLite gives the -wal and -shm files the mode of the database file. A folder or
 * file that cannot be written is a ConfigError naming it, not a stack trace.
 */
function openFile(path: string): SqliteDatabase {
  ensureDataDir(dirname(path), SETTING);
  try {
    closeSync(openSync(path, 'a', 0o600));
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    return db;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code !== 'string' || !UNWRITABLE.test(code)) throw error;
    throw new ConfigError(`cannot open the SQLite database ${path} for writing (${code}): ${SETTING}`);
  }
}

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));

/**
 * Applies the numbered, append-only migrations of one component (`storage`, `queue`, or `outbox`: the
 * ticket emails, beside the storage whose transactions write them) that the database
 * has not seen yet. The IMMEDIATE transaction takes the write lock first, so processes that start together
 * apply each migration once.
 */
export function migrateSqlite(db: SqliteDatabase, component: 'storage' | 'queue' | 'outbox' | 'room'): void {
  const dir = `${MIGRATIONS_DIR}${component}/`;
  const files = readdirSync(dir)
    .filter((name) => /^\d{4}_.*\.sql$/.test(name))
    .sort();
  db.exec(
    'CREATE TABLE IF NOT EXISTS schema_migrations (component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (component, version))',
  );
  const applied = db.prepare('SELECT version FROM schema_migrations WHERE component = ?').pluck();
  const record = db.prepare(
    'INSERT INTO schema_migrations (component, version, name, applied_at) VALUES (?, ?, ?, ?)',
  );
  db.transaction(() => {
    const done = new Set(applied.all(component) as number[]);
    for (const name of files) {
      const version = Number(name.slice(0, 4));
      if (done.has(version)) continue;
      db.exec(readFileSync(`${dir}${name}`, 'utf8'));
      record.run(component, version, name, new Date().toISOString());
    }
  }).immediate();
}

/**
 * Runs `fn`, turning "the database is locked, gone, full or read-only" into UnavailableError (503 or a
 * retry): none of them is the request's fault, and each can pass (an operator frees the disk or the file).
 */
export function guarded<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (
      typeof code === 'string' &&
      /^SQLITE_(BUSY|LOCKED|IOERR|CANTOPEN|FULL|PROTOCOL|READONLY)/.test(code)
    ) {
      throw new UnavailableError(`the SQLite database is not available (${code})`, error);
    }
    throw error;
  }
}

/** Prepares every statement of a table of named SQL texts. */
export function prepareAll<K extends string>(
  db: SqliteDatabase,
  sql: Record<K, string>,
): Record<K, Statement> {
  return Object.fromEntries(
    Object.entries(sql).map(([name, text]) => [name, db.prepare(text as string)]),
  ) as Record<K, Statement>;
}

/**
 * Runs `attempt` (one that takes the write lock: BEGIN IMMEDIATE) without blocking the event loop while
 * another connection holds the lock. SQLite's own busy handler sleeps the whole process in growing steps
 * (1, 2, 5 … 100 ms) and often sleeps on after the lock is free; in a web server nothing is read or
 * answered meanwhile. Measured by `npm run bench` (two web servers and a worker on one file), the web servers
 * spent 35-90% of their time there, up to 760 ms at a time (docs/benchmarks.md). Here a busy lock fails
 * the attempt at once, and it is retried every millisecond until the connection's busy_timeout has passed;
 * then it fails as before (UnavailableError).
 */
export async function withoutBlockingOnLock<T>(db: SqliteDatabase, attempt: () => T): Promise<T> {
  const { busyTimeoutMs, noWait, wait } = lockWaits(db);
  const deadline = Date.now() + busyTimeoutMs;
  for (;;) {
    noWait.get();
    try {
      return guarded(attempt);
    } catch (error) {
      if (!isBusy(error) || Date.now() >= deadline) throw error;
    } finally {
      wait.get();
    }
    await sleep(1);
  }
}

/**
 * A connection's busy_timeout (set once, when it is opened) and the statements that turn it off and on
 * again: prepared once, since db.pragma() compiles its statement on every call and a web server's group
 * commit runs this around every attempt.
 */
const lockWaitsOf = new WeakMap<
  SqliteDatabase,
  { busyTimeoutMs: number; noWait: Statement; wait: Statement }
>();

function lockWaits(db: SqliteDatabase): { busyTimeoutMs: number; noWait: Statement; wait: Statement } {
  let known = lockWaitsOf.get(db);
  if (!known) {
    const busyTimeoutMs = db.pragma('busy_timeout', { simple: true }) as number;
    known = {
      busyTimeoutMs,
      noWait: db.prepare('PRAGMA busy_timeout = 0'),
      wait: db.prepare(`PRAGMA busy_timeout = ${busyTimeoutMs}`),
    };
    lockWaitsOf.set(db, known);
  }
  return known;
}

function isBusy(error: unknown): boolean {
  const code =
    error instanceof UnavailableError ? (error.cause as { code?: unknown } | undefined)?.code : null;
  return typeof code === 'string' && code.startsWith('SQLITE_BUSY');
}
