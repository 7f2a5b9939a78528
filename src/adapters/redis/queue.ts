import { Cluster, type Redis } from 'ioredis';
import { canonicalBuyerId, withCanonicalBuyerId } from '../../domain/buyer.js';
import type { AcceptedPurchase } from '../../domain/types.js';
import { executionOrderOf } from './execution-order.js';
import type { ClaimedBatch, DeadLetter, EnqueueRequest, EnqueueResult, Queue } from '../../ports/queue.js';
import { ACK, CLAIM, DEAD_LETTER, ENQUEUE, RELEASE, REPLAY, STATE } from './scripts.js';
import { parseRedisUrl, type RedisTarget } from './url.js';
import {
  closeRedis,
  connectRedis,
  groupByEvent,
  hashTagOf,
  RedisGuard,
  type RedisClient,
} from './connection.js';
import { groupBy } from '../../shared/group-by.js';

/** Consumer group of every event stream. */
const GROUP = 'onsale';
/** api.md keeps Idempotency-Keys at least 24 hours; twice that leaves room for clocks and late retries. */
const IDEMPOTENCY_TTL_SECONDS = 48 * 3600;

/** migrate() runs once at start, where waiting for Redis a little longer beats a crash and a restart. */
const MIGRATE_WAIT_MS = 10_000;
/** Events a claim looks at per read of P:ready. */
const CLAIM_PAGE = 100;
/**
 * An idle worker looks for events with queued purchases that P:ready does not list (a writer died between
 * its script and the listing) at most this often; see #sweep.
 */
const SWEEP_EVERY_MS = 60_000;

const SCRIPTS = {
  onsaleEnqueue: ENQUEUE,
  onsaleClaim: CLAIM,
  onsaleAck: ACK,
  onsaleRelease: RELEASE,
  onsaleDeadLetter: DEAD_LETTER,
  onsaleReplay: REPLAY,
  onsaleState: STATE,
} as const;
type ScriptName = keyof typeof SCRIPTS;
type ScriptCall = (...args: Array<string | number>) => Promise<unknown>;

let lastSeq = 0;

/**
 * Seqs for `n` purchases, in order: microseconds of this process's clock, never repeated or going back in
 * this process. They only order events among themselves in P:ready (which event's head waited longest), so
 * the clocks of different machines need not agree exactly; one event's order is its stream's. No counter in
 * Redis: that would be one more round trip, to a key of its own slot, before every write.
 */
function nextSeqs(n: number): number {
  const first = Math.max(lastSeq + 1, Date.now() * 1000);
  lastSeq = first + n - 1;
  return first;
}

/** The key names of the queue under one prefix (scripts.ts lists them). */
class Keys {
  readonly ready: string;
  readonly where: string;
  readonly deadEvents: string;
  constructor(readonly prefix: string) {
    this.ready = `${prefix}:ready`;
    this.where = `${prefix}:where`;
    this.deadEvents = `${prefix}:dead:events`;
  }
  of(eventId: string) {
    const base = `${this.prefix}:{${hashTagOf(eventId)}}`;
    return {
      stream: `${base}:q`,
      lease: `${base}:lease`,
      head: `${base}:head`,
      purchases: `${base}:p`,
      runs: `${base}:n`,
      dead: `${base}:dead`,
      deadIndex: `${base}:deadidx`,
      idem: (json: string) => `${base}:idem:${json}`,
    };
  }
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

type StreamEntry = [id: string, fields: string[]];

function fieldsOf(fields: readonly string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i]!, fields[i + 1]!);
  return map;
}

/** Stream ids `<ms>-<n>` in order. */
function compareStreamIds(a: string, b: string): number {
  const [am, an] = a.split('-').map(Number) as [number, number];
  const [bm, bn] = b.split('-').map(Number) as [number, number];
  return am - bm || an - bn;
}

/** One event's state as the STATE script reads it. */
interface EventState {
  queued: number;
  deadLetters: number;
  head: number;
  headJson: string | null;
}

/**
 * The Redis Streams queue (`redis://` or `rediss://`, one server or Redis Cluster: see url.ts), a thin layer
 * over Redis's own primitives: one stream per event keeps acceptance order, a consumer group tracks what is
 * delivered and not acked, a per-event lease keeps one worker per event, and Lua scripts make each
 * operation on one event atomic (scripts.ts).
 *
 * What spans events (P:ready, P:where, P:dead:events) is in keys no script touches, so that no
 * script needs two cluster slots. They are kept by two rules that make every step safe to repeat and a
 * crash between two steps harmless:
 * - Listed before, or right after, the work exists; a listing may outlive its work (a reader that finds an
 *   event empty just skips it), but work is never left unlisted for long. enqueue lists the event after its
 *   script (and again on every later enqueue of the event, and a retried Idempotency-Key lists it again);
 *   dead-lettering lists the event among P:dead:events before its script. A writer that dies between its
 *   script and the listing leaves work unlisted until the next enqueue of that event or an idle worker's
 *   sweep (#sweep), at most a minute later.
 * - Unlisted only by "remove, then look, then list again if there is work" (#unlist): a writer that wrote
 *   after the look lists the event itself afterwards, and one that wrote before it is seen by the look.
 *
 * Durability: a 202 is only as durable as Redis makes the write. Production Redis must run with
 * `appendonly yes` and `appendfsync always`: Redis then fsyncs the AOF before it replies, so an enqueue that
 * resolved survives a crash of Redis or of its machine. With `appendfsync everysec` a crash of the machine
 * can lose the last second of 202s. (Redis 7.0 has no WAITAOF to check this per write.) On Redis Cluster the
 * same holds per master; a replica promoted after its master died may lack the master's last writes, as
 * Redis replication is asynchronous (see docs/redis.md).
 */
export class RedisQueue implements Queue {
  readonly #redis: RedisClient;
  readonly #guard: RedisGuard;
  readonly #target: RedisTarget;
  readonly #keys: Keys;
  readonly #queueName: string;
  readonly #sweepEveryMs: number;
  #lastSweep = Date.now();

  /** `sweepEveryMs`: how often an idle claim sweeps (SWEEP_EVERY_MS; the tests make it sweep at once). */
  constructor(url: string, { sweepEveryMs = SWEEP_EVERY_MS }: { sweepEveryMs?: number } = {}) {
    this.#sweepEveryMs = sweepEveryMs;
    this.#target = parseRedisUrl(url);
    this.#keys = new Keys(this.#target.prefix);
    this.#queueName = this.#target.cluster
      ? `cluster ${this.#target.nodes.map((n) => `${n.host}:${n.port}`).join(',')} ${this.#target.prefix}`
      : `${this.#target.url} ${this.#target.prefix}`;
    this.#redis = connectRedis(this.#target, SCRIPTS);
    this.#guard = new RedisGuard(this.#redis, 'the Redis queue');
  }

  async migrate(): Promise<void> {
    // No schema: streams and their consumer groups are made by the first enqueue of each event.
    await this.#guard.ready(MIGRATE_WAIT_MS, true);
    await this.#guard.run(() => this.#redis.ping());
    if (!this.#target.cluster) await this.#upgradeSingleServerLayout();
  }

  async enqueue(requests: readonly EnqueueRequest[]): Promise<EnqueueResult[]> {
    if (requests.length === 0) return [];
    const keys = this.#keys;
    const firstSeq = nextSeqs(requests.length);
    // find()'s index, beside the scripts: a purchase whose entry is missing was never answered 202 (this
    // enqueue fails), and a retry with its Idempotency-Key writes the entry (below).
    const whereWritten = this.#guard.run(() =>
      this.#redis.hset(keys.where, ...requests.flatMap(({ purchase: p }) => [p.purchaseId, p.eventId])),
    );
    whereWritten.catch(() => undefined); // awaited below
    const groups = [...groupByEvent(requests, (r) => r.purchase.eventId)];
    const outcomes = await Promise.allSettled(
      groups.map(async ([eventId, indexes]) => {
        const event = keys.of(eventId);
        const scriptKeys = [event.stream, event.purchases, event.runs];
        const args: Array<string | number> = [IDEMPOTENCY_TTL_SECONDS];
        for (const i of indexes) {
          const { purchase: p, idempotency } = requests[i]!;
          let keyIndex = 0;
          if (idempotency) {
            scriptKeys.push(event.idem(JSON.stringify([p.eventId, p.canonicalBuyerId, idempotency.key])));
            keyIndex = scriptKeys.length;
          }
          args.push(p.purchaseId, encode(p), firstSeq + i, keyIndex, idempotency?.requestHash ?? '');
        }
        const order = executionOrderOf(`${this.#queueName} ${eventId}`);
        const slot = order.sent();
        try {
          const [stamp, replies, head] = (await this.#script('onsaleEnqueue', scriptKeys, args)) as [
            number,
            string[],
            number,
          ];
          return { eventId, indexes, order, slot, stamp, replies, head };
        } catch (error) {
          order.failed(slot);
          throw error;
        }
      }),
    );
    const written = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    // Listed after the scripts (one ZADD for all the batch's events), so that a concurrent #unlist that
    // looked before them cannot hide them; and before the writes count as answered, so that they still
    // resolve in the order Redis ran them. Answered even if the listing failed: a slot left unanswered would
    // hold back every later write of its event for ever.
    const heads = written.filter((w) => w.head >= 0).flatMap((w) => [String(w.head), w.eventId]);
    let listing: { error: unknown } | null = null;
    if (heads.length > 0) {
      await this.#guard
        .run(() => this.#redis.zadd(keys.ready, 'GT', ...heads))
        .catch((error: unknown) => {
          listing = { error };
        });
    }
    const where = await whereWritten.then(
      () => null,
      (error: unknown) => ({ error }),
    );
    // Nothing is awaited after this but the release: writes resolve in the order Redis ran them.
    await Promise.all(written.map((w) => w.order.answered(w.slot, w.stamp)));
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failed) throw failed.reason;
    if (listing) throw (listing as { error: unknown }).error;
    if (where) throw where.error;

    const results: EnqueueResult[] = new Array(requests.length);
    for (const { indexes, replies } of written) {
      replies.forEach((reply, j) => {
        const i = indexes[j]!;
        if (reply === 'a') results[i] = { status: 'accepted', purchaseId: requests[i]!.purchase.purchaseId };
        else if (reply === 'c') results[i] = { status: 'conflict' };
        else results[i] = { status: 'duplicate', purchaseId: reply.slice(1) };
      });
    }
    // The ids of duplicates and conflicts were never used: out of find()'s index (a leftover is harmless);
    // the purchase a duplicate names is put (back) in, in case its own enqueue failed after its script.
    const unused = requests
      .filter((_, i) => results[i]!.status !== 'accepted')
      .map((r) => r.purchase.purchaseId);
    if (unused.length > 0) {
      const named = requests.flatMap((r, i) => {
        const result = results[i]!;
        return result.status === 'duplicate' ? [result.purchaseId, r.purchase.eventId] : [];
      });
      // Not awaited (see above); a failure only leaves an entry behind.
      void Promise.all([
        this.#guard.run(() => this.#redis.hdel(keys.where, ...unused)),
        named.length > 0 ? this.#guard.run(() => this.#redis.hset(keys.where, ...named)) : null,
      ]).catch(() => undefined);
    }
    return results;
  }

  async claim(workerId: string, max: number, leaseMs: number): Promise<ClaimedBatch | null> {
    const lease = Math.max(1, Math.round(leaseMs));
    let offset = 0;
    for (;;) {
      const events = await this.#guard.run(() =>
        this.#redis.zrange(this.#keys.ready, String(offset), String(offset + CLAIM_PAGE - 1)),
      );
      if (events.length === 0) break;
      let unlisted = 0;
      for (const eventId of events) {
        const event = this.#keys.of(eventId);
        const reply = (await this.#script(
          'onsaleClaim',
          [event.stream, event.lease, event.head],
          [workerId, max, lease],
        )) as 0 | 1 | [number, ...string[]];
        if (reply === 0) continue;
        if (reply === 1) {
          await this.#unlist(eventId);
          unlisted += 1;
          continue;
        }
        const [deliveries, ...entries] = reply;
        const purchases: AcceptedPurchase[] = [];
        const receipts: string[] = [];
        for (let i = 0; i + 1 < entries.length; i += 2) {
          receipts.push(entries[i]!);
          purchases.push(decode(entries[i + 1]!));
        }
        return { eventId, purchases, receipts, deliveries, lease: workerId };
      }
      offset += events.length - unlisted;
    }
    if (Date.now() - this.#lastSweep >= this.#sweepEveryMs) {
      this.#lastSweep = Date.now();
      await this.#sweep();
    }
    return null;
  }

  async ack(batch: ClaimedBatch): Promise<void> {
    if (batch.receipts.length === 0) return;
    const event = this.#keys.of(batch.eventId);
    const ids = batch.purchases.map((p) => p.purchaseId);
    const head = (await this.#script(
      'onsaleAck',
      [event.stream, event.purchases, event.head],
      [batch.receipts.length, ...batch.receipts.map(String), ...ids],
    )) as number;
    await Promise.all([
      this.#settled(batch.eventId, head),
      this.#guard.run(() => this.#redis.hdel(this.#keys.where, ...ids)),
    ]);
  }

  async release(batch: ClaimedBatch): Promise<void> {
    const event = this.#keys.of(batch.eventId);
    await this.#script('onsaleRelease', [event.lease], [String(batch.lease)]);
  }

  async deadLetter(batch: ClaimedBatch, reason: string): Promise<void> {
    if (batch.receipts.length === 0) return;
    const event = this.#keys.of(batch.eventId);
    // Listed first: dead letters are never left unlisted.
    await this.#guard.run(() => this.#redis.sadd(this.#keys.deadEvents, batch.eventId));
    const [, head] = (await this.#script(
      'onsaleDeadLetter',
      [event.stream, event.dead, event.deadIndex, event.head],
      [
        reason,
        new Date().toISOString(),
        ...batch.receipts.flatMap((id, i) => [String(id), batch.purchases[i]!.purchaseId]),
      ],
    )) as [number, number];
    await this.#settled(batch.eventId, head);
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    if (limit <= 0) return [];
    const events = await this.#guard.run(() => this.#redis.smembers(this.#keys.deadEvents));
    const lists = await Promise.all(
      events.map(async (eventId) => {
        const entries = (await this.#guard.run(() =>
          this.#redis.xrange(this.#keys.of(eventId).dead, '-', '+', 'COUNT', limit),
        )) as StreamEntry[];
        return entries;
      }),
    );
    return lists
      .flat()
      .sort((a, b) => compareStreamIds(a[0], b[0]))
      .slice(0, limit)
      .map(([, raw]) => {
        const fields = fieldsOf(raw);
        const json = fields.get('p');
        if (json === undefined) throw new Error('a dead letter has no purchase');
        return { purchase: decode(json), reason: fields.get('r') ?? '', deadAt: fields.get('t') ?? '' };
      });
  }

  async replayDeadLetters(purchaseIds?: readonly string[]): Promise<number> {
    if (purchaseIds?.length === 0) return 0;
    let named: Map<string, string[]> | null = null;
    let events: string[];
    if (purchaseIds) {
      const unique = [...new Set(purchaseIds)];
      const owners = await this.#guard.run(() => this.#redis.hmget(this.#keys.where, ...unique));
      const owner = new Map(unique.map((id, i) => [id, owners[i]]));
      named = groupBy(
        unique.filter((id) => owner.get(id)),
        (id) => owner.get(id)!,
      );
      events = [...named.keys()];
    } else {
      events = await this.#guard.run(() => this.#redis.smembers(this.#keys.deadEvents));
    }
    let replayed = 0;
    for (const eventId of events) {
      const event = this.#keys.of(eventId);
      const ids = named?.get(eventId) ?? [];
      const count = named ? ids.length : (await this.#state(eventId)).deadLetters;
      if (count === 0) {
        if (!named) await this.#unlistDead(eventId);
        continue;
      }
      const firstSeq = nextSeqs(count);
      const [n, head, left] = (await this.#script(
        'onsaleReplay',
        [event.stream, event.dead, event.deadIndex],
        [firstSeq, count, ...ids],
      )) as [number, number, number];
      replayed += n;
      if (head >= 0) await this.#list(eventId, head);
      if (left === 0) await this.#unlistDead(eventId);
    }
    return replayed;
  }

  async find(purchaseId: string): Promise<AcceptedPurchase | null> {
    const eventId = await this.#guard.run(() => this.#redis.hget(this.#keys.where, purchaseId));
    if (eventId === null) return null;
    const json = await this.#guard.run(() => this.#redis.hget(this.#keys.of(eventId).purchases, purchaseId));
    return json === null ? null : decode(json);
  }

  /** The sum over listed events (an event listed without work counts 0), and the head with the lowest seq. */
  async depth(): Promise<{ depth: number; oldestAcceptedAt: string | null }> {
    const events = await this.#guard.run(() => this.#redis.zrange(this.#keys.ready, '0', '-1'));
    const states = await Promise.all(events.map((eventId) => this.#state(eventId)));
    let depth = 0;
    let oldest: EventState | null = null;
    for (const state of states) {
      depth += state.queued;
      if (state.head >= 0 && (!oldest || state.head < oldest.head)) oldest = state;
    }
    return { depth, oldestAcceptedAt: oldest?.headJson ? decode(oldest.headJson).acceptedAt : null };
  }

  async depthOf(eventId: string): Promise<{ queued: number; deadLetters: number }> {
    const { queued, deadLetters } = await this.#state(eventId);
    return { queued, deadLetters };
  }

  async ping(): Promise<void> {
    await this.#guard.run(() => this.#redis.ping());
  }

  async close(): Promise<void> {
    await closeRedis(this.#redis);
  }

  async #state(eventId: string): Promise<EventState> {
    const event = this.#keys.of(eventId);
    const [queued, deadLetters, head, headJson] = (await this.#script(
      'onsaleState',
      [event.stream, event.dead],
      [],
    )) as [number, number, number, string | null];
    return { queued, deadLetters, head, headJson };
  }

  /** Lists the event in P:ready with its head's seq (GT: a head only moves on, so the highest seq is news). */
  async #list(eventId: string, head: number): Promise<void> {
    await this.#guard.run(() => this.#redis.zadd(this.#keys.ready, 'GT', head, eventId));
  }

  /** After a script that took entries out of the event's queue: its new head listed, or the event unlisted. */
  async #settled(eventId: string, head: number): Promise<void> {
    if (head >= 0) await this.#list(eventId, head);
    else await this.#unlist(eventId);
  }

  /** Remove, then look, then list again if there is work: see the class comment. */
  async #unlist(eventId: string): Promise<void> {
    await this.#guard.run(() => this.#redis.zrem(this.#keys.ready, eventId));
    const { head } = await this.#state(eventId);
    if (head >= 0) await this.#list(eventId, head);
  }

  async #unlistDead(eventId: string): Promise<void> {
    await this.#guard.run(() => this.#redis.srem(this.#keys.deadEvents, eventId));
    if ((await this.#state(eventId)).deadLetters > 0) {
      await this.#guard.run(() => this.#redis.sadd(this.#keys.deadEvents, eventId));
    }
  }

  /**
   * Lists every event whose stream exists, on every master (a SCAN of the prefix's streams): the repair for
   * a writer that died between its script and its listing. Cheap when idle, which is when it runs.
   */
  async #sweep(): Promise<void> {
    const pattern = `${globEscape(this.#keys.prefix)}:{*}:q`;
    const masters = this.#redis instanceof Cluster ? this.#redis.nodes('master') : [this.#redis];
    for (const node of masters) {
      let cursor = '0';
      do {
        const [next, found] = await this.#guard.run(() =>
          node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000, 'TYPE', 'stream'),
        );
        cursor = next;
        for (const key of found) {
          const eventId = eventOfStreamKey(this.#keys.prefix, key);
          if (eventId === null) continue;
          const { head } = await this.#state(eventId);
          if (head >= 0) await this.#list(eventId, head);
        }
      } while (cursor !== '0');
    }
  }

  /**
   * The key layout before Redis Cluster support kept cross-event keys (P:events, P:depth, P:purchases, P:dead)
   * that the scripts touched together. A drained queue of that layout is upgraded here: its idempotency keys
   * move to their event's slot (keeping their expiry), its empty structures are deleted. One with queued
   * purchases or dead letters is refused: drain it with the version that wrote it (docs/redis.md).
   */
  async #upgradeSingleServerLayout(): Promise<void> {
    const P = this.#keys.prefix;
    const redis = this.#redis as Redis;
    // P:depth was made by the old layout's first enqueue and never deleted: without it there is nothing to do
    // (and no SCAN of the whole database at every start).
    if ((await this.#guard.run(() => redis.exists(`${P}:depth`, `${P}:dead`))) === 0) return;
    const depth = Number((await this.#guard.run(() => redis.get(`${P}:depth`))) ?? '0');
    const oldDead = await this.#guard.run(() => redis.exists(`${P}:dead`));
    const oldDeadLetters = oldDead ? await this.#guard.run(() => redis.xlen(`${P}:dead`)) : 0;
    if (depth > 0 || oldDeadLetters > 0) {
      throw new Error(
        `the Redis queue "${P}" holds ${depth} queued purchases and ${oldDeadLetters} dead letters in the key ` +
          'layout of an earlier onsale version: drain it with that version (and replay or remove its dead letters) before upgrading',
      );
    }
    // Idempotency-Keys move to their event's slot. Keys written before buyer identity carry the buyer id as
    // typed: they move to the canonical id, so that a retry in any spelling finds its purchase instead of
    // making a second one. The request hash stays as stored (a retry whose body hashes differently gets 409).
    const moves: Array<{ from: string; eventId: string; to: string; ttl: number }> = [];
    let cursor = '0';
    do {
      const [next, found] = await this.#guard.run(() =>
        redis.scan(cursor, 'MATCH', `${globEscape(P)}:idem:*`, 'COUNT', 1000),
      );
      cursor = next;
      for (const key of found) {
        const parts = parseIdempotencyJson(key.slice(`${P}:idem:`.length));
        if (!parts) continue;
        const [eventId, buyerId, idempotencyKey] = parts;
        const to = JSON.stringify([eventId, canonicalBuyerId(buyerId), idempotencyKey]);
        moves.push({ from: key, eventId, to, ttl: 0 });
      }
    } while (cursor !== '0');
    const ttls = await Promise.all(moves.map((m) => this.#guard.run(() => redis.pttl(m.from))));
    moves.forEach((m, i) => (m.ttl = ttls[i]!));
    // The oldest first (the least time left): where two spellings of one buyer used one key, the first
    // purchase keeps it (NX).
    moves.sort((a, b) => a.ttl - b.ttl);
    for (const move of moves) {
      const value = await this.#guard.run(() => redis.get(move.from));
      if (value !== null && move.ttl > 0)
        await this.#guard.run(() =>
          redis.set(this.#keys.of(move.eventId).idem(move.to), value, 'PX', move.ttl, 'NX'),
        );
      await this.#guard.run(() => redis.del(move.from));
    }
    await this.#guard.run(() =>
      redis.del(
        `${P}:depth`,
        `${P}:events`,
        `${P}:purchases`,
        `${P}:dead`,
        `${P}:dead:index`,
        `${P}:dead:count`,
      ),
    );
  }

  #script(name: ScriptName, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown> {
    return this.#guard.run(() => {
      const call = (this.#redis as unknown as Record<ScriptName, ScriptCall>)[name];
      return call.call(this.#redis, keys.length, ...keys, GROUP, ...args);
    });
  }
}

/** `pattern` matching itself only, for SCAN's MATCH. */
function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/** The event id of a stream key `P:{T}:q`, or null if the key is not one. */
function eventOfStreamKey(prefix: string, key: string): string | null {
  const start = `${prefix}:{`;
  if (!key.startsWith(start) || !key.endsWith('}:q')) return null;
  const tag = key.slice(start.length, -'}:q'.length);
  if (/[{}]/.test(tag)) return null;
  return tag.replace(/%(25|7B|7D)/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** [eventId, buyerId, key] of an idempotency key's JSON suffix, or null for a key of another shape. */
function parseIdempotencyJson(json: string): [string, string, string] | null {
  let parts: unknown;
  try {
    parts = JSON.parse(json);
  } catch {
    return null;
  }
  if (!Array.isArray(parts) || parts.length !== 3 || !parts.every((x) => typeof x === 'string')) return null;
  return parts as [string, string, string];
}
