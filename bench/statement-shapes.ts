/**
 * `node build/bench/statement-shapes.js [postgres-url]`: what writing a batch's purchase rows costs in CPU
 * per purchase, by statement shape, the two shapes of each engine alternated three times in this process.
 * SQLite (in memory, the purchases' columns): one better-sqlite3 call per row, against one INSERT … SELECT
 * from `json_each` of one JSON array per batch. PostgreSQL (scratch tables with the purchases' and tickets'
 * columns and keys, dropped at the end): `unnest` of one array per column, as applyBatch writes, against
 * `json_to_recordset` of one JSON parameter in one statement. docs/benchmarks.md (allocVsCeiling) has the
 * figures and what they say about the worker.
 */
import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { ownCpuSeconds } from './ceiling.js';

const BATCH = 500;
const BATCHES = 40;
const ROUNDS = 3;

interface Row {
  id: string;
  buyer: string;
  status: string;
  items: string;
  tickets: Array<{ id: string; position: number; code: string }>;
  created: string;
}

let serial = 0;
function batch(): Row[] {
  const time = Date.now().toString(16).padStart(12, '0');
  return Array.from({ length: BATCH }, () => {
    const n = serial++;
    return {
      id: `${time}purchase-${n}`.padEnd(34, 'x'),
      buyer: `buyer-${n}`,
      status: 'confirmed',
      items: JSON.stringify([{ ticketTypeId: 'type', quantity: 2 }]),
      tickets: [0, 1].map((position) => ({
        id: `t${n}-${position}`,
        position,
        code: `${time}code-${n}-${position}`,
      })),
      created: new Date().toISOString(),
    };
  });
}

const perPurchase = (cpuSeconds: number) => `${((cpuSeconds / (BATCH * BATCHES)) * 1e6).toFixed(1)} µs`;

function sqlite(): void {
  const db = new Database(':memory:');
  db.exec(`CREATE TABLE purchases (id TEXT PRIMARY KEY, event_id TEXT, buyer_id TEXT, buyer_key TEXT, status TEXT,
    reason TEXT, items TEXT, tickets TEXT, created_at TEXT, updated_at TEXT)`);
  const perRow = db.prepare('INSERT INTO purchases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
  const fromJson = db.prepare(`INSERT INTO purchases SELECT value ->> 0, @event, value ->> 1, value ->> 1,
    value ->> 2, NULL, value -> 3, value -> 4, value ->> 5, @now FROM json_each(@rows)`);
  const shapes: Array<[string, (rows: Row[]) => void]> = [
    [
      'one call per row',
      (rows) => {
        for (const r of rows)
          perRow.run(
            r.id,
            'e',
            r.buyer,
            r.buyer,
            r.status,
            null,
            r.items,
            JSON.stringify(r.tickets),
            r.created,
            'now',
          );
      },
    ],
    [
      'json_each of one array',
      (rows) => {
        const json = rows.map((r) => [
          r.id,
          r.buyer,
          r.status,
          JSON.parse(r.items) as unknown,
          r.tickets,
          r.created,
        ]);
        fromJson.run({ event: 'e', now: 'now', rows: JSON.stringify(json) });
      },
    ],
  ];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [name, write] of shapes) {
      const batches = Array.from({ length: BATCHES }, batch);
      const cpu = ownCpuSeconds();
      for (const rows of batches) db.transaction(() => write(rows))();
      console.log(`sqlite, round ${round}, ${name}: ${perPurchase(ownCpuSeconds() - cpu)} CPU per purchase`);
    }
  }
  db.close();
}

/** CPU seconds of a server process, from /proc. */
function processCpu(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function postgres(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const suffix = `${process.pid}`;
  const [purchases, tickets] = [`shapes_purchases_${suffix}`, `shapes_tickets_${suffix}`];
  try {
    await client.query(`CREATE TABLE ${purchases} (id text PRIMARY KEY, event_id text, buyer_id text, buyer_key text,
      status text, items text, created_at text, updated_at text)`);
    await client.query(`CREATE TABLE ${tickets} (id text PRIMARY KEY, purchase_id text, position integer,
      ticket_type_id text, code text UNIQUE)`);
    const backend = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const shapes: Array<[string, (rows: Row[]) => Promise<void>]> = [
      [
        'unnest arrays',
        async (rows) => {
          await client.query(
            `INSERT INTO ${purchases} SELECT p.id, $1, p.buyer, p.buyer, p.status, p.items, p.created, $2
              FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) AS p (id, buyer, status, items, created)`,
            [
              'e',
              'now',
              ...(['id', 'buyer', 'status', 'items', 'created'] as const).map((k) => rows.map((r) => r[k])),
            ],
          );
          const all = rows.flatMap((r) => r.tickets.map((t) => ({ ...t, purchase: r.id })));
          await client.query(
            `INSERT INTO ${tickets} SELECT t.id, t.purchase, t.position, 'type', t.code
            FROM unnest($1::text[], $2::text[], $3::integer[], $4::text[]) AS t (id, purchase, position, code)`,
            [
              all.map((t) => t.id),
              all.map((t) => t.purchase),
              all.map((t) => t.position),
              all.map((t) => t.code),
            ],
          );
        },
      ],
      [
        'json_to_recordset',
        async (rows) => {
          await client.query(
            `WITH input AS (SELECT * FROM json_to_recordset($3::json)
                AS r (id text, buyer text, status text, items text, created text, tickets json)),
              written AS (INSERT INTO ${purchases} SELECT id, $1, buyer, buyer, status, items, created, $2 FROM input)
            INSERT INTO ${tickets} SELECT t.id, i.id, t.position, 'type', t.code
              FROM input i, json_to_recordset(i.tickets) AS t (id text, position integer, code text)`,
            ['e', 'now', JSON.stringify(rows)],
          );
        },
      ],
    ];
    for (let round = 1; round <= ROUNDS; round++) {
      for (const [name, write] of shapes) {
        const batches = Array.from({ length: BATCHES }, batch);
        const [server, own] = [processCpu(backend), ownCpuSeconds()];
        for (const rows of batches) {
          await client.query('BEGIN');
          await write(rows);
          await client.query('COMMIT');
        }
        console.log(
          `postgres, round ${round}, ${name}: ${perPurchase(processCpu(backend) - server)} CPU per purchase in ` +
            `PostgreSQL, ${perPurchase(ownCpuSeconds() - own)} in Node`,
        );
      }
    }
  } finally {
    await client.query(`DROP TABLE IF EXISTS ${purchases}, ${tickets}`);
    await client.end();
  }
}

sqlite();
const url = process.argv[2];
if (url) await postgres(url);
