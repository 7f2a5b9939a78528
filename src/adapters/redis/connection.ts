import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { UnavailableError } from '../../domain/errors.js';
import { groupBy } from '../../shared/group-by.js';
import type { RedisTarget } from './url.js';

export type RedisClient = Redis | Cluster;

/**
 * While Redis is down, a request must get its 503 at once, not wait for a reconnection: commands are not
 * queued offline, and those in flight when the connection drops fail right away (maxRetriesPerRequest 0,
 * no resend: a resent write could run twice). A command that gets no answer (Redis stopped, a network
 * partition) fails after COMMAND_TIMEOUT_MS. The client reconnects by itself, every RECONNECT_MAX_MS at most.
 * A write that failed this way may still have run: its caller got a 503, never a success, and a retry
 * finds what it wrote; a success is only ever answered for a write Redis confirmed.
 */
const COMMAND_TIMEOUT_MS = 2_000;
const CONNECT_TIMEOUT_MS = 2_000;
const RECONNECT_MAX_MS = 500;
/** While a connection is being made (at start, or a reconnection under way), a command waits this long. */
const READY_WAIT_MS = 1_000;

/** Replies that mean "Redis cannot serve now", not "this request is wrong": the caller retries later. */
const TRANSIENT_REPLY = /^(LOADING|BUSY|MISCONF|READONLY|TRYAGAIN|MASTERDOWN|OOM|NOREPLICAS|CLUSTERDOWN)\b/;

/**
 * The hash tag of an event: its id, with `{`, `}` and `%` percent-encoded so that the tag ends where it
 * should whatever the id contains. Every key of one event shares it, so they share a Redis Cluster slot.
 */
export function hashTagOf(eventId: string): string {
  return eventId.replace(/[%{}]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * The indexes of `items` per event, in order: one event's keys share a slot, so each script call of a batch
 * takes one event's items.
 */
export function groupByEvent<T>(items: readonly T[], eventOf: (item: T) => string): Map<string, number[]> {
  return groupBy(items.keys(), (i) => eventOf(items[i]!));
}

/** A client of one server or of a cluster (see url.ts), with `scripts` defined as its commands. */
export function connectRedis(target: RedisTarget, scripts: Record<string, string>): RedisClient {
  const definitions = Object.fromEntries(Object.entries(scripts).map(([name, lua]) => [name, { lua }]));
  const nodeOptions: RedisOptions = {
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: COMMAND_TIMEOUT_MS,
    connectTimeout: CONNECT_TIMEOUT_MS,
  };
  let client: RedisClient;
  if (target.cluster) {
    const { nodes, tls, username, password } = target;
    const options: ClusterOptions = {
      enableOfflineQueue: false,
      clusterRetryStrategy: (times) => Math.min(50 * times, RECONNECT_MAX_MS),
      // A CLUSTERDOWN or TRYAGAIN reply means the command did not run: trying it again soon is safe.
      retryDelayOnClusterDown: 100,
      retryDelayOnTryAgain: 100,
      slotsRefreshTimeout: CONNECT_TIMEOUT_MS,
      scripts: definitions,
      redisOptions: { ...nodeOptions, username, password, ...(tls ? { tls: {} } : {}) },
    };
    client = new Cluster(nodes, options);
  } else {
    client = new Redis(target.url, {
      ...nodeOptions,
      enableOfflineQueue: false,
      retryStrategy: (times) => Math.min(50 * times, RECONNECT_MAX_MS),
      scripts: definitions,
    });
  }
  // Failures reach callers through their commands (as UnavailableError); without a listener ioredis would
  // print every failed reconnection attempt.
  client.on('error', () => undefined);
  return client;
}

/**
 * Runs commands once the connection is ready, turning "Redis does not answer" into UnavailableError: the
 * web server answers 503 with Retry-After, the worker retries later. `what` names the store in messages.
 */
export class RedisGuard {
  readonly #redis: RedisClient;
  readonly #what: string;
  readonly #waits = new Map<'ready' | 'close', Promise<'ready' | 'close'>>();

  constructor(redis: RedisClient, what: string) {
    this.#redis = redis;
    this.#what = what;
  }

  async run<T>(command: () => Promise<T>): Promise<T> {
    await this.ready(READY_WAIT_MS, false);
    try {
      return await command();
    } catch (error) {
      throw this.#unavailable(error);
    }
  }

  /**
   * Waits for the connection when one is being made. A command fails at once when the last attempt failed
   * (Redis is down) and as soon as the attempt under way fails: a crowd retrying against a dead Redis gets
   * its 503 in milliseconds. At start (`patient`) it waits through failed attempts until `waitMs`.
   */
  async ready(waitMs: number, patient: boolean): Promise<void> {
    const status = this.#redis.status;
    if (status === 'ready') return;
    if (status === 'end') throw new UnavailableError(`${this.#what} connection is closed`);
    if (!patient && (status === 'reconnecting' || status === 'close')) {
      throw new UnavailableError(`${this.#what} is not reachable (${status})`);
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
        throw new UnavailableError(`${this.#what} did not answer within ${waitMs} ms`);
      if (outcome === 'close')
        throw new UnavailableError(`${this.#what} is not reachable (connection failed)`);
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

  /** A reply error is Redis refusing this command (a bug, unless transient); any other error (connection
   * closed or refused, timeout, retries exhausted) means Redis is not reachable. */
  #unavailable(error: unknown): unknown {
    if (error instanceof UnavailableError) return error;
    if (!(error instanceof Error)) return error;
    if (error.name === 'ReplyError' && !TRANSIENT_REPLY.test(error.message)) return error;
    return new UnavailableError(`${this.#what} is not available (${error.message})`, error);
  }
}

/** Quits a client politely when connected, then drops it. */
export async function closeRedis(redis: RedisClient): Promise<void> {
  if (redis.status === 'ready') await redis.quit().catch(() => undefined);
  redis.disconnect();
}
