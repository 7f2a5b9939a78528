import type { Statement } from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { UnavailableError } from '../../domain/errors.js';
import type { EnqueueRequest, EnqueueResult } from '../../ports/queue.js';
import { prepareAll, withoutBlockingOnLock, type SqliteDatabase } from './database.js';
import { KEY_SQL } from './queue-records.js';

/** The statements that add to the queue (enqueue here; replaying dead letters in queue.ts). */
export const ENQUEUE_SQL = {
  insert:
    'INSERT INTO queue_purchases (purchase_id, event_id, buyer_id, items, accepted_at) VALUES (?, ?, ?, ?, ?)',
  addPending:
    'INSERT INTO queue_events (event_id, pending) VALUES (?, ?) ON CONFLICT (event_id) DO UPDATE SET pending = pending + excluded.pending',
} as const;

const SQL = { ...KEY_SQL, ...ENQUEUE_SQL } as const;

/** Something that writes a group commit of purchases durably: on this thread, or in the writer thread. */
export interface EnqueueWriter {
  write(requests: readonly EnqueueRequest[]): Promise<EnqueueResult[]>;
  close(): Promise<void>;
}

/** The enqueue transaction (Queue.enqueue) on one connection: one commit, one fsync, for the whole group. */
export class QueueWriter implements EnqueueWriter {
  readonly #db: SqliteDatabase;
  readonly #write: (requests: readonly EnqueueRequest[]) => EnqueueResult[];

  constructor(db: SqliteDatabase) {
    this.#db = db;
    const s: Record<keyof typeof SQL, Statement> = prepareAll(db, SQL);
    this.#write = db.transaction((requests: readonly EnqueueRequest[]): EnqueueResult[] => {
      const now = new Date().toISOString();
      const perEvent = new Map<string, number>();
      const results = requests.map(({ purchase: p, idempotency }): EnqueueResult => {
        if (idempotency) {
          const seen = s.findKey.get(p.eventId, p.canonicalBuyerId, idempotency.key) as
            { request_hash: string; purchase_id: string } | undefined;
          if (seen) {
            return seen.request_hash === idempotency.requestHash
              ? { status: 'duplicate', purchaseId: seen.purchase_id }
              : { status: 'conflict' };
          }
          s.insertKey.run(
            p.eventId,
            p.canonicalBuyerId,
            idempotency.key,
            idempotency.requestHash,
            p.purchaseId,
            now,
          );
        }
        s.insert.run(p.purchaseId, p.eventId, p.buyerId, JSON.stringify(p.items), p.acceptedAt);
        perEvent.set(p.eventId, (perEvent.get(p.eventId) ?? 0) + 1);
        return { status: 'accepted', purchaseId: p.purchaseId };
      });
      for (const [eventId, count] of perEvent) s.addPending.run(eventId, count);
      return results;
    }).immediate;
  }

  write(requests: readonly EnqueueRequest[]): Promise<EnqueueResult[]> {
    // Waits for another connection's commit without blocking this thread's event loop.
    return withoutBlockingOnLock(this.#db, () => this.#write(requests));
  }

  /** The connection is its owner's to close. */
  async close(): Promise<void> {}
}

/** A message to the writer thread, and its answer. */
export interface WriteMessage {
  id: number;
  requests: readonly EnqueueRequest[];
}
export type WriteAnswer =
  | { id: number; results: EnqueueResult[] }
  | { id: number; error: { message: string; code?: string; unavailable: boolean } };

/** The thread's answer to a failed write: whether it is unavailability (503), and what SQLite said. */
export function describeFailure(error: unknown): { message: string; code?: string; unavailable: boolean } {
  const cause = error instanceof UnavailableError ? (error.cause as { code?: unknown } | undefined) : error;
  const code = (cause as { code?: unknown } | undefined)?.code;
  return {
    message: error instanceof Error ? error.message : String(error),
    ...(typeof code === 'string' ? { code } : {}),
    unavailable: error instanceof UnavailableError,
  };
}

/**
 * The compiled thread script. Run from the sources (the test suite imports src/), the thread still needs
 * JavaScript: the build's copy in dist/.
 */
function threadScript(): URL {
  const here = new URL('./queue-writer-thread.js', import.meta.url);
  if (existsSync(here)) return here;
  return new URL(here.href.replace(/\/src\/adapters\/sqlite\//, '/dist/adapters/sqlite/'));
}

/**
 * Writes through a worker thread that owns its own connection to the queue's file. better-sqlite3 commits
 * (and fsyncs) synchronously: on the web server's event loop, no request is read or answered meanwhile. In
 * the thread, the event loop keeps parsing requests, which gather for the next group commit. A write
 * resolves only once the thread has committed it: a 202 still means durable.
 */
export class ThreadedWriter implements EnqueueWriter {
  readonly #url: string;
  #thread: Worker | null = null;
  #nextId = 1;
  readonly #waiting = new Map<
    number,
    { resolve: (r: EnqueueResult[]) => void; reject: (e: unknown) => void }
  >();

  constructor(url: string) {
    this.#url = url;
  }

  write(requests: readonly EnqueueRequest[]): Promise<EnqueueResult[]> {
    const thread = this.#start();
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      // An idle thread does not keep the process alive; one with a write to answer does.
      if (this.#waiting.size === 1) thread.ref();
      thread.postMessage({ id, requests } satisfies WriteMessage);
    });
  }

  async close(): Promise<void> {
    const thread = this.#thread;
    this.#thread = null;
    if (thread) await thread.terminate();
    this.#failAll(new UnavailableError('the SQLite queue was closed'));
  }

  #start(): Worker {
    if (this.#thread) return this.#thread;
    const thread = new Worker(threadScript(), { workerData: { url: this.#url } });
    thread.unref();
    thread.on('message', (answer: WriteAnswer) => {
      const waiting = this.#waiting.get(answer.id);
      if (!waiting) return;
      this.#waiting.delete(answer.id);
      if (this.#waiting.size === 0) thread.unref();
      if ('results' in answer) return waiting.resolve(answer.results);
      const { message, code, unavailable } = answer.error;
      waiting.reject(unavailable ? new UnavailableError(message, { code }) : new Error(message));
    });
    // The thread died (it should not): what it had not answered was not acknowledged, so a 503 is true;
    // the next write starts a new thread.
    const died = (error: unknown) => {
      if (this.#thread !== thread) return;
      this.#thread = null;
      this.#failAll(new UnavailableError('the SQLite queue writer stopped', error));
    };
    thread.on('error', died);
    thread.on('exit', (code) => died({ code: `thread exit ${code}` }));
    this.#thread = thread;
    return thread;
  }

  #failAll(error: unknown): void {
    for (const { reject } of this.#waiting.values()) reject(error);
    this.#waiting.clear();
  }
}
