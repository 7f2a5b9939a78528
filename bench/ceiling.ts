/**
 * The storage's own ceiling for allocation: the rate at which the rows the worker writes for a queue of
 * purchases (each purchase with its tickets and codes, the buyers' totals, the stock and counts, and the
 * queue entries taken off) are written by set-based statements in ONE transaction, with no application code,
 * no round trip per batch and a single commit. The worker cannot beat it on the same engine and schema; its
 * allocation rate divided by this one (allocVsCeiling, pgAllocVsCeiling) says how much of the engine's
 * write rate the worker's design leaves unused.
 *
 * Both run on a fresh database whose queue holds the bench's purchases (one event, one ticket type, two
 * tickets each, buyers never seen before, as fillQueue writes them): the statements below rely on that
 * shape rather than parse every purchase's items. Ticket ids and codes are random, of the same length as the
 * worker's, and codes start with the time like the worker's (newTickets), so that their index is written in
 * the same order. The statements follow the latest
 * storage migrations of each engine; a schema change must change them too (the bench checks the stored
 * stats afterwards, like the worker's).
 */
import pg from 'pg';
import { openSqlite } from '../src/adapters/sqlite/database.js';
import { cpuSeconds } from './processes.js';

/** Tickets per purchase in the bench's queue (fillQueue). */
const TICKETS_PER_PURCHASE = 2;

/** What a ceiling run wrote, how long its transaction took (commit included) and the CPU it used. */
export interface CeilingRun {
  allocated: number;
  seconds: number;
  /** CPU seconds: of this process for SQLite (in-process), of the server process for PostgreSQL. */
  cpuSeconds: number;
}

/** A ceiling run for the progress lines: rate and CPU per purchase. */
export function describeCeiling(run: CeilingRun): string {
  return (
    `the same rows set-based in one transaction: ${run.allocated} in ${run.seconds.toFixed(2)} s: ` +
    `${Math.round(run.allocated / run.seconds)}/s, ${((run.cpuSeconds / run.allocated) * 1e6).toFixed(0)} µs CPU each`
  );
}

/** CPU seconds this process has used so far. */
export function ownCpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

/** The time prefix of ticket codes (newTickets): milliseconds, 12 hex digits. */
const codeTime = () => Date.now().toString(16).padStart(12, '0');

/** A random lower-case hex text of `chars` characters, in SQLite. */
const sqliteHex = (chars: number) => `lower(hex(randomblob(${chars / 2})))`;
const sqliteTicket = `json_object('id', ${sqliteHex(16)}, 'ticketTypeId', @type, 'code', @time || ${sqliteHex(22)})`;

/** SQLite, storage schema 0005 and queue schema 0003: each statement writes one table for all purchases. */
const SQLITE = [
  `INSERT INTO purchases (id, event_id, buyer_id, buyer_key, status, reason, items, tickets, hold_expires_at,
      created_at, updated_at, waitlist_seq)
    SELECT purchase_id, event_id, buyer_id, lower(trim(buyer_id)), 'confirmed', NULL, items,
      json_array(${sqliteTicket}, ${sqliteTicket}), NULL, accepted_at, @now, NULL
    FROM queue_purchases WHERE event_id = @event ORDER BY seq`,
  `INSERT INTO ticket_codes (code)
    SELECT json_extract(t.value, '$.code') FROM purchases p, json_each(p.tickets) t WHERE p.event_id = @event`,
  `INSERT INTO buyer_tickets (event_id, buyer_id, ticket_type_id, quantity)
    SELECT event_id, lower(trim(buyer_id)), @type, ${TICKETS_PER_PURCHASE} FROM queue_purchases WHERE event_id = @event
    ON CONFLICT (event_id, buyer_id, ticket_type_id) DO UPDATE SET quantity = quantity + excluded.quantity`,
  `UPDATE ticket_types SET sold = sold + @n * ${TICKETS_PER_PURCHASE} WHERE id = @type`,
  `INSERT INTO purchase_counts (event_id, status, n) VALUES (@event, 'confirmed', @n)
    ON CONFLICT (event_id, status) DO UPDATE SET n = n + excluded.n`,
  'DELETE FROM queue_purchases WHERE event_id = @event',
  'UPDATE queue_events SET pending = pending - @n WHERE event_id = @event',
];

/** Writes the allocation of every purchase queued in the SQLite file of `url` in one transaction. */
export function sqliteCeiling(url: string, eventId: string, ticketTypeId: string): CeilingRun {
  const db = openSqlite(url);
  try {
    const statements = SQLITE.map((sql) => db.prepare(sql));
    const n = db
      .prepare('SELECT count(*) FROM queue_purchases WHERE event_id = ?')
      .pluck()
      .get(eventId) as number;
    const params = { event: eventId, type: ticketTypeId, n, now: new Date().toISOString(), time: codeTime() };
    const started = performance.now();
    const cpu = ownCpuSeconds();
    db.transaction(() => {
      for (const statement of statements) statement.run(pickParams(statement.source, params));
    }).immediate();
    return { allocated: n, seconds: (performance.now() - started) / 1000, cpuSeconds: ownCpuSeconds() - cpu };
  } finally {
    db.close();
  }
}

/** The named parameters a statement uses (better-sqlite3 refuses unused ones). */
function pickParams(sql: string, params: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(params).filter(([name]) => sql.includes(`@${name}`)));
}

/** A random lower-case hex text of `chars` characters, in PostgreSQL. */
const pgHex = (chars: number) => `left(replace(gen_random_uuid()::text, '-', ''), ${chars})`;

/**
 * PostgreSQL, storage schema 0005 and queue schema 0002: each statement writes one table for all purchases.
 * Each with its parameters, by name.
 */
const POSTGRES: Array<[sql: string, params: Array<'event' | 'type' | 'n' | 'now' | 'time'>]> = [
  [
    `INSERT INTO purchases (id, event_id, buyer_id, buyer_key, status, reason, items, created_at, updated_at)
      SELECT purchase_id, event_id, buyer_id, buyer_id, 'confirmed', NULL, items, accepted_at, $2
      FROM queue_purchases WHERE event_id = $1 ORDER BY seq`,
    ['event', 'now'],
  ],
  [
    `INSERT INTO tickets (id, purchase_id, position, ticket_type_id, code)
      SELECT ${pgHex(16)}, q.purchase_id, g.position, $2, $3 || ${pgHex(22)}
      FROM queue_purchases q CROSS JOIN generate_series(0, ${TICKETS_PER_PURCHASE - 1}) AS g (position)
      WHERE q.event_id = $1 ORDER BY q.seq, g.position`,
    ['event', 'type', 'time'],
  ],
  [
    `INSERT INTO buyer_tickets (event_id, buyer_id, ticket_type_id, quantity)
      SELECT event_id, buyer_id, $2, ${TICKETS_PER_PURCHASE} FROM queue_purchases WHERE event_id = $1`,
    ['event', 'type'],
  ],
  [`UPDATE ticket_types SET sold = sold + $2 * ${TICKETS_PER_PURCHASE} WHERE id = $1`, ['type', 'n']],
  [
    `WITH removed AS (DELETE FROM queue_purchases WHERE event_id = $1 RETURNING seq)
      UPDATE queue_depth SET queued = queued - (SELECT count(*) FROM removed),
        removed_through = (SELECT coalesce(max(seq), removed_through) FROM removed)
      WHERE event_id = $1`,
    ['event'],
  ],
];

/** Writes the allocation of every purchase queued in the PostgreSQL database of `url` in one transaction. */
export async function postgresCeiling(
  url: string,
  eventId: string,
  ticketTypeId: string,
): Promise<CeilingRun> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const counted = await client.query<{ n: number }>(
      'SELECT count(*)::integer AS n FROM queue_purchases WHERE event_id = $1',
      [eventId],
    );
    const n = counted.rows[0]!.n;
    const values = { event: eventId, type: ticketTypeId, n, now: new Date().toISOString(), time: codeTime() };
    const backend = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const cpu = cpuSeconds(backend);
    const started = performance.now();
    await client.query('BEGIN');
    try {
      for (const [sql, params] of POSTGRES)
        await client.query(
          sql,
          params.map((name) => values[name]),
        );
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK');
      throw error;
    }
    return {
      allocated: n,
      seconds: (performance.now() - started) / 1000,
      cpuSeconds: cpuSeconds(backend) - cpu,
    };
  } finally {
    await client.end();
  }
}
