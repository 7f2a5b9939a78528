import { randomInt } from 'node:crypto';
import { Cluster } from 'ioredis';
import {
  admissionBudget,
  decideFront,
  joinEstimate,
  noDecisions,
  shuffle,
  withProgress,
  type FrontPlace,
  type Line,
  type Place,
} from '../../domain/waiting-room.js';
import type {
  ActiveAdmission,
  AdmittedPurchase,
  AdvanceResult,
  AdvanceStep,
  JoinRequest,
  JoinResult,
  RoomLimits,
  WaitingRoom,
} from '../../ports/waiting-room.js';
import { newPlaceId } from '../../shared/ids.js';
import {
  closeRedis,
  connectRedis,
  groupByEvent,
  hashTagOf,
  RedisGuard,
  type RedisClient,
} from './connection.js';
import {
  ROOM_ACTIVE,
  ROOM_FRONT,
  ROOM_JOIN,
  ROOM_LIMITS,
  ROOM_OPEN,
  ROOM_PLACE,
  ROOM_PURCHASE,
  ROOM_READS,
  ROOM_STEP,
} from './room-scripts.js';
import { parseRedisUrl, type RedisTarget } from './url.js';
import { groupBy } from '../../shared/group-by.js';

const SCRIPTS = {
  roomJoin: ROOM_JOIN,
  roomOpen: ROOM_OPEN,
  roomFront: ROOM_FRONT,
  roomStep: ROOM_STEP,
  roomPlace: ROOM_PLACE,
  roomReads: ROOM_READS,
  roomPurchase: ROOM_PURCHASE,
  roomActive: ROOM_ACTIVE,
  roomLimits: ROOM_LIMITS,
} as const;
type ScriptName = keyof typeof SCRIPTS;
type ScriptCall = (...args: Array<string | number>) => Promise<unknown>;

/** How many places of the front one step reads at a time. */
const CHUNK = 500;
/** A step or a join decided from a line that moved meanwhile is decided again, this many times at most. */
const MAX_ATTEMPTS = 200;
/** migrate() runs once at start, where waiting for Redis a little longer beats a crash and a restart. */
const MIGRATE_WAIT_MS = 10_000;

/** The key names of the room under one prefix (room-scripts.ts lists them). */
class Keys {
  readonly where: string;
  readonly lines: string;
  constructor(readonly prefix: string) {
    this.where = `${prefix}:room:where`;
    this.lines = `${prefix}:room:lines`;
  }
  of(eventId: string) {
    const base = `${this.prefix}:room:{${hashTagOf(eventId)}}`;
    return {
      line: `${base}:line`,
      buyers: `${base}:buyers`,
      places: `${base}:places`,
      pre: `${base}:pre`,
      number: `${base}:number`,
      at: `${base}:at`,
      read: `${base}:read`,
      eta: `${base}:eta`,
      outcome: `${base}:outcome`,
      active: `${base}:active`,
      bought: `${base}:bought`,
    };
  }
}

/** A line as stored: its hash, with the version its next step must find. */
interface StoredLine {
  line: Line;
  version: string;
}

/**
 * The waiting room in Redis (ONSALE_ROOM_URL=redis://…, one server or Redis Cluster: see url.ts), shared by
 * every web server and worker. Redis keeps the line; the domain module decides every move. A step reads the
 * line and its front, decides, and writes in one script that first checks the line's version: a step
 * decided from a line another process moved meanwhile writes nothing and is decided again, so steps of one
 * line never overlap, however many processes run the ticker. Joins need no such check (numbers are taken in
 * the script, in the order Redis runs them) except at the opening: a join decided for the pre-queue finds
 * the line opened, or the lottery finds the pre-queue grown, and the loser decides again.
 *
 * Durability: a join resolves after Redis replied to its script, so it is as durable as Redis makes the
 * write. migrate() refuses a Redis (every master of a cluster) that does not append every write to its AOF
 * and fsync it before replying (`appendonly yes`, `appendfsync always`); see docs/redis.md.
 */
export class RedisWaitingRoom implements WaitingRoom {
  readonly #redis: RedisClient;
  readonly #guard: RedisGuard;
  readonly #target: RedisTarget;
  readonly #keys: Keys;

  constructor(url: string) {
    this.#target = parseRedisUrl(url);
    this.#keys = new Keys(this.#target.prefix);
    this.#redis = connectRedis(this.#target, SCRIPTS);
    this.#guard = new RedisGuard(this.#redis, 'the Redis waiting room');
  }

  async migrate(): Promise<void> {
    // No schema: a line's keys are made by its first join. What is checked is that joins are durable.
    await this.#guard.ready(MIGRATE_WAIT_MS, true);
    const masters = this.#redis instanceof Cluster ? this.#redis.nodes('master') : [this.#redis];
    for (const node of masters) {
      const problem = await this.#guard.run(() => durabilityProblem(node));
      if (problem) {
        const where = `${node.options.host ?? '127.0.0.1'}:${node.options.port ?? 6379}`;
        throw new Error(
          `the Redis of the waiting room (${where}) ${problem}: a join answered there could be lost in a ` +
            'crash; run it with appendonly yes and appendfsync always (docs/redis.md)',
        );
      }
    }
  }

  async join(requests: readonly JoinRequest[]): Promise<JoinResult[]> {
    const results: JoinResult[] = new Array(requests.length);
    await Promise.all(
      [...groupByEvent(requests, (r) => r.eventId)].map(async ([eventId, indexes]) => {
        // One script call per run of joins on the same side of the opening, in order: a join after it
        // opens the line (the lottery) and is numbered, one before it is in the pre-queue.
        for (const run of runsBy(indexes, (i) => requests[i]!.joinedAt >= requests[i]!.salesOpenAt)) {
          const joined = await this.#joinEvent(
            eventId,
            run.map((i) => requests[i]!),
          );
          joined.forEach((result, j) => (results[run[j]!] = result));
        }
      }),
    );
    return results;
  }

  async #joinEvent(eventId: string, requests: readonly JoinRequest[]): Promise<JoinResult[]> {
    const keys = this.#keys.of(eventId);
    const ids = requests.map(() => newPlaceId());
    const first = requests[0]!;
    const now = Date.parse(first.joinedAt);
    // Listed before the places exist: a place is always found by its id, a line always seen by the ticker.
    await Promise.all([
      this.#guard.run(() => this.#redis.hset(this.#keys.where, ...ids.flatMap((id) => [id, eventId]))),
      this.#guard.run(() => this.#redis.sadd(this.#keys.lines, eventId)),
    ]);
    let replies: string[] | null = null;
    let stored: StoredLine | null = null;
    for (let attempt = 0; replies === null; attempt++) {
      if (attempt === MAX_ATTEMPTS)
        throw new Error(`the line of event ${eventId} kept moving: join not taken`);
      stored = await this.#line(eventId);
      // A join at or after the opening opens the line first (the lottery), as a step would.
      if (stored && !stored.line.opened && first.joinedAt >= stored.line.salesOpenAt) {
        await this.#open(eventId, stored, now);
        continue;
      }
      const opened = stored ? stored.line.opened : first.joinedAt >= first.salesOpenAt;
      const created = newLineFields(first, now, opened);
      const args: Array<string | number> = [opened ? '1' : '0', created.length, ...created];
      requests.forEach((r, i) => {
        const place = JSON.stringify({ b: r.buyerId, c: r.canonicalBuyerId, j: r.joinedAt });
        args.push(ids[i]!, r.canonicalBuyerId, place, Date.parse(r.joinedAt));
      });
      replies = (await this.#script(
        'roomJoin',
        [keys.line, keys.buyers, keys.places, keys.number, keys.at, keys.pre, keys.read],
        args,
      )) as string[] | null;
    }
    // The estimate told at join, from the line as it was read (the same moment, give or take a script).
    const etas = replies.map((reply) =>
      reply.startsWith('n') && stored ? joinEstimate(Number(reply.slice(1)), stored.line, now) : null,
    );
    const told = replies.flatMap((_, i) => (etas[i] === null ? [] : [ids[i]!, etas[i]!]));
    if (told.length > 0) await this.#guard.run(() => this.#redis.hset(keys.eta, ...told));
    const unused = ids.filter((_, i) => replies[i]!.startsWith('e'));
    if (unused.length > 0) {
      // Not awaited: a leftover entry points to a place that does not exist, which is not found.
      void this.#guard.run(() => this.#redis.hdel(this.#keys.where, ...unused)).catch(() => undefined);
    }
    return Promise.all(
      replies.map(async (reply, i): Promise<JoinResult> => {
        const r = requests[i]!;
        if (reply.startsWith('e')) {
          const place = await this.#place(eventId, reply.slice(1));
          if (!place) throw new Error(`the place of buyer ${r.canonicalBuyerId} is missing`);
          return { place, created: false };
        }
        return {
          place: {
            placeId: ids[i]!,
            eventId,
            buyerId: r.buyerId,
            canonicalBuyerId: r.canonicalBuyerId,
            joinedAt: r.joinedAt,
            lineNumber: reply === 'p' ? null : Number(reply.slice(1)),
            outcome: null,
            admittedAt: null,
            admissionExpiresAt: null,
            used: false,
            etaAtJoin: etas[i]!,
          },
          created: true,
        };
      }),
    );
  }

  async getPlace(placeId: string): Promise<Place | null> {
    const eventId = await this.#guard.run(() => this.#redis.hget(this.#keys.where, placeId));
    return eventId === null ? null : this.#place(eventId, placeId);
  }

  async getLine(eventId: string): Promise<Line | null> {
    return (await this.#line(eventId))?.line ?? null;
  }

  async noteReads(reads: ReadonlyMap<string, number>): Promise<void> {
    if (reads.size === 0) return;
    const ids = [...reads.keys()];
    const events = await this.#guard.run(() => this.#redis.hmget(this.#keys.where, ...ids));
    const eventOf = new Map(ids.map((id, i) => [id, events[i]]));
    const byEvent = groupBy(
      ids.filter((id) => eventOf.get(id)),
      (id) => eventOf.get(id)!,
    );
    await Promise.all(
      [...byEvent].map(([eventId, list]) =>
        this.#script(
          'roomReads',
          [this.#keys.of(eventId).read],
          list.flatMap((id) => [id, reads.get(id)!]),
        ),
      ),
    );
  }

  async notePurchases(purchases: readonly AdmittedPurchase[]): Promise<void> {
    if (purchases.length === 0) return;
    // The places' events in one read, as noteReads finds them.
    const events = await this.#guard.run(() =>
      this.#redis.hmget(this.#keys.where, ...purchases.map((p) => p.placeId)),
    );
    await Promise.all(
      purchases.map(({ placeId, purchaseId }, i) => {
        const eventId = events[i];
        if (!eventId) return undefined;
        return this.#script('roomPurchase', [this.#keys.of(eventId).bought], [placeId, purchaseId]);
      }),
    );
  }

  async setLimits(eventId: string, limits: RoomLimits): Promise<Line | null> {
    const fields: Array<string | number> = [];
    if (limits.maxActiveBuyers !== undefined) fields.push('maxActiveBuyers', limits.maxActiveBuyers);
    if (limits.maxAdmittedPerMinute !== undefined) {
      fields.push('maxAdmittedPerMinute', limits.maxAdmittedPerMinute ?? '');
    }
    if (limits.powDifficulty !== undefined) fields.push('powDifficulty', limits.powDifficulty);
    const reply = (await this.#script('roomLimits', [this.#keys.of(eventId).line], fields)) as
      string[] | null;
    return reply ? toLine(eventId, pairs(reply)) : null;
  }

  async movingLines(): Promise<string[]> {
    const events = await this.#guard.run(() => this.#redis.smembers(this.#keys.lines));
    const states = await Promise.all(
      events.map((eventId) =>
        this.#guard.run(() => this.#redis.hmget(this.#keys.of(eventId).line, 'soldOut', 'active')),
      ),
    );
    return events.filter((_, i) => {
      const [soldOut, active] = states[i]!;
      return soldOut !== null && (soldOut !== '1' || Number(active) > 0);
    });
  }

  async activeAdmissions(eventId: string): Promise<ActiveAdmission[]> {
    const keys = this.#keys.of(eventId);
    const flat = (await this.#script('roomActive', [keys.active, keys.outcome, keys.bought], [])) as string[];
    const active: ActiveAdmission[] = [];
    for (let i = 0; i + 2 < flat.length; i += 3) {
      const outcome = JSON.parse(flat[i + 1]!) as [string, string?, string?];
      active.push({
        placeId: flat[i]!,
        admissionExpiresAt: outcome[2] ?? '',
        purchaseIds: flat[i + 2] ? flat[i + 2]!.split(' ') : [],
      });
    }
    return active;
  }

  async advance(eventId: string, step: AdvanceStep): Promise<AdvanceResult | null> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const stored = await this.#line(eventId);
      if (!stored) return null;
      if (!stored.line.opened && new Date(step.now).toISOString() >= stored.line.salesOpenAt) {
        await this.#open(eventId, stored, step.now);
        continue;
      }
      const result = await this.#tryStep(eventId, stored, step);
      if (result) return result;
    }
    throw new Error(`the line of event ${eventId} kept moving: step not taken`);
  }

  /** One step decided from `stored`; null when another process moved the line meanwhile. */
  async #tryStep(eventId: string, stored: StoredLine, step: AdvanceStep): Promise<AdvanceResult | null> {
    const keys = this.#keys.of(eventId);
    const line = stored.line;
    const soldOutBefore = line.soldOut;
    // Only admitted places still holding a slot free one (a place released twice frees it once).
    const holding =
      step.release.length === 0
        ? []
        : ((await this.#guard.run(() => this.#redis.smismember(keys.active, ...step.release))) as number[]);
    const release = step.release.filter((_, i) => holding[i] === 1);
    line.active -= release.length;
    line.soldOut = step.soldOut;
    const before = { head: line.head, admitted: line.admitted };
    let budget = admissionBudget(line, step.now);
    const decided = noDecisions();
    while (budget > 0 && line.head < line.tail) {
      const front = await this.#front(eventId, line.head + 1, Math.min(line.head + CHUNK, line.tail));
      if (front.length === 0) break;
      budget = decideFront(line, front, budget, step.now, decided);
    }
    const { admit, expire, admitted } = decided;
    if (line.head !== before.head || line.admitted !== before.admitted) {
      line.progress = withProgress(line.progress, step.now, line.head, line.admitted);
    }
    const changed =
      release.length > 0 || admit.length > 0 || expire.length > 0 || line.soldOut !== soldOutBefore;
    if (!changed) return { line, admitted, expired: 0 };
    const outcome = JSON.stringify([
      'admitted',
      new Date(step.now).toISOString(),
      new Date(step.now + line.sessionSeconds * 1000).toISOString(),
    ]);
    const fields = [
      ...['head', line.head, 'active', line.active, 'admitted', line.admitted],
      ...['expired', line.expired, 'soldOut', line.soldOut ? '1' : '0'],
      ...['progress', JSON.stringify(line.progress)],
    ];
    const written = await this.#script(
      'roomStep',
      [keys.line, keys.active, keys.outcome],
      [
        stored.version,
        outcome,
        release.length,
        admit.length,
        expire.length,
        fields.length,
        ...release,
        ...admit,
        ...expire,
        ...fields,
      ],
    );
    return written === 1 ? { line, admitted, expired: expire.length } : null;
  }

  /** The opening lottery: the pre-queue shuffled by the domain, written unless it grew meanwhile. */
  async #open(eventId: string, stored: StoredLine, now: number): Promise<void> {
    const keys = this.#keys.of(eventId);
    const prequeue = await this.#guard.run(() => this.#redis.lrange(keys.pre, 0, -1));
    const order = shuffle(prequeue, randomInt);
    const progress = withProgress(stored.line.progress, now, stored.line.head, stored.line.admitted);
    await this.#script(
      'roomOpen',
      [keys.line, keys.pre, keys.number, keys.at],
      [JSON.stringify(progress), ...order],
    );
  }

  async #front(eventId: string, from: number, to: number): Promise<FrontPlace[]> {
    const keys = this.#keys.of(eventId);
    const flat = (await this.#script(
      'roomFront',
      [keys.at, keys.read, keys.places, keys.eta],
      [from, to],
    )) as string[];
    const front: FrontPlace[] = [];
    for (let i = 0; i + 3 < flat.length; i += 4) {
      const place = JSON.parse(flat[i + 2]!) as { j?: string };
      front.push({
        id: flat[i]!,
        last_read_at: Number(flat[i + 1]),
        joined_at: place.j ?? '',
        eta_at_join: flat[i + 3] === '' ? null : Number(flat[i + 3]),
      });
    }
    return front;
  }

  async #line(eventId: string): Promise<StoredLine | null> {
    const hash = await this.#guard.run(() => this.#redis.hgetall(this.#keys.of(eventId).line));
    if (hash.opened === undefined) return null;
    return { line: toLine(eventId, hash), version: hash.version ?? '0' };
  }

  async #place(eventId: string, placeId: string): Promise<Place | null> {
    const keys = this.#keys.of(eventId);
    const [json, number, outcomeJson, bought, eta] = (await this.#script(
      'roomPlace',
      [keys.places, keys.number, keys.outcome, keys.bought, keys.eta],
      [placeId],
    )) as [string, string, string, string, string];
    if (json === '') return null;
    const place = JSON.parse(json) as { b: string; c: string; j: string };
    const outcome = outcomeJson === '' ? null : (JSON.parse(outcomeJson) as [string, string?, string?]);
    return {
      placeId,
      eventId,
      buyerId: place.b,
      canonicalBuyerId: place.c,
      joinedAt: place.j,
      lineNumber: number === '' ? null : Number(number),
      outcome: outcome ? (outcome[0] as 'admitted' | 'expired') : null,
      admittedAt: outcome?.[1] ?? null,
      admissionExpiresAt: outcome?.[2] ?? null,
      used: bought !== '',
      etaAtJoin: eta === '' ? null : Number(eta),
    };
  }

  async close(): Promise<void> {
    await closeRedis(this.#redis);
  }

  #script(name: ScriptName, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown> {
    return this.#guard.run(() => {
      const call = (this.#redis as unknown as Record<ScriptName, ScriptCall>)[name];
      return call.call(this.#redis, keys.length, ...keys, ...args);
    });
  }
}

/** The fields of a line made by its first join, `opened` when that join came at or after the opening. */
function newLineFields(request: JoinRequest, now: number, opened: boolean): Array<string | number> {
  const created = withProgress([], now, 0, 0);
  return [
    ...['salesOpenAt', request.salesOpenAt, 'sessionSeconds', request.room.sessionSeconds],
    ...['maxActiveBuyers', request.room.maxActiveBuyers],
    ...['maxAdmittedPerMinute', request.room.maxAdmittedPerMinute ?? ''],
    ...['powDifficulty', request.room.powDifficulty ?? 0],
    ...['opened', opened ? '1' : '0', 'prequeued', 0, 'tail', 0, 'head', 0, 'active', 0],
    ...['admitted', 0, 'expired', 0, 'soldOut', '0', 'version', 0],
    ...['progress', JSON.stringify(opened ? withProgress(created, now, 0, 0) : created)],
  ];
}

function pairs(flat: readonly string[]): Record<string, string> {
  const hash: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) hash[flat[i]!] = flat[i + 1]!;
  return hash;
}

function toLine(eventId: string, hash: Record<string, string>): Line {
  const n = (field: string) => Number(hash[field] ?? 0);
  return {
    eventId,
    salesOpenAt: hash.salesOpenAt ?? '',
    opened: hash.opened === '1',
    prequeued: n('prequeued'),
    tail: n('tail'),
    head: n('head'),
    active: n('active'),
    admitted: n('admitted'),
    expired: n('expired'),
    soldOut: hash.soldOut === '1',
    maxActiveBuyers: n('maxActiveBuyers'),
    maxAdmittedPerMinute: hash.maxAdmittedPerMinute ? Number(hash.maxAdmittedPerMinute) : null,
    sessionSeconds: n('sessionSeconds'),
    powDifficulty: n('powDifficulty'),
    progress: JSON.parse(hash.progress ?? '[]') as Line['progress'],
  };
}

/** Why `node` does not make a write durable before it replies, or null when it does. */
async function durabilityProblem(node: RedisClient): Promise<string | null> {
  let settings: string[];
  try {
    settings = (await node.call('CONFIG', 'GET', 'append*')) as string[];
  } catch (error) {
    // CONFIG is renamed or disabled on some managed services: INFO still says whether the AOF is on, not
    // its fsync policy, which is then the operator's to set (docs/redis.md).
    if ((error as Error).name !== 'ReplyError') throw error;
    const info = (await node.call('INFO', 'persistence')) as string;
    return /^aof_enabled:1\r?$/m.test(info) ? null : 'does not keep an append-only file (aof_enabled:0)';
  }
  const config = pairs(settings);
  if (config.appendonly !== 'yes') return `runs with appendonly ${config.appendonly ?? 'unknown'}`;
  if (config.appendfsync !== 'always') return `runs with appendfsync ${config.appendfsync ?? 'unknown'}`;
  return null;
}

/** `items` cut into runs of consecutive items with the same `key`. */
function runsBy<T>(items: readonly T[], key: (item: T) => boolean): T[][] {
  const runs: T[][] = [];
  let last: boolean | undefined;
  for (const item of items) {
    const k = key(item);
    if (runs.length === 0 || k !== last) runs.push([]);
    runs[runs.length - 1]!.push(item);
    last = k;
  }
  return runs;
}
