import {
  connect,
  type Channel,
  type ChannelModel,
  type ConfirmChannel,
  type ConsumeMessage,
  type Options,
} from 'amqplib';
import { UnavailableError } from '../../domain/errors.js';
import type { AcceptedPurchase } from '../../domain/types.js';
import { groupBy } from '../../shared/group-by.js';

/** Partitions when the URL does not say: enough for 8 events in flight at once on 8 workers. */
export const DEFAULT_PARTITIONS = 8;
/** Prefetch per partition when the URL does not say (at least twice the worker's batch, see RabbitQueue). */
export const DEFAULT_PREFETCH = 1000;
/** The message header that carries the index's seq (orders events for claim). */
export const SEQ_HEADER = 'onsale-seq';
/** The header of a message of several purchases (a JSON array): their seqs, in the array's order. */
export const SEQS_HEADER = 'onsale-seqs';
/**
 * Purchases of one event that one publish sends as one message. The broker's work is per message (to
 * publish, 50 µs of its CPU; to deliver and take the ack, 21 µs: docs/benchmarks.md), so a group commit's
 * purchases of an event travel together. The cap bounds what a worker holds: prefetch × 16 purchases per
 * partition. 16 took most of the gain that 64 did (docs/benchmarks.md).
 */
export const MAX_PURCHASES_PER_MESSAGE = 16;

/**
 * How long a publish waits for RabbitMQ's confirms: CONFIRM_TIMEOUT_MS, plus CONFIRM_MS_PER_MESSAGE for each
 * message of a large batch. A quorum queue on one node confirmed a batch of 10 in 14 ms and single messages
 * in ~2 ms on the development machine, but a batch of 10,000 on a loaded machine took over 2 s; past the
 * limit the broker is taken as unavailable (the request gets a 503) rather than holding the request, and
 * the index's lock, any longer.
 */
const CONFIRM_TIMEOUT_MS = 2_000;
const CONFIRM_MS_PER_MESSAGE = 1;
/** TCP connect timeout: a broker host that drops packets fails the attempt instead of hanging it. */
const CONNECT_TIMEOUT_MS = 2_000;
/** How long a caller waits for a connection attempt in progress (the first one, or the first retry). */
const ATTEMPT_WAIT_MS = 1_500;
/** Reconnect backoff: 100 ms doubling to 2 s, so a restarted broker is used again within ~2 s of its return. */
const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 2_000;
/** After a consumer channel fails on its own (the connection still up), subscribe again after this. */
const RESUBSCRIBE_MS = 250;

export interface RabbitSettings {
  /** The URL handed to amqplib: the given one without onsale's own parameters. */
  amqpUrl: string;
  /** The URL without its password, for messages. */
  display: string;
  prefix: string;
  partitions: number;
  /** Per partition; null: decided at the first claim (DEFAULT_PREFETCH, or twice the batch if larger). */
  prefetch: number | null;
}

/**
 * `amqp://user:pass@host:port/vhost?prefix=onsale&partitions=8&prefetch=1000` (or `amqps://`). The three
 * parameters are onsale's and are taken out before the URL reaches amqplib, which reads the rest (heartbeat,
 * frameMax, …). Every process of one deployment must use the same prefix and partitions.
 */
export function parseRabbitUrl(url: string): RabbitSettings {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`"${url}" is not a URL: expected amqp://user:password@host:port/vhost?prefix=onsale`);
  }
  if (parsed.protocol !== 'amqp:' && parsed.protocol !== 'amqps:') {
    throw new Error(`"${url}" is not an amqp:// or amqps:// URL`);
  }
  const prefix = parsed.searchParams.get('prefix') ?? 'onsale';
  if (!/^[A-Za-z0-9_.-]{1,100}$/.test(prefix)) {
    throw new Error(`"${url}": prefix must be 1..100 letters, digits, "_", "." or "-"`);
  }
  const partitions = wholeNumber(parsed, 'partitions', 1, 1024) ?? DEFAULT_PARTITIONS;
  const prefetch = wholeNumber(parsed, 'prefetch', 1, 65_535);
  for (const name of ['prefix', 'partitions', 'prefetch']) parsed.searchParams.delete(name);
  const amqpUrl = parsed.toString();
  if (parsed.password) parsed.password = '***';
  return { amqpUrl, display: parsed.toString(), prefix, partitions, prefetch };
}

function wholeNumber(url: URL, name: string, min: number, max: number): number | null {
  const raw = url.searchParams.get(name);
  if (raw === null) return null;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`"${url.toString()}": ${name} must be a whole number ${min}..${max}`);
  }
  return value;
}

/** The partition of an event: FNV-1a of its id, modulo the partition count. Stable across processes. */
export function partitionOf(eventId: string, partitions: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < eventId.length; i++) {
    hash ^= eventId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % partitions;
}

/** The names a prefix owns on the broker. */
export function brokerNames(
  prefix: string,
  partitions: number,
): {
  partitions: string[];
  deadExchange: string;
  deadQueue: string;
} {
  return {
    partitions: Array.from({ length: partitions }, (_, p) => `${prefix}.p${p}`),
    deadExchange: `${prefix}.dlx`,
    deadQueue: `${prefix}.dead`,
  };
}

/** One purchase to publish: its partition, its index seq, the purchase itself and its JSON (the message body). */
export interface Outgoing {
  partition: number;
  seq: number;
  purchase: AcceptedPurchase;
  payload: string;
}

/** A message as published: one purchase (its JSON, and SEQ_HEADER), or several of one event (SEQS_HEADER). */
export interface Message {
  partition: number;
  messageId: string;
  body: string;
  headers: Record<string, number | number[]>;
}

/**
 * The messages that carry `purchases`: one event's purchases together (in their order, up to
 * MAX_PURCHASES_PER_MESSAGE each), a lone purchase as a message of its own, as before batching.
 */
export function asMessages(purchases: readonly Outgoing[]): Message[] {
  const messages: Message[] = [];
  for (const list of groupBy(purchases, (p) => p.purchase.eventId).values()) {
    for (let i = 0; i < list.length; i += MAX_PURCHASES_PER_MESSAGE) {
      const part = list.slice(i, i + MAX_PURCHASES_PER_MESSAGE);
      const first = part[0]!;
      const lone = part.length === 1;
      messages.push({
        partition: first.partition,
        messageId: first.purchase.purchaseId,
        body: lone ? first.payload : `[${part.map((p) => p.payload).join(',')}]`,
        headers: lone ? { [SEQ_HEADER]: first.seq } : { [SEQS_HEADER]: part.map((p) => p.seq) },
      });
    }
  }
  return messages;
}

/** The properties a message is published with: persistent (on disk in its quorum queue), never dropped unroutable. */
export function propertiesOf(message: Message): Options.Publish {
  return {
    persistent: true,
    mandatory: true,
    messageId: message.messageId,
    contentType: 'application/json',
    headers: message.headers,
  };
}

/** What the broker tells the queue about consumption. */
interface ConsumerHandlers {
  /** A message of `partition`, on the channel of `generation` (acks must name the same generation). */
  delivery(partition: number, generation: number, message: ConsumeMessage): void;
  /** Every delivery of `partition` so far is void: its channel closed, and RabbitMQ requeued them in order. */
  lost(partition: number): void;
}

interface PartitionConsumer {
  channel: Channel | null;
  /** Counts the partition's channels: a delivery of an older one can no longer be acked. */
  generation: number;
  subscribing: boolean;
  /** Not subscribed again until this timer fires (after a handover, or a failure). */
  pause: NodeJS.Timeout | null;
}

type State = 'connecting' | 'up' | 'blocked' | 'down' | 'closed';

/**
 * One connection to RabbitMQ, kept open: reconnects with backoff in the background, declares the topology
 * on each connection, publishes with confirms, and (once consume() was called, in a worker) keeps one
 * consumer channel per partition. Callers never wait for a broker that is down: they get UnavailableError
 * at once, or after at most ATTEMPT_WAIT_MS while a connection attempt is in progress.
 *
 * Topology, all durable: per partition a quorum queue `{prefix}.p{n}` with single active consumer (one
 * consumer at a time gets its messages, in order; when it goes away its unacked messages go back, in order,
 * to the next one) and `{prefix}.dlx` as dead-letter exchange, a fanout that feeds the quorum queue
 * `{prefix}.dead`. Quorum queues replicate and fsync before they confirm; single active consumer on them is
 * supported since RabbitMQ 3.8 (checked on 3.10.8).
 */
export class Broker {
  readonly settings: RabbitSettings;
  readonly #names: ReturnType<typeof brokerNames>;
  readonly #handlers: ConsumerHandlers;
  #state: State = 'connecting';
  #conn: ChannelModel | null = null;
  #pub: ConfirmChannel | null = null;
  #admin: Channel | null = null;
  /** The connection attempt in progress, if any. */
  #attempt: Promise<void> | null = null;
  /** Failed attempts since the last success. */
  #failures = 0;
  #lastError: unknown = null;
  #reconnect: NodeJS.Timeout | null = null;
  /** Message ids RabbitMQ returned as unroutable (a partition queue deleted under us). */
  readonly #returned = new Set<string>();
  #prefetch: number | null = null;
  readonly #consumers: PartitionConsumer[];

  constructor(settings: RabbitSettings, handlers: ConsumerHandlers) {
    this.settings = settings;
    this.#names = brokerNames(settings.prefix, settings.partitions);
    this.#handlers = handlers;
    this.#consumers = this.#names.partitions.map(() => ({
      channel: null,
      generation: 0,
      subscribing: false,
      pause: null,
    }));
    this.#connect();
  }

  /**
   * Waits, up to `ms`, for the connection attempt in progress to end, whatever its outcome. Processes call
   * it once at start, so that they normally begin connected; a broker that is down does not hold them.
   */
  async settled(ms: number): Promise<void> {
    if (this.#attempt) await Promise.race([this.#attempt, new Promise((r) => setTimeout(r, ms).unref())]);
  }

  /** Resolves when the broker can be used now; else throws UnavailableError (see the class comment). */
  async usable(): Promise<void> {
    if (this.#state === 'connecting' && this.#failures === 0 && this.#attempt) {
      await Promise.race([this.#attempt, new Promise((r) => setTimeout(r, ATTEMPT_WAIT_MS).unref())]);
    }
    if (this.#state === 'up') return;
    if (this.#state === 'closed') throw new UnavailableError('the RabbitMQ connection is closed');
    if (this.#state === 'blocked')
      throw new UnavailableError('RabbitMQ blocks publishers (a memory or disk alarm)');
    if (this.#state === 'connecting' && this.#failures === 0) {
      throw new UnavailableError(`RabbitMQ at ${this.settings.display} has not answered yet (connecting)`);
    }
    throw new UnavailableError(`RabbitMQ at ${this.settings.display} is not reachable`, this.#lastError);
  }

  /**
   * Publishes persistent messages and resolves once RabbitMQ confirmed every one (each is then on disk in
   * its quorum queue). Throws UnavailableError if the broker is down, nacks, returns a message as
   * unroutable, or does not confirm within CONFIRM_TIMEOUT_MS; some messages may then be on the queue all
   * the same, which the caller's index makes harmless (see PurchaseIndex).
   */
  async publish(purchases: readonly Outgoing[]): Promise<void> {
    await this.usable();
    const channel = this.#pub!;
    const messages = asMessages(purchases);
    const confirms = messages.map(
      (m) =>
        new Promise<void>((resolve, reject) => {
          try {
            channel.sendToQueue(
              this.#names.partitions[m.partition]!,
              Buffer.from(m.body),
              propertiesOf(m),
              (error: unknown) => (error ? reject(asError(error)) : resolve()),
            );
          } catch (error) {
            reject(asError(error)); // the channel closed under us
          }
        }),
    );
    let timer: NodeJS.Timeout | undefined;
    const limitMs = CONFIRM_TIMEOUT_MS + CONFIRM_MS_PER_MESSAGE * purchases.length;
    try {
      await Promise.race([
        Promise.all(confirms),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no confirm within ${limitMs} ms`)), limitMs);
        }),
      ]);
    } catch (error) {
      throw new UnavailableError('RabbitMQ did not confirm the publish', error);
    } finally {
      clearTimeout(timer);
    }
    // basic.return comes before the confirm of the same message, so every return is known by now.
    const returned = messages.filter((m) => this.#returned.delete(m.messageId));
    if (returned.length > 0) {
      throw new UnavailableError(
        `RabbitMQ could not route ${returned.length} message(s): is queue ${this.#names.partitions[returned[0]!.partition]} deleted?`,
      );
    }
  }

  /** Starts consuming every partition, now and after each reconnection. */
  consume(prefetch: number): void {
    if (this.#prefetch !== null) return;
    this.#prefetch = prefetch;
    if (this.#state === 'up') for (let p = 0; p < this.#consumers.length; p++) void this.#subscribe(p);
  }

  get prefetch(): number | null {
    return this.#prefetch;
  }

  /** True while `partition` has a consumer channel. */
  subscribed(partition: number): boolean {
    return this.#consumers[partition]!.channel !== null;
  }

  /** Acks a delivery; a delivery of a closed channel is left alone (RabbitMQ requeued it already). */
  ack(partition: number, generation: number, message: ConsumeMessage): void {
    const c = this.#consumers[partition]!;
    if (c.generation !== generation || !c.channel) return;
    try {
      c.channel.ack(message);
    } catch {
      // closing: the message goes back to the queue, and its index row says what to do with it
    }
  }

  /** Rejects a delivery without requeue: RabbitMQ moves it to the dead-letter exchange. */
  reject(partition: number, generation: number, message: ConsumeMessage): void {
    const c = this.#consumers[partition]!;
    if (c.generation !== generation || !c.channel) return;
    try {
      c.channel.nack(message, false, false);
    } catch {
      // as in ack
    }
  }

  /**
   * Gives the partition up: its channel closes, so RabbitMQ hands its unacked messages, in order, to the
   * next consumer waiting on it (another worker), and this one subscribes again after `pauseMs`, behind it.
   */
  handover(partition: number, pauseMs: number): void {
    const c = this.#consumers[partition]!;
    const channel = c.channel;
    if (!channel) return;
    this.#drop(partition);
    void channel.close().catch(() => undefined);
    this.#pauseThenSubscribe(partition, pauseMs);
  }

  /** Messages of `partition` ready on the broker, not yet delivered to any consumer. */
  async ready(partition: number): Promise<number> {
    const admin = this.#admin;
    if (!admin || this.#state !== 'up') throw new UnavailableError('RabbitMQ is not connected');
    return (await admin.checkQueue(this.#names.partitions[partition]!)).messageCount;
  }

  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    if (this.#reconnect) clearTimeout(this.#reconnect);
    for (const c of this.#consumers) if (c.pause) clearTimeout(c.pause);
    await this.#attempt?.catch(() => undefined);
    const conn = this.#conn;
    const channels = this.#consumers.map((c) => c.channel);
    this.#conn = null;
    for (let p = 0; p < this.#consumers.length; p++) this.#drop(p);
    // Channels first: amqplib sends connection.close ahead of frames still queued on a channel, so acks
    // sent just before (the worker's last batch) would be lost and their messages redelivered. A channel's
    // close follows its own acks. Then RabbitMQ hands every unacked message back, in order.
    await Promise.all(channels.map((channel) => channel?.close().catch(() => undefined)));
    await conn?.close().catch(() => undefined);
  }

  /** Not closed. (A method: TypeScript would keep a narrowing of #state across awaits.) */
  #live(): boolean {
    return this.#state !== 'closed';
  }

  #connect(): void {
    this.#state = 'connecting';
    this.#attempt = this.#open()
      .catch((error: unknown) => {
        this.#lastError = error;
        this.#failures += 1;
        if (this.#state !== 'closed') {
          this.#state = 'down';
          this.#scheduleReconnect();
        }
      })
      .finally(() => (this.#attempt = null));
  }

  async #open(): Promise<void> {
    const conn = await connect(this.settings.amqpUrl, {
      timeout: CONNECT_TIMEOUT_MS,
      noDelay: true, // confirms are small frames; Nagle would hold them
      clientProperties: { connection_name: `onsale ${process.title} ${process.pid}` },
    });
    try {
      conn.on('error', () => undefined); // 'close' follows, and is handled
      conn.on('close', () => this.#onClosed(conn));
      conn.on('blocked', () => {
        if (this.#conn === conn && this.#state === 'up') this.#state = 'blocked';
      });
      conn.on('unblocked', () => {
        if (this.#conn === conn && this.#state === 'blocked') this.#state = 'up';
      });
      const pub = await conn.createConfirmChannel();
      this.#watch(conn, pub);
      pub.on('return', (message: { properties: { messageId?: unknown } }) => {
        if (typeof message.properties.messageId === 'string')
          this.#returned.add(message.properties.messageId);
      });
      await this.#declare(pub);
      const admin = await conn.createChannel();
      this.#watch(conn, admin);
      if (!this.#live()) throw new Error('closed while connecting');
      this.#conn = conn;
      this.#pub = pub;
      this.#admin = admin;
      this.#state = 'up';
      this.#failures = 0;
      this.#lastError = null;
      if (this.#prefetch !== null) for (let p = 0; p < this.#consumers.length; p++) void this.#subscribe(p);
    } catch (error) {
      await conn.close().catch(() => undefined);
      throw error;
    }
  }

  /** A publishing or admin channel that closes on its own (a channel error) takes the connection along. */
  #watch(conn: ChannelModel, channel: Channel): void {
    channel.on('error', () => undefined);
    channel.on('close', () => {
      if (this.#conn === conn) void conn.close().catch(() => undefined);
    });
  }

  async #declare(channel: Channel): Promise<void> {
    const names = this.#names;
    await channel.assertExchange(names.deadExchange, 'fanout', { durable: true });
    await channel.assertQueue(names.deadQueue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await channel.bindQueue(names.deadQueue, names.deadExchange, '');
    for (const queue of names.partitions) {
      await channel.assertQueue(queue, {
        durable: true,
        arguments: {
          'x-queue-type': 'quorum',
          'x-single-active-consumer': true,
          'x-dead-letter-exchange': names.deadExchange,
        },
      });
    }
  }

  #onClosed(conn: ChannelModel): void {
    if (this.#conn !== conn) return;
    this.#conn = null;
    this.#pub = null;
    this.#admin = null;
    for (let p = 0; p < this.#consumers.length; p++) this.#drop(p);
    if (this.#state === 'closed') return;
    this.#lastError = new Error('the connection to RabbitMQ was lost');
    this.#connect();
  }

  #scheduleReconnect(): void {
    const base = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** Math.min(this.#failures - 1, 10));
    // Jitter, so that the workers and web servers of a deployment do not all knock at the same instant.
    this.#reconnect = setTimeout(
      () => {
        this.#reconnect = null;
        if (this.#state !== 'closed') this.#connect();
      },
      base * (0.75 + Math.random() * 0.25),
    );
    this.#reconnect.unref();
  }

  /** Forgets the partition's channel and tells the queue that its deliveries are void. */
  #drop(partition: number): void {
    const c = this.#consumers[partition]!;
    if (!c.channel) return;
    c.channel = null;
    c.generation += 1;
    this.#handlers.lost(partition);
  }

  #pauseThenSubscribe(partition: number, ms: number): void {
    const c = this.#consumers[partition]!;
    if (c.pause) clearTimeout(c.pause);
    c.pause = setTimeout(() => {
      c.pause = null;
      void this.#subscribe(partition);
    }, ms);
    c.pause.unref();
  }

  async #subscribe(partition: number): Promise<void> {
    const c = this.#consumers[partition]!;
    const conn = this.#conn;
    if (!conn || this.#state === 'closed' || c.channel || c.subscribing || c.pause) return;
    c.subscribing = true;
    let channel: Channel | null = null;
    try {
      channel = await conn.createChannel();
      const own = channel;
      own.on('error', () => undefined);
      own.on('close', () => {
        if (c.channel !== own) return;
        this.#drop(partition);
        if (this.#conn === conn && this.#live()) this.#pauseThenSubscribe(partition, RESUBSCRIBE_MS);
      });
      await own.prefetch(this.#prefetch ?? DEFAULT_PREFETCH);
      // Set before consume(): deliveries can arrive in the same read as consume-ok, before it resolves.
      c.channel = own;
      c.generation += 1;
      const generation = c.generation;
      await own.consume(
        this.#names.partitions[partition]!,
        (message) => {
          if (c.channel !== own) return;
          // null: RabbitMQ cancelled the consumer (the queue was deleted); start over on a new channel.
          if (message === null) void own.close().catch(() => undefined);
          else this.#handlers.delivery(partition, generation, message);
        },
        { noAck: false },
      );
    } catch {
      if (channel && c.channel === channel) this.#drop(partition);
      await channel?.close().catch(() => undefined);
      if (this.#conn === conn && this.#live()) this.#pauseThenSubscribe(partition, RESUBSCRIBE_MS);
    } finally {
      c.subscribing = false;
    }
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
