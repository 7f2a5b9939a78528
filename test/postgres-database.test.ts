import pg from 'pg';
import { describe, expect, it } from 'vitest';
import {
  arrayLiteral,
  fromDb,
  isTransient,
  KEYED_SESSION,
  poolConfig,
  PostgresDatabase,
  prepareStatements,
  toDb,
} from '../src/adapters/postgres/database.js';
import { exclusion, POSTGRES_ADMIN_URL } from './helpers/services.js';

describe('PostgreSQL adapter plumbing', () => {
  it('takes the pool size from the URL and leaves the rest to libpq', () => {
    const config = poolConfig('postgresql://u@db.example:5433/onsale?max=25&application_name=web');
    expect(config.max).toBe(25);
    expect(config.connectionString).toBe('postgresql://u@db.example:5433/onsale?application_name=web');
    expect(poolConfig('postgres://u@h/onsale').max).toBe(10);
    for (const bad of ['0', '1001', 'ten', '2.5']) {
      expect(() => poolConfig(`postgres://u@h/onsale?max=${bad}`)).toThrow(/max \(the pool size\)/);
    }
  });

  it('adds server settings to the options already in the URL', () => {
    const url = 'postgres://u@h/onsale?options=-c%20statement_timeout%3D5000';
    const options = new URL(poolConfig(url, { enable_bitmapscan: 'off' }).connectionString!).searchParams;
    expect(options.get('options')).toBe('-c statement_timeout=5000 -c enable_bitmapscan=off');
  });

  it('stores any string as text PostgreSQL accepts, and reads it back unchanged', () => {
    const strings = ['plain', 'nul\u0000byte\u0000', '\\0', '\\\\0\u0000\\', 'e\u0301 💃🏽', '', '\\'];
    for (const s of strings) {
      expect(toDb(s)).not.toContain('\u0000');
      expect(fromDb(toDb(s))).toBe(s);
    }
    // One-to-one, so equality (keys, lookups) holds on the stored form.
    expect(new Set(strings.map(toDb)).size).toBe(strings.length);
    expect(toDb('aBc-123_x')).toBe('aBc-123_x');
  });

  it('tells an outage or a conflict to retry from an error in the request', () => {
    for (const code of ['57P01', '57P03', '40001', '40P01', '53300', '08006', 'ECONNREFUSED', 'ECONNRESET']) {
      expect(isTransient(Object.assign(new Error('x'), { code })), code).toBe(true);
    }
    expect(isTransient(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isTransient(new Error('timeout exceeded when trying to connect'))).toBe(true);
    expect(isTransient(new AggregateError([Object.assign(new Error('a'), { code: 'ECONNREFUSED' })]))).toBe(
      true,
    );
    for (const code of ['23505', '23514', '42P01', '22021']) {
      expect(isTransient(Object.assign(new Error('x'), { code })), code).toBe(false);
    }
    expect(isTransient(new Error('allocation would oversell'))).toBe(false);
  });
});

describe.skipIf(exclusion('postgres') !== '')(
  `array literals sent to PostgreSQL${exclusion('postgres')}`,
  () => {
    it('reads back every element as it was sent, text and integers, nulls included', async () => {
      const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
      await client.connect();
      try {
        const texts = [
          'plain',
          '',
          'NULL',
          'null',
          'a,b',
          '{x}',
          ' spaced ',
          'quote"d',
          'back\\slash',
          '\\"',
          '"',
          '[{"ticketTypeId":"t-1","quantity":2}]',
          'e\u0301 💃🏽',
          null,
        ];
        const integers = [0, -3, null, 10_000_000_000];
        const read = await client.query<{ t: Array<string | null>; i: Array<string | null> }>(
          'SELECT $1::text[] AS t, $2::bigint[] AS i',
          [arrayLiteral(texts), arrayLiteral(integers)],
        );
        expect(read.rows[0]!.t).toEqual(texts);
        expect(read.rows[0]!.i).toEqual(['0', '-3', null, '10000000000']);
        const empty = await client.query<{ t: string[] }>('SELECT $1::text[] AS t', [arrayLiteral([])]);
        expect(empty.rows[0]!.t).toEqual([]);
      } finally {
        await client.end();
      }
    });
  },
);

describe.skipIf(exclusion('postgres') !== '')(`prepared statements${exclusion('postgres')}`, () => {
  it('sends a marked statement as a named prepared statement, in and out of transactions, and no other', async () => {
    const marked = prepareStatements('test', { plusOne: 'SELECT $1::integer + 1 AS n' });
    // One connection, so that every statement below runs in the session whose prepared statements are read.
    const url = new URL(POSTGRES_ADMIN_URL);
    url.searchParams.set('max', '1');
    const db = new PostgresDatabase(url.toString());
    try {
      expect((await db.query<{ n: number }>(marked.plusOne, [1])).rows).toEqual([{ n: 2 }]);
      const inTx = await db.transaction((tx) => tx.query<{ n: number }>(marked.plusOne, [2]));
      expect(inTx.rows).toEqual([{ n: 3 }]);
      expect((await db.query<{ n: number }>('SELECT $1::integer * 2 AS n', [4])).rows).toEqual([{ n: 8 }]);
      const prepared = await db.query('SELECT name, statement FROM pg_prepared_statements');
      expect(prepared.rows).toEqual([{ name: 'test.plusOne', statement: marked.plusOne }]);
    } finally {
      await db.close();
    }
  });

  it('never compiles with JIT in a keyed session, where a scan it prices out costs more than any JIT threshold', async () => {
    const db = new PostgresDatabase(POSTGRES_ADMIN_URL, KEYED_SESSION);
    try {
      const plan = await db.transaction(async (tx) => {
        // A table with no index: summing it needs the sequential scan the session prices at 10^10.
        await tx.query('CREATE TEMP TABLE counts (queued integer) ON COMMIT DROP');
        const threshold = await tx.query<{ jit_above_cost: string }>('SHOW jit_above_cost');
        const explained = await tx.query<{ 'QUERY PLAN': string }>('EXPLAIN SELECT sum(queued) FROM counts');
        return {
          threshold: Number(threshold.rows[0]!.jit_above_cost),
          lines: explained.rows.map((r) => r['QUERY PLAN']),
        };
      });
      const cost = Number(/cost=[\d.]+\.\.([\d.]+)/.exec(plan.lines[0]!)![1]);
      expect(cost).toBeGreaterThan(plan.threshold);
      expect(plan.lines.join('\n')).not.toMatch(/JIT/);
    } finally {
      await db.close();
    }
  });
});
