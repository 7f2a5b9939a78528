import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { QueryConfig, QueryResult, QueryResultRow } from 'pg';
import { UnavailableError } from '../../domain/errors.js';

/** Connections per pool when the URL does not say (`?max=N`). Lazily opened: an idle process holds few. */
const DEFAULT_POOL_SIZE = 10;

/**
 * Advisory lock keys, as SQL literals (any bigint will do; these are "onsale" in hex followed by a role
 * number, 0x6f6e73616c65_01 and _02, so that they cannot meet another application's keys by accident).
 */
export const ADVISORY_LOCK = {
  /** Held by the transaction that applies migrations, so processes that start together apply each once. */
  migrate: '31365164249670913',
  /** Held by every transaction that adds to the queue table: see PostgresQueue.enqueue for why. */
  enqueue: '31365164249670914',
} as const;

/**
 * Pauses before each retry of an operation that failed for a transient reason (the server restarting,
 * a connection cut, a serialization failure or deadlock). A fast restart of PostgreSQL took 0.2–0.3 s on
 * the development machine, so these ~0.6 s ride one out; longer outages end in UnavailableError: a web
 * request then answers 503 with Retry-After, and the worker backs off on its own, dead-lettering nothing.
 */
const RETRY_DELAYS_MS = [50, 150, 400];

/**
 * SQLSTATEs that say "try again", not "this is wrong": serialization_failure, deadlock_detected,
 * admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections, and class 08 (connection
 * exceptions).
 */
const TRANSIENT_SQLSTATES = new Set([
  '40001',
  '40P01',
  '57P01',
  '57P02',
  '57P03',
  '53300',
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
]);
const TRANSIENT_NET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);
/** node-postgres reports a lost or never-made connection by message only, without a code. */
const TRANSIENT_MESSAGES =
  /^Connection terminated|timeout exceeded when trying to connect|connection error and is not queryable/;

/** True when the failure is the server's or the network's, so that the same work may succeed later. */
export function isTransient(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, message, errors } = error as { code?: unknown; message?: unknown; errors?: unknown };
  if (typeof code === 'string' && (TRANSIENT_SQLSTATES.has(code) || TRANSIENT_NET_CODES.has(code)))
    return true;
  if (typeof message === 'string' && TRANSIENT_MESSAGES.test(message)) return true;
  // A host name with several addresses fails with an AggregateError of one error per address.
  return Array.isArray(errors) && errors.length > 0 && errors.every(isTransient);
}

/**
 * A PostgreSQL array literal of `values`, for a parameter cast to an array type (`$1::text[]`). node-postgres
 * quotes each element of a JS array with two regular-expression replacements, the largest part of a worker
 * batch's own CPU (docs/benchmarks.md, pgAllocVsCeiling); here an element without a quote or a backslash is
 * copied as it is, and one with them takes a single pass. Every string is quoted, so that commas, braces,
 * spaces and the text NULL stay text; null is SQL NULL.
 */
export function arrayLiteral(values: ReadonlyArray<string | number | null>): string {
  let literal = '{';
  for (let i = 0; i < values.length; i++) {
    if (i > 0) literal += ',';
    const value = values[i]!;
    if (value === null) literal += 'NULL';
    else if (typeof value === 'number') literal += String(value);
    else if (value.includes('"') || value.includes('\\')) literal += `"${value.replace(/["\\]/g, '\\$&')}"`;
    else literal += `"${value}"`;
  }
  return `${literal}}`;
}

/**
 * PostgreSQL text cannot hold U+0000, yet api.md keeps every string verbatim (the hostile-input tests send
 * NUL in names and buyer ids). Strings that come from outside are stored with `\` written `\\` and NUL
 * written `\0`: a one-to-one mapping, so equality and uniqueness still hold on the stored form, that leaves
 * every other string unchanged (every id this server makes, and nearly every name).
 */
export function toDb(text: string): string {
  if (!text.includes('\\') && !text.includes('\0')) return text;
  return text.replace(/\\/g, '\\\\').replace(/\0/g, '\\0');
}

/** The inverse of toDb. */
export function fromDb(text: string): string {
  if (!text.includes('\\')) return text;
  return text.replace(/\\([\\0])/g, (_, c: string) => (c === '0' ? '\0' : '\\'));
}

/**
 * Integer columns that can exceed 2^31 (sequence numbers, counts, prices up to 10^11 cents) are bigint,
 * which node-postgres returns as strings by default. Every such value here stays far below 2^53, so this
 * pool reads them as numbers; the override is per pool, not global.
 */
const TYPES = new pg.TypeOverrides();
TYPES.setTypeParser(pg.types.builtins.INT8, Number);

/**
 * Server settings for a pool whose every statement reads or writes rows by key or along an index: the waiting
 * room's, and the RabbitMQ and SQS indexes'. Their tables grow by hundreds of thousands of rows in minutes
 * (a room's places; a backlog of queued purchases), faster than autovacuum analyzes them, and on those
 * statistics the planner updated or deleted a batch of 500 rows by id by scanning or hashing the whole table:
 * at 100,000 rows, 15–45 ms per 500 places where probing the primary key takes 10–11 ms (most of it the
 * updates themselves), and 6–8 ms per 500 queued purchases where probing takes 1.3–3.2 ms. With scans (bitmap
 * ones too) and hash or merge joins priced out, the index is the planner's only choice left. A count of a
 * whole table then walks an index instead: the SQS index's depth, 14 ms against 9 at 100,000 queued.
 *
 * A plan that needs what is priced out anyway (a sum over a table with no index to walk) is priced at 10^10,
 * far above jit_above_cost, so PostgreSQL compiled it to machine code with LLVM on every run: 10–90 ms of
 * CPU for a statement that runs in a fraction of a millisecond. The RabbitMQ index's depth, read four times a
 * second by each web server, made JIT 40 % of PostgreSQL's CPU under load (docs/benchmarks.md). No statement
 * of these pools gains from JIT: it is off.
 */
export const KEYED_SESSION = {
  enable_seqscan: 'off',
  enable_bitmapscan: 'off',
  enable_hashjoin: 'off',
  enable_mergejoin: 'off',
  jit: 'off',
};

/**
 * `postgres://…` (or `postgresql://…`) with the standard libpq parameters; the pool size is the extra
 * parameter `max` (1..1000, default DEFAULT_POOL_SIZE), which is taken out before the URL reaches libpq's
 * parser. `settings` are server settings for every connection of the pool, added to the URL's `options`.
 */
export function poolConfig(url: string, settings: Record<string, string> = {}): pg.PoolConfig {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`"${url}" is not a URL: expected postgres://user@host:port/database`);
  }
  const rawMax = parsed.searchParams.get('max');
  parsed.searchParams.delete('max');
  const max = rawMax === null ? DEFAULT_POOL_SIZE : Number(rawMax);
  if (!Number.isInteger(max) || max < 1 || max > 1000) {
    throw new Error(`"${url}": max (the pool size) must be a whole number 1..1000`);
  }
  const options = [
    parsed.searchParams.get('options'),
    ...Object.entries(settings).map(([name, value]) => `-c ${name}=${value}`),
  ].filter(Boolean);
  if (options.length > 0) parsed.searchParams.set('options', options.join(' '));
  return {
    connectionString: parsed.toString(),
    max,
    types: TYPES,
    fallback_application_name: 'onsale',
    // A server that does not answer at all (a cut network) fails a checkout after this, as unavailable.
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
  };
}

/** The names of the statements prepareStatements marked, by their text. */
const preparedNames = new Map<string, string>();

/**
 * Marks `statements` (fixed texts) to be sent as named prepared statements, `prefix.key`: PostgreSQL parses
 * and plans each once per connection instead of on every call. For statements run hundreds of times a second
 * that read or write by key or from array parameters, where the generic plan is the one a custom plan would
 * be: planning was a tenth of the server's time per allocation batch (docs/benchmarks.md, pgAllocVsCeiling).
 * A pooler in front of PostgreSQL must keep a session's prepared statements (PgBouncer 1.21 or later with
 * max_prepared_statements, in transaction mode).
 */
export function prepareStatements<T extends Record<string, string>>(prefix: string, statements: T): T {
  for (const [key, sql] of Object.entries(statements)) preparedNames.set(sql, `${prefix}.${key}`);
  return statements;
}

/** What node-postgres is given for `sql`: a named statement if prepareStatements marked it. */
function statement(sql: string, params: readonly unknown[]): QueryConfig {
  const name = params.length > 0 ? preparedNames.get(sql) : undefined;
  return { name, text: sql, values: params as unknown[] };
}

/** What a transaction body can do: run statements on the transaction's connection. */
export interface Tx {
  query<R extends QueryResultRow>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
}

const BEGIN = {
  readWrite: 'BEGIN',
  /** One snapshot for every statement of the transaction (consistent multi-table reads). */
  snapshot: 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
} as const;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * A node-postgres pool with the adapter's failure policy: transient failures are retried a few times with
 * backoff, then surface as UnavailableError; any other error is the caller's (a bug, a constraint).
 *
 * A retried operation may run again after a first attempt whose COMMIT reached the server but whose answer
 * was lost with the connection. Every write of the adapters is therefore written to be safe to repeat
 * (ON CONFLICT DO NOTHING on ids made before the first attempt, "already applied" checks, deletes by
 * sequence number).
 */
export class PostgresDatabase {
  readonly #pool: pg.Pool;
  readonly #retryDelaysMs: readonly number[];
  #closed = false;

  /**
   * `retry: false` fails at once instead of riding out a restart: for a read replica, whose reader has the
   * primary to fall back on and must not keep a buyer waiting.
   */
  constructor(url: string, settings: Record<string, string> = {}, options: { retry?: boolean } = {}) {
    this.#pool = new pg.Pool(poolConfig(url, settings));
    this.#retryDelaysMs = options.retry === false ? [] : RETRY_DELAYS_MS;
    // An idle connection that the server closes (a restart) is dropped from the pool, which then emits
    // this; without a listener the process would crash. The next checkout simply connects again.
    this.#pool.on('error', () => undefined);
  }

  /** One statement in its own transaction, retried when transient. */
  async query<R extends QueryResultRow>(
    sql: string,
    params: readonly unknown[] = [],
  ): Promise<QueryResult<R>> {
    return this.#retrying(() => this.#pool.query<R>(statement(sql, params)));
  }

  /** Runs `body` in one transaction, the whole transaction retried when transient (see the class comment). */
  async transaction<T>(body: (tx: Tx) => Promise<T>, mode: keyof typeof BEGIN = 'readWrite'): Promise<T> {
    return this.#retrying(async () => {
      const client = await this.#pool.connect();
      let broken = false;
      // The server can end a checked-out connection between two statements (a restart sends 57P01 to
      // all); node-postgres then emits 'error' on the client, which would crash the process unheard. The
      // next statement fails with it anyway, so noting it is enough.
      const onError = () => (broken = true);
      client.on('error', onError);
      try {
        await client.query(BEGIN[mode]);
        const result = await body({ query: (sql, params = []) => client.query(statement(sql, params)) });
        await client.query('COMMIT');
        return result;
      } catch (error) {
        // A connection that cannot even roll back is dropped rather than handed to the next caller.
        await client.query('ROLLBACK').catch(() => (broken = true));
        throw error;
      } finally {
        client.off('error', onError);
        client.release(broken);
      }
    });
  }

  /** Once, no retry: a readiness probe must answer at once. */
  async ping(): Promise<void> {
    try {
      await this.#pool.query('SELECT 1');
    } catch (error) {
      throw new UnavailableError(`PostgreSQL does not answer (${describe(error)})`, error);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end();
  }

  async #retrying<T>(attempt: () => Promise<T>): Promise<T> {
    for (let retry = 0; ; retry++) {
      try {
        return await attempt();
      } catch (error) {
        if (!isTransient(error) || this.#closed) throw error;
        const delay = this.#retryDelaysMs[retry];
        if (delay === undefined) {
          throw new UnavailableError(`PostgreSQL is not available (${describe(error)})`, error);
        }
        await sleep(delay);
      }
    }
  }
}

function describe(error: unknown): string {
  const e = error as { code?: unknown; message?: unknown };
  const message = typeof e.message === 'string' && e.message ? e.message : String(error);
  return typeof e.code === 'string' && !message.includes(e.code) ? `${e.code}: ${message}` : message;
}

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));

/**
 * Creates the ledger of applied migrations (shared by the components, told apart by `component`).
 * Returns nothing.
 */
const CREATE_LEDGER = `CREATE TABLE IF NOT EXISTS schema_migrations (
  component text NOT NULL,
  version integer NOT NULL,
  name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (component, version)
)`;
/** Returns the versions of component $1 already applied. */
const APPLIED_VERSIONS = 'SELECT version FROM schema_migrations WHERE component = $1';
/** Records that migration $2 (file name $3) of component $1 is applied. Returns nothing. */
const RECORD_VERSION = 'INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)';
/** Waits for, then holds until the end of the transaction, the migration lock. Returns one row. */
const LOCK_MIGRATIONS = `SELECT pg_advisory_xact_lock(${ADVISORY_LOCK.migrate})`;

/**
 * The components with migrations of their own, each in its folder under migrations/ and told apart in
 * schema_migrations: the storage, the table queue, the RabbitMQ and SQS queues' indexes, and the records the queues
 * keep beside their entries (idempotency keys and dead letters, see queue-records.ts), and the outbox of
 * ticket emails (outbox.ts), which lives beside the storage because the transaction that confirms a
 * purchase writes it.
 */
type Component = 'storage' | 'queue' | 'rabbitmq' | 'sqs' | 'records' | 'outbox' | 'room';

/**
 * Applies the numbered, append-only migrations of one component that the database has not seen yet, all in
 * one transaction. The advisory lock is taken before anything else (even before CREATE TABLE IF NOT
 * EXISTS, which is not safe against itself), so processes that start together wait for the first one and
 * then find its work done.
 */
export async function migratePostgres(db: PostgresDatabase, component: Component): Promise<void> {
  await db.transaction((tx) => applyMigrations(tx, component));
}

/**
 * Inside `tx`: applies the migrations of `component` that the database has not seen yet, under the lock
 * every component's migrations take (so processes starting together apply each once). For a component
 * with more to set up in the same transaction (the RabbitMQ index records its partition count).
 */
export async function applyMigrations(tx: Tx, component: Component): Promise<void> {
  const dir = `${MIGRATIONS_DIR}${component}/`;
  const files = readdirSync(dir)
    .filter((name) => /^\d{4}_.*\.sql$/.test(name))
    .sort()
    .map((name) => ({ name, version: Number(name.slice(0, 4)), sql: readFileSync(`${dir}${name}`, 'utf8') }));
  await tx.query(LOCK_MIGRATIONS);
  await tx.query(CREATE_LEDGER);
  const applied = await tx.query<{ version: number }>(APPLIED_VERSIONS, [component]);
  const done = new Set(applied.rows.map((r) => r.version));
  for (const file of files) {
    if (done.has(file.version)) continue;
    // No parameters: sent as a simple query, so a file may hold several statements.
    await tx.query(file.sql);
    await tx.query(RECORD_VERSION, [component, file.version, file.name]);
  }
}
