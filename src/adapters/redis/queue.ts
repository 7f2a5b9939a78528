import { Redis, type RedisOptions } from 'ioredis';
import { UnavailableError } from '../../domain/errors.js';
import { canonicalBuyerId, withCanonicalBuyerId } from '../../domain/buyer.js';
import type { AcceptedPurchase } from '../../domain/types.js';
import { executionOrderOf, type ExecutionOrder } from './execution-order.js';
import type { ClaimedBatch, DeadLetter, EnqueueRequest, EnqueueResult, Queue } from '../../ports/queue.js';
import { ACK, CLAIM, DEAD_LETTER, DEPTH, DEPTH_OF, ENQUEUE, REKEY, RELEASE, REPLAY } from './scripts.js';

/** Consumer group of every event stream. */
const GROUP = 'onsale';
/** api.md keeps Idempotency-Keys at least 24 hours; twice that leaves room for clocks and late retries. */
const IDEMPOTENCY_TTL_SECONDS = 48 * 3600;
const DEFAULT_PREFIX = 'onsale';

/**
 * While Redis is down, a request must get its 503 at once, not wait for a reconnection: commands are not
 * queued offline, and those in flight when the connection drops fail right away (maxRetriesPerRequest 0,
 * no resend: a resent enqueue could run twice). A command that gets no answer (Redis stopped, a network
 * partition) fails after COMMAND_TIMEOUT_MS. The client reconnects by itself, every RECONNECT_MAX_MS at most.
 * An enqueue that failed this way may still have run: its buyer got a 503, never a 202, and a retry with the
 * same Idempotency-Key finds the purchase; a 202 is only ever sent for a write Redis confirmed.
 */
const COMMAND_TIMEOUT_MS = 2_000;
const CONNECT_TIMEOUT_MS = 2_000;
const RECONNECT_MAX_MS = 500;
/** While a connection is being made (at start, or a reconnection under way), a command waits this long. */
const READY_WAIT_MS = 1_000;
/** migrate() runs once at start, where waiting for Redis a little longer beats a crash and a restart. */
const MIGRATE_WAIT_MS = 10_000;

/** Replies that mean "Redis cannot serve now", not "this request is wrong": the caller retries later. */
const TRANSIENT_REPLY = /^(LOADING|BUSY|MISCONF|READONLY|TRYAGAIN|MASTERDOWN|OOM|NOREPLICAS|CLUSTERDOWN)\b/;

const SCRIPTS = {
  onsaleEnqueue: ENQUEUE,
  onsaleClaim: CLAIM,
  onsaleAck: ACK,
  onsaleRelease: RELEASE,
  onsaleDeadLetter: DEAD_LETTER,
  onsaleReplay: REPLAY,
  onsaleDepth: DEPTH,
  onsaleDepthOf: DEPTH_OF,
  onsaleRekey: REKEY,
} as const;
type ScriptName = keyof typeof SCRIPTS;
type ScriptCall = (...args: Array<string | number>) => Promise<unknown>;

/**
 * `redis://host:port/db?prefix=name` to ioredis's URL (without `prefix`) and the key prefix. Any prefix
 * works as a key (Redis keys are binary-safe); an empty one means the default, so that a setting left blank
 * never puts keys at the top level of the database.
 */
function parseRedisUrl(url: string): { url: string; prefix: string } {
  const parsed = new URL(url);
  const prefix = parsed.searchParams.get('prefix') || DEFAULT_PREFIX;
  parsed.searchParams.delete('prefix');
  return { url: parsed.toString(), prefix };
}

/** The purchase as it travels in a stream entry and in the find() hash. */
function encode(p: AcceptedPurchase): string {
  return JSON.stringify({
    purchaseId: p.purchaseId,
    eventId: p.eventId,
    buyerId: p.buyerId,
    canonicalBuyerId: p.canonicalBuyerId,
    items: p.items.map((i) => ({ ticketTypeId: i.ticketTypeId, quantity: i.quantity })),
    acceptedAt: p.acceptedAt,
  });
}

function decode(json: string): AcceptedPurchase {
  return withCanonicalBuyerId(JSON.parse(json) as AcceptedPurchase);
}

/** The purchase in a stream entry's fields (field `p`). */
function purchaseIn(fields: Map<string, string>): AcceptedPurchase {
  const json = fields.get('p');
  if (json === undefined)
    throw new Error(`a queue entry has no purchase (fields: ${[...fields.keys()].join(', ')})`);
  return decode(json);
}

type StreamEntry = [id: string, fields: string[]];

function fieldsOf(fields: readonly string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i]!, fields[i + 1]!);
  return map;
}

/**
 * The Redis Streams queue (`redis://` or `rediss://`), a thin layer over Redis's own primitives: one
 * stream per event keeps acceptance order, a consumer group tracks what is delivered and not acked, a
 * per-event lease keeps one worker per event, and Lua scripts make each operation atomic (scripts.ts).
 *
 * Durability: a 202 is only as durable as Redis makes the write. Production Redis must run with
 * `appendonly yes` and `appendfsync always`: Redis then fsyncs the AOF before it replies, so an enqueue that
 * resolved survives a crash of Redis or of its machine. With `appendfsync everysec` a crash of the machine
 * can lose the last second of 202s. (Redis 7.0 has no WAITAOF to check this per write.) Single instance
 * only: see the note on Redis Cluster in scripts.ts.
 */
export class RedisQueue implements Queue {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #order: ExecutionOrder;
  readonly #waits = new Map<'ready' | 'close', Promise<'ready' | 'close'>>();

  constructor(url: string) {
    const { url: redisUrl, prefix } = parseRedisUrl(url);
    this.#prefix = prefix;
    this.#order = executionOrderOf(`${redisUrl} ${prefix}`);
    const options: RedisOptions = {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: COMMAND_TIMEOUT_MS,
      connectTimeout: CONNECT_TIMEOUT_MS,
      retryStrategy: (times) => Math.min(50 * times, RECONNECT_MAX_MS),
      scripts: Object.fromEntries(
        Object.entries(SCRIPTS).map(([name, lua]) => [name, { lua, numberOfKeys: 0 }]),
      ),
    };
    this.#redis = new Redis(redisUrl, options);
    // Failures reach callers through their commands (as UnavailableError); without a listener ioredis would
    // print every failed reconnection attempt.
    this.#redis.on('error', () => undefined);
  }

  async migrate(): Promise<void> {
    // No schema: streams and their consumer groups are made by the first enqueue of each event.
    await this.#ready(MIGRATE_WAIT_MS, true);
    await this.#guard(() => this.#redis.ping());
    await this.#rekeyIdempotency();
  }

  /**
   * Once per Redis: the Idempotency-Keys stored before buyer identity are keyed by the buyer id as typed;
   * they move to the canonical id, so that a retry (any spelling) finds its purchase instead of making a
   * second one. As the SQL queues' migrations do, the request hash stays as stored: a retry whose body
   * hashes differently now (another spelling) gets a 409 conflict, never a second purchase.
   */
  async #rekeyIdempotency(): Promise<void> {
    const done = `${this.#prefix}:idem-canonical`;
    if ((await this.#guard(() => this.#redis.exists(done))) === 1) return;
    const head = `${this.#prefix}:idem:`;
    const pattern = `${head.replace(/[*?[\]\\]/g, (c) => `\\${c}`)}*`;
    const moves: Array<{ from: string; to: string; ttl: number }> = [];
    let cursor = '0';
    do {
      const [next, keys] = await this.#guard(() => this.#redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000));
      cursor = next;
      for (const key of keys) {
        const suffix = key.slice(head.length);
        let parts: unknown;
        try {
          parts = JSON.parse(suffix);
        } catch {
          continue;
        }
        if (!Array.isArray(parts) || parts.length !== 3 || !parts.every((x) => typeof x === 'string'))
          continue;
        const [eventId, buyerId, idempotencyKey] = parts as [string, string, string];
        const canonical = canonicalBuyerId(buyerId);
        if (canonical !== buyerId)
          moves.push({ from: suffix, to: JSON.stringify([eventId, canonical, idempotencyKey]), ttl: 0 });
      }
    } while (cursor !== '0');
    if (moves.length > 0) {
      const ttls = await this.#guard(() => {
        const pipeline = this.#redis.pipeline();
        for (const m of moves) pipeline.pttl(`${head}${m.from}`);
        return pipeline.exec();
      });
      moves.forEach((m, i) => (m.ttl = Number(ttls?.[i]?.[1] ?? 0)));
      // The oldest first (the least time left): it keeps a key two spellings shared.
      moves.sort((a, b) => a.ttl - b.ttl);
      for (let i = 0; i < moves.length; i += 500) {
        await this.#script(
          'onsaleRekey',
          moves.slice(i, i + 500).flatMap((m) => [m.from, m.to]),
        );
      }
    }
    await this.#guard(() => this.#redis.set(done, '1'));
  }

  async enqueue(requests: readonly EnqueueRequest[]): Promise<EnqueueResult[]> {
    if (requests.length === 0) return [];
    const args: string[] = [String(IDEMPOTENCY_TTL_SECONDS)];
    for (const { purchase: p, idempotency } of requests) {
      args.push(
        p.eventId,
        p.purchaseId,
        encode(p),
        idempotency ? JSON.stringify([p.eventId, p.canonicalBuyerId, idempotency.key]) : '',
        idempotency?.requestHash ?? '',
      );
    }
    const slot = this.#order.sent();
    let reply: [stamp: number, results: string[]];
    try {
      reply = (await this.#script('onsaleEnqueue', args)) as [number, string[]];
    } catch (error) {
      this.#order.failed(slot);
      throw error;
    }
    const [stamp, replies] = reply;
    await this.#order.answered(slot, stamp);
    return replies.map((reply, i): EnqueueResult => {
      if (reply === 'a') return { status: 'accepted', purchaseId: requests[i]!.purchase.purchaseId };
      if (reply === 'c') return { status: 'conflict' };
      return { status: 'duplicate', purchaseId: reply.slice(1) };
    });
  }

  async claim(workerId: string, max: number, leaseMs: number): Promise<ClaimedBatch | null> {
    const reply = (await this.#script('onsaleClaim', [workerId, max, Math.max(1, Math.round(leaseMs))])) as
      [string, number, ...string[]] | null;
    if (!reply) return null;
    const [eventId, deliveries, ...entries] = reply;
    const purchases: AcceptedPurchase[] = [];
    const receipts: string[] = [];
    for (let i = 0; i + 1 < entries.length; i += 2) {
      receipts.push(entries[i]!);
      purchases.push(decode(entries[i + 1]!));
    }
    return { eventId, purchases, receipts, deliveries, lease: workerId };
  }

  async ack(batch: ClaimedBatch): Promise<void> {
    if (batch.receipts.length === 0) return;
    await this.#script('onsaleAck', [
      batch.eventId,
      batch.receipts.length,
      ...batch.receipts.map(String),
      ...batch.purchases.map((p) => p.purchaseId),
    ]);
  }

  async release(batch: ClaimedBatch): Promise<void> {
    await this.#script('onsaleRelease', [batch.eventId, String(batch.lease)]);
  }

  async deadLetter(batch: ClaimedBatch, reason: string): Promise<void> {
    if (batch.receipts.length === 0) return;
    await this.#script('onsaleDeadLetter', [
      batch.eventId,
      reason,
      new Date().toISOString(),
      ...this.#entries(batch),
    ]);
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    const entries = (await this.#guard(() =>
      this.#redis.xrange(`${this.#prefix}:dead`, '-', '+', 'COUNT', limit),
    )) as StreamEntry[];
    return entries.map(([, raw]) => {
      const fields = fieldsOf(raw);
      return {
        purchase: purchaseIn(fields),
        reason: fields.get('r') ?? '',
        deadAt: fields.get('t') ?? '',
      };
    });
  }

  async replayDeadLetters(purchaseIds?: readonly string[]): Promise<number> {
    if (purchaseIds?.length === 0) return 0;
    return (await this.#script('onsaleReplay', [...(purchaseIds ?? [])])) as number;
  }

  async find(purchaseId: string): Promise<AcceptedPurchase | null> {
    const json = await this.#guard(() => this.#redis.hget(`${this.#prefix}:purchases`, purchaseId));
    return json === null ? null : decode(json);
  }

  async depth(): Promise<{ depth: number; oldestAcceptedAt: string | null }> {
    const [depth, oldest] = (await this.#script('onsaleDepth', [])) as [number, string | null];
    return { depth, oldestAcceptedAt: oldest === null ? null : decode(oldest).acceptedAt };
  }

  async depthOf(eventId: string): Promise<{ queued: number; deadLetters: number }> {
    const [queued, deadLetters] = (await this.#script('onsaleDepthOf', [eventId])) as [number, number];
    return { queued, deadLetters };
  }

  async ping(): Promise<void> {
    await this.#guard(() => this.#redis.ping());
  }

  async close(): Promise<void> {
    if (this.#redis.status === 'ready') {
      await this.#redis.quit().catch(() => undefined);
    }
    this.#redis.disconnect();
  }

  /** A batch's entries as the scripts take them: entry id, purchaseId, … */
  #entries(batch: ClaimedBatch): string[] {
    return batch.receipts.flatMap((id, i) => [String(id), batch.purchases[i]!.purchaseId]);
  }

  #script(name: ScriptName, args: Array<string | number>): Promise<unknown> {
    return this.#guard(() => {
      const call = (this.#redis as unknown as Record<ScriptName, ScriptCall>)[name];
      return call.call(this.#redis, this.#prefix, GROUP, ...args);
    });
  }

  /**
   * Runs a command once the connection is ready, turning "Redis does not answer" into UnavailableError:
   * the web server answers 503 with Retry-After, the worker retries without dead-lettering anything.
   */
  async #guard<T>(command: () => Promise<T>): Promise<T> {
    await this.#ready(READY_WAIT_MS, false);
    try {
      return await command();
    } catch (error) {
      throw toUnavailable(error);
    }
  }

  /**
   * Waits for the connection when one is being made. A command fails at once when the last attempt failed
   * (Redis is down) and as soon as the attempt under way fails: a crowd retrying against a dead Redis gets
   * its 503 in milliseconds. migrate() (`patient`) waits through failed attempts until `waitMs`.
   */
  async #ready(waitMs: number, patient: boolean): Promise<void> {
    const status = this.#redis.status;
    if (status === 'ready') return;
    if (status === 'end') throw new UnavailableError('the Redis queue connection is closed');
    if (!patient && (status === 'reconnecting' || status === 'close')) {
      throw new UnavailableError(`the Redis queue is not reachable (${status})`);
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), waitMs);
    });
    try {
      const outcome = await Promise.race([
        this.#next('ready'),
        timeout,
        ...(patient ? [] : [this.#next('close')]),
      ]);
      if (outcome === 'timeout')
        throw new UnavailableError(`the Redis queue did not answer within ${waitMs} ms`);
      if (outcome === 'close')
        throw new UnavailableError('the Redis queue is not reachable (connection failed)');
    } finally {
      clearTimeout(timer);
    }
  }

  /** The next time the connection emits `event`; one listener however many callers wait. */
  #next<E extends 'ready' | 'close'>(event: E): Promise<E> {
    let waiting = this.#waits.get(event) as Promise<E> | undefined;
    if (!waiting) {
      waiting = new Promise<E>((resolve) => {
        this.#redis.once(event, () => {
          this.#waits.delete(event);
          resolve(event);
        });
      });
      this.#waits.set(event, waiting);
    }
    return waiting;
  }
}

/** ioredis's failures: a reply error is Redis refusing this command (a bug, unless transient); any other
 * error (connection closed or refused, timeout, retries exhausted) means Redis is not reachable. */
function toUnavailable(error: unknown): unknown {
  if (error instanceof UnavailableError) return error;
  if (!(error instanceof Error)) return error;
  if (error.name === 'ReplyError' && !TRANSIENT_REPLY.test(error.message)) return error;
  return new UnavailableError(`the Redis queue is not available (${error.message})`, error);
}
