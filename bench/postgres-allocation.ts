/**
 * Allocation on PostgreSQL, the counterpart of allocation.ts for the embedded engine: the real worker loop
 * (startWorkerLoop, `batchSize` purchases per transaction) draining a pre-filled PostgreSQL queue table,
 * against a naive allocator on the same schema and server that takes one purchase per transaction.
 * `npm run bench -- --only postgres` runs it.
 *
 * Each side runs on a database of its own, created on the server of `adminUrl` and dropped afterwards. As
 * in allocation.ts, the naive allocator runs on a database that already holds half as many allocated
 * purchases as the worker's ends with, so both are measured at the same average table size; and each
 * side's work is checked before its rate is reported.
 */
import pg from 'pg';
import { PostgresQueue } from '../src/adapters/postgres/queue.js';
import { PostgresStorage } from '../src/adapters/postgres/storage.js';
import { newTickets } from '../src/shared/ids.js';
import type { PurchaseItem, RejectReason } from '../src/domain/types.js';
import { createLogger } from '../src/shared/logger.js';
import { startWorkerLoop } from '../src/worker/worker.js';
import { fillQueue } from './allocation.js';
import { describeCeiling, ownCpuSeconds, postgresCeiling } from './ceiling.js';
import { cpuSeconds } from './processes.js';
import { sleep } from './processes.js';
import { createDatabase } from '../test/support/services.js';
import { int } from '../src/shared/format.js';

export interface PostgresAllocationPlan {
  /** The admin URL of the server: the throw-away databases are created there. */
  adminUrl: string;
  /** Purchases queued for the worker loop, all drained. */
  purchases: number;
  /** Purchases queued for the naive allocator, which runs for at most `naiveSeconds`. */
  naivePurchases: number;
  naiveSeconds: number;
  batchSize: number;
}

interface PostgresAllocationFigures {
  allocPerSec: number;
  naivePerSec: number;
  /** The storage's own ceiling (ceiling.ts): the same rows for as many purchases, set-based, one transaction. */
  ceilingPerSec: number;
  /** CPU time of the bench process (the worker loop, and its 5 ms depth probe) per purchase, in microseconds. */
  workerCpuUsPerPurchase: number;
  /** CPU time of the database's server processes (all its backends) per purchase the worker loop allocated. */
  serverCpuUsPerPurchase: number;
  /** CPU time of the ceiling's server process per purchase, in microseconds. */
  ceilingCpuUsPerPurchase: number;
}

interface BenchDatabase {
  url: string;
  eventId: string;
  ticketTypeId: string;
}

/** Runs `fn` on a fresh database (migrated, with one event that has stock for everyone), then drops it. */
async function withDatabase<T>(adminUrl: string, fn: (db: BenchDatabase) => Promise<T>): Promise<T> {
  const { url, drop } = await createDatabase(adminUrl, 'onsale_bench');
  try {
    const storage = new PostgresStorage(url);
    const queue = new PostgresQueue(url);
    let event;
    try {
      await storage.migrate();
      await queue.migrate();
      event = await storage.createEvent({
        name: 'bench',
        salesOpenAt: new Date().toISOString(),
        holdSeconds: 0,
        ticketTypes: [{ name: 'General admission', priceCents: 5000, capacity: 10_000_000, maxPerBuyer: 4 }],
      });
    } finally {
      await Promise.all([storage.close(), queue.close()]);
    }
    return await fn({ url, eventId: event.id, ticketTypeId: event.ticketTypes[0]!.id });
  } finally {
    await drop();
  }
}

/**
 * Runs the worker loop (in this process, on its own pools) until the queue holding `queued` purchases is
 * empty. The clock starts when the first batch is seen done, and the purchases done by then are left out.
 */
async function drainWithWorker(
  db: BenchDatabase,
  queued: number,
  batchSize: number,
): Promise<{ allocated: number; seconds: number; cpuSeconds: number; serverCpuSeconds: number }> {
  const storage = new PostgresStorage(db.url);
  const queue = new PostgresQueue(db.url);
  const probe = new PostgresQueue(db.url);
  const loop = startWorkerLoop({
    storage,
    queue,
    workerId: 'bench',
    batchSize,
    maxAttempts: 5,
    logger: createLogger('warn', 'bench-worker'),
    // As `onsale worker` does when the queue is the database's (the default): the ack in the apply.
    ackInApply: true,
  });
  try {
    let first: { at: number; depth: number; cpu: number; server: Map<number, number> } | null = null;
    for (;;) {
      const { depth } = await probe.depth();
      const at = performance.now();
      if (first === null && depth < queued) {
        first = { at, depth, cpu: ownCpuSeconds(), server: await serverCpu(db.url) };
      }
      if (first !== null && depth === 0) {
        let serverCpuSeconds = 0;
        // Backends that were there at the start and still are (the pools keep theirs open).
        for (const [pid, seconds] of await serverCpu(db.url, first.server.keys()))
          serverCpuSeconds += seconds - first.server.get(pid)!;
        return {
          allocated: first.depth,
          seconds: (at - first.at) / 1000,
          cpuSeconds: ownCpuSeconds() - first.cpu,
          serverCpuSeconds,
        };
      }
      await sleep(5);
    }
  } finally {
    await loop.stop();
    await Promise.all([storage.close(), queue.close(), probe.close()]);
  }
}

/**
 * CPU seconds used so far by each server process (backend) connected to the database of `url`, by pid;
 * only `pids` when given. The server runs on this machine (the bench's PostgreSQL is local).
 */
async function serverCpu(url: string, pids?: Iterable<number>): Promise<Map<number, number>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>(
      'SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
    );
    const wanted = pids ? new Set(pids) : null;
    return new Map(rows.filter((r) => !wanted || wanted.has(r.pid)).map((r) => [r.pid, cpuSeconds(r.pid)]));
  } finally {
    await client.end();
  }
}

/**
 * The naive allocator's statements, the ones one would write first: one row at a time. $n as named.
 */
const NAIVE = {
  /** The oldest queued purchase, locked: seq, purchase_id, event_id, buyer_id, items, accepted_at. */
  head: `SELECT seq, purchase_id, event_id, buyer_id, items, accepted_at FROM queue_purchases
    ORDER BY seq LIMIT 1 FOR UPDATE`,
  /** Stock of type $1 in event $2: capacity, sold, held, max_per_buyer. */
  stock: 'SELECT capacity, sold, held, max_per_buyer FROM ticket_types WHERE id = $1 AND event_id = $2',
  /** Tickets of type $3 buyer $2 has in event $1: quantity, or no row. */
  bought: `SELECT quantity FROM buyer_tickets WHERE event_id = $1 AND buyer_id = $2 AND ticket_type_id = $3`,
  /** Sells $1 tickets of type $2 if they fit; changes one row or none. */
  sell: 'UPDATE ticket_types SET sold = sold + $1 WHERE id = $2 AND sold + held + $1 <= capacity',
  /** Records purchase $1 (event $2, buyer $3, status $4, reason $5, items $6, created $7, updated $8). */
  insertPurchase: `INSERT INTO purchases (id, event_id, buyer_id, status, reason, items, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
  /** Issues ticket $1 of purchase $2 (position $3, type $4, code $5). */
  insertTicket: `INSERT INTO tickets (id, purchase_id, position, ticket_type_id, code)
    VALUES ($1, $2, $3, $4, $5)`,
  /** Adds $4 tickets of type $3 to buyer $2's total in event $1. */
  addBought: `INSERT INTO buyer_tickets (event_id, buyer_id, ticket_type_id, quantity) VALUES ($1, $2, $3, $4)
    ON CONFLICT (event_id, buyer_id, ticket_type_id) DO UPDATE SET quantity = buyer_tickets.quantity + excluded.quantity`,
  /** Takes entry $1 of event $2 off the queue. */
  remove: `WITH gone AS (DELETE FROM queue_purchases WHERE seq = $1 RETURNING 1)
    UPDATE queue_depth SET queued = queued - (SELECT count(*) FROM gone) WHERE event_id = $2`,
} as const;

/**
 * The baseline: each purchase is one transaction that takes the oldest entry off the queue table, allocates
 * it and removes it, on the same schema, server and durability as the worker. It is correct, not slowed on
 * purpose: all or nothing per purchase (a savepoint), conditional stock updates, the per-buyer limit, and
 * the entry removed in the same transaction. What it lacks is batching: one commit (one WAL flush) and a
 * dozen round trips per purchase.
 */
async function runNaive(db: BenchDatabase, seconds: number): Promise<{ allocated: number; seconds: number }> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    let allocated = 0;
    const started = performance.now();
    const until = started + seconds * 1000;
    while (performance.now() < until && (await allocateNext(client))) allocated++;
    return { allocated, seconds: (performance.now() - started) / 1000 };
  } finally {
    await client.end();
  }
}

async function allocateNext(client: pg.Client): Promise<boolean> {
  await client.query('BEGIN');
  try {
    const entry = (
      await client.query<{
        seq: string;
        purchase_id: string;
        event_id: string;
        buyer_id: string;
        items: string;
        accepted_at: string;
      }>(NAIVE.head)
    ).rows[0];
    if (!entry) {
      await client.query('COMMIT');
      return false;
    }
    const items = JSON.parse(entry.items) as PurchaseItem[];
    let reason: RejectReason | null = null;
    for (const item of items) {
      const type = (
        await client.query<{ max_per_buyer: number }>(NAIVE.stock, [item.ticketTypeId, entry.event_id])
      ).rows[0]!;
      const already = (
        await client.query<{ quantity: number }>(NAIVE.bought, [
          entry.event_id,
          entry.buyer_id,
          item.ticketTypeId,
        ])
      ).rows[0]?.quantity;
      if ((already ?? 0) + item.quantity > type.max_per_buyer) reason = 'limit_exceeded';
    }
    if (!reason) {
      await client.query('SAVEPOINT sell');
      for (const item of items) {
        const sold = await client.query(NAIVE.sell, [item.quantity, item.ticketTypeId]);
        if (sold.rowCount !== 1) {
          await client.query('ROLLBACK TO SAVEPOINT sell');
          reason = await shortage(client, entry.event_id, items);
          break;
        }
      }
    }
    await client.query(NAIVE.insertPurchase, [
      entry.purchase_id,
      entry.event_id,
      entry.buyer_id,
      reason ? 'rejected' : 'confirmed',
      reason,
      entry.items,
      entry.accepted_at,
      new Date().toISOString(),
    ]);
    if (!reason) {
      const tickets = newTickets(items.reduce((sum, i) => sum + i.quantity, 0));
      let next = 0;
      for (const item of items) {
        for (let i = 0; i < item.quantity; i++) {
          const t = tickets[next]!;
          await client.query(NAIVE.insertTicket, [
            t.id,
            entry.purchase_id,
            next++,
            item.ticketTypeId,
            t.code,
          ]);
        }
        await client.query(NAIVE.addBought, [
          entry.event_id,
          entry.buyer_id,
          item.ticketTypeId,
          item.quantity,
        ]);
      }
    }
    await client.query(NAIVE.remove, [entry.seq, entry.event_id]);
    await client.query('COMMIT');
    return true;
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  }
}

/** Why a conditional update refused, with the same precedence as the real allocator. */
async function shortage(
  client: pg.Client,
  eventId: string,
  items: readonly PurchaseItem[],
): Promise<RejectReason> {
  for (const item of items) {
    const t = (
      await client.query<{ capacity: number; sold: number; held: number }>(NAIVE.stock, [
        item.ticketTypeId,
        eventId,
      ])
    ).rows[0]!;
    if (t.capacity - t.sold - t.held <= 0) return 'sold_out';
  }
  return 'insufficient_inventory';
}

/** Fails unless exactly `expected` purchases are confirmed with two tickets each. */
async function verify(db: BenchDatabase, expected: number, who: string): Promise<void> {
  const storage = new PostgresStorage(db.url);
  try {
    const stats = await storage.getStats(db.eventId);
    const confirmed = stats?.purchases.confirmed ?? 0;
    const sold = stats?.ticketTypes[0]?.sold ?? 0;
    if (confirmed !== expected || sold !== 2 * expected) {
      throw new Error(
        `${who}: expected ${expected} confirmed purchases, found ${confirmed} (${sold} tickets)`,
      );
    }
  } finally {
    await storage.close();
  }
}

/** The worker loop drains `plan.purchases`; then the naive allocator runs at the same average table size. */
export async function measurePostgresAllocation(
  plan: PostgresAllocationPlan,
  progress: (line: string) => void,
): Promise<PostgresAllocationFigures> {
  const { adminUrl, purchases, batchSize } = plan;
  const worker = await withDatabase(adminUrl, async (db) => {
    progress(`postgres allocation: filling a queue with ${int(purchases)} purchases`);
    await fillQueue(db, 0, purchases);
    const run = await drainWithWorker(db, purchases, batchSize);
    await verify(db, purchases, 'worker loop');
    progress(
      `postgres allocation: worker loop (batches of ${batchSize}) allocated ${int(run.allocated)} in ` +
        `${run.seconds.toFixed(2)} s: ${int(run.allocated / run.seconds)}/s, ` +
        `${((run.cpuSeconds / run.allocated) * 1e6).toFixed(0)} µs CPU each in the worker's process, ` +
        `${((run.serverCpuSeconds / run.allocated) * 1e6).toFixed(0)} µs in PostgreSQL`,
    );
    return run;
  });
  const half = Math.floor(purchases / 2);
  const naive = await withDatabase(adminUrl, async (db) => {
    progress(`postgres allocation: preparing the naive allocator's database: ${int(half)} allocated first`);
    await fillQueue(db, 0, half);
    await drainWithWorker(db, half, batchSize);
    await fillQueue(db, half, plan.naivePurchases);
    const run = await runNaive(db, plan.naiveSeconds);
    await verify(db, half + run.allocated, 'naive allocator');
    progress(
      `postgres allocation: naive allocator (one transaction per purchase) allocated ${int(run.allocated)} ` +
        `in ${run.seconds.toFixed(2)} s: ${int(run.allocated / run.seconds)}/s`,
    );
    return run;
  });
  const ceiling = await withDatabase(adminUrl, async (db) => {
    progress(`postgres allocation: the storage's ceiling: filling a queue with ${int(purchases)} purchases`);
    await fillQueue(db, 0, purchases);
    const run = await postgresCeiling(db.url, db.eventId, db.ticketTypeId);
    await verify(db, purchases, 'storage ceiling');
    progress(`postgres allocation: ${describeCeiling(run)} in PostgreSQL`);
    return run;
  });
  return {
    allocPerSec: worker.allocated / worker.seconds,
    naivePerSec: naive.allocated / naive.seconds,
    ceilingPerSec: ceiling.allocated / ceiling.seconds,
    workerCpuUsPerPurchase: (worker.cpuSeconds / worker.allocated) * 1e6,
    serverCpuUsPerPurchase: (worker.serverCpuSeconds / worker.allocated) * 1e6,
    ceilingCpuUsPerPurchase: (ceiling.cpuSeconds / ceiling.allocated) * 1e6,
  };
}
