import type { ConsumeMessage } from 'amqplib';
import { withCanonicalBuyerId } from '../../domain/buyer.js';
import type { AcceptedPurchase } from '../../domain/types.js';
import type { ClaimedBatch, DeadLetter, EnqueueRequest, EnqueueResult, Queue } from '../../ports/queue.js';
import {
  Broker,
  DEFAULT_PREFETCH,
  parseRabbitUrl,
  partitionOf,
  SEQ_HEADER,
  SEQS_HEADER,
  type Outgoing,
  type RabbitSettings,
} from './broker.js';
import type { IndexedPurchase, PurchaseIndex } from './index-store.js';
import { PostgresIndex } from './postgres-index.js';

/** How long a claim waits for a first delivery when nothing is buffered (a long poll, cut short by close). */
const CLAIM_WAIT_MS = 500;
/**
 * A claim first waits for the messages RabbitMQ reported ready when it began, as long as deliveries keep
 * coming: up to SETTLE_STALL_MS without one, and SETTLE_MAX_MS in all. See #settle. Deliveries follow each
 * other within a millisecond or two when this process is the partition's active consumer, but with 100 ms
 * a claim of 10,000 once came back partial while the machine ran two fault floods beside it. The stall is
 * paid in full only on a partition another worker consumes, once per subscription.
 */
const SETTLE_STALL_MS = 500;
const SETTLE_MAX_MS = 5_000;
/**
 * After a lease runs out, the partition is handed over (see claim) and subscribed again after this pause,
 * so that a worker already waiting, or one starting now, becomes its active consumer.
 */
const HANDOVER_PAUSE_MS = 1_000;
/** How long migrate() (every process runs it at start) waits for the first connection to RabbitMQ. */
const START_CONNECT_WAIT_MS = 10_000;
/** Events a claim looks at before it answers null (each turn without a batch dropped what it saw). */
const MAX_TURNS = 100;

/**
 * A message held by this process: delivered, not yet acked. It carries one purchase or several of one event,
 * and is acked (or, if every purchase in it was dead-lettered, rejected) once each of them is finished.
 */
interface Carrier {
  partition: number;
  generation: number;
  message: ConsumeMessage;
  /** Its purchases not yet finished, and those of them dead-lettered. */
  left: number;
  dead: number;
  size: number;
}

/** One purchase of a held message. It is also a batch's receipt. */
interface Delivery {
  purchase: AcceptedPurchase;
  seq: number;
  partition: number;
  carrier: Carrier;
}

interface Lease {
  token: number;
  workerId: string;
  partition: number;
  expiresAt: number;
  timer: NodeJS.Timeout;
}

/** Per partition: whether this process is known to be its active consumer, and what it holds of it. */
interface PartitionView {
  /** 'active' once a delivery came on the current channel; 'passive' when messages wait that never come. */
  activity: 'unknown' | 'active' | 'passive';
  /** Messages held now, and received in all on the current channel (RabbitMQ counts messages). */
  held: number;
  received: number;
  /** The channel those messages came on (a message of an older one no longer counts). */
  generation: number | null;
}

/**
 * The RabbitMQ queue (`amqp://…` or `amqps://…`; see parseRabbitUrl for its parameters).
 *
 * Order. Each event hashes to one of N partitions, a quorum queue with single active consumer: only one
 * worker process at a time receives a partition's messages, in queue order, so one event's purchases reach
 * one worker in order however many workers run. A worker subscribes to every partition and becomes the
 * active consumer of some; the others wait and take over when it dies (its connection closes and RabbitMQ
 * requeues its unacked messages, in order, to the next consumer). Messages are buffered per event in this
 * process; claim() leases one event to one workerId, oldest head first, as the port asks.
 *
 * Durability and what RabbitMQ cannot answer. enqueue() records each batch in a PurchaseIndex in the
 * database (queued purchases, idempotency keys, dead letters, claim counts) and publishes it with
 * publisher confirms, committing the index only once every message is confirmed, while holding the
 * index's lock for the partitions involved. So a 202 follows both the database's fsync and the quorum
 * queue's, a purchase is in the index exactly when its message is on the queue, and the queue's order is
 * the order in which enqueue() calls resolve. A worker inspects what it claims under the same lock: a
 * message without an index row was never accepted (the publish failed after reaching the broker, or its
 * web server died before the commit) or was already acked, and is dropped; a row marked dead was
 * dead-lettered. See index-store.ts.
 *
 * Acks. A message carries one event's purchases of one enqueue (up to MAX_PURCHASES_PER_MESSAGE), and a
 * batch may end inside one. ack() deletes the index rows, then acks each message whose last purchase this
 * was (each by its own tag, so a message that is buffered but not done is never acked along with it). A
 * crash in between, or before a message's last purchase, redelivers it whole, and the next claim drops its
 * purchases whose rows are gone. A lease that runs out hands the partition over: its channel is closed, so
 * RabbitMQ redelivers its unacked messages to another worker.
 *
 * Deliveries. A batch's `deliveries` is the index's claim count of its head, not RabbitMQ's
 * x-delivery-count: when a worker dies, RabbitMQ counts a redelivery for every message it had prefetched,
 * tried or not, and a crash loop would then dead-letter innocent purchases behind the poison one.
 */
export class RabbitQueue implements Queue {
  readonly #settings: RabbitSettings;
  readonly #index: PurchaseIndex;
  readonly #broker: Broker;
  /** Held deliveries per event, in queue order (an event lives in one partition). */
  readonly #events = new Map<string, Delivery[]>();
  readonly #leases = new Map<string, Lease>();
  readonly #views: PartitionView[];
  readonly #waiters = new Set<() => void>();
  #nextToken = 1;
  #closed = false;

  constructor(url: string, databaseUrl: string) {
    this.#settings = parseRabbitUrl(url);
    this.#index = openIndex(databaseUrl, this.#settings.prefix);
    this.#views = Array.from({ length: this.#settings.partitions }, () => freshView());
    this.#broker = new Broker(this.#settings, {
      delivery: (partition, generation, message) => this.#onDelivery(partition, generation, message),
      lost: (partition) => this.#onLost(partition),
    });
  }

  async migrate(): Promise<void> {
    await this.#index.migrate(this.#settings.partitions);
    // Declaring the topology can take seconds on a busy broker (10 queues): begin connected when possible,
    // rather than answer the first requests 503. A broker that is down fails the attempt at once.
    await this.#broker.settled(START_CONNECT_WAIT_MS);
  }

  async enqueue(requests: readonly EnqueueRequest[]): Promise<EnqueueResult[]> {
    if (requests.length === 0) return [];
    // Fail fast, before taking the index's lock, while the broker is down: the request gets a 503.
    await this.#broker.usable();
    return this.#index.record(
      requests.map((request) => ({ request, partition: this.#partitionOf(request.purchase.eventId) })),
      (accepted) => this.#broker.publish(accepted.map((a) => this.#outgoing(a))),
    );
  }

  async claim(workerId: string, max: number, leaseMs: number): Promise<ClaimedBatch | null> {
    if (this.#closed) return null;
    await this.#broker.usable();
    // Consuming starts at the first claim: web servers, which never claim, never take messages.
    this.#broker.consume(this.#settings.prefetch ?? Math.max(DEFAULT_PREFETCH, 2 * max));
    if (this.#events.size === 0) await this.#nextDelivery(CLAIM_WAIT_MS);
    if (this.#events.size === 0) return null;
    await this.#settle();
    // A turn without a batch dropped messages (gone or dead) or lost the partition: the next one sees less.
    for (let turn = 0; turn < MAX_TURNS; turn++) {
      const eventId = this.#pick(workerId);
      if (eventId === undefined) return null;
      const batch = await this.#take(eventId, workerId, max, leaseMs);
      if (batch) return batch;
    }
    return null;
  }

  async ack(batch: ClaimedBatch): Promise<void> {
    const deliveries = batch.receipts as Delivery[];
    // The index first: once its rows are gone, a redelivery of these messages is dropped, never redone.
    await this.#index.remove(deliveries.map((d) => d.purchase.purchaseId));
    this.#finish(deliveries, 'ack');
    this.#unlease(batch);
  }

  async release(batch: ClaimedBatch): Promise<void> {
    // The messages stay buffered here, unleased: the next claim of any worker of this process takes them.
    // A stopping worker then closes the queue, and RabbitMQ hands them to another process.
    this.#unlease(batch);
  }

  async deadLetter(batch: ClaimedBatch, reason: string): Promise<void> {
    const deliveries = batch.receipts as Delivery[];
    await this.#index.bury(
      deliveries.map((d) => d.purchase.purchaseId),
      reason,
    );
    // Then to `{prefix}.dead` through the dead-letter exchange: a copy for RabbitMQ's own tools. The index
    // is what deadLetters() and replayDeadLetters() read.
    this.#finish(deliveries, 'reject');
    this.#unlease(batch);
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    return this.#index.deadLetters(limit);
  }

  async replayDeadLetters(purchaseIds?: readonly string[]): Promise<number> {
    await this.#broker.usable();
    const all = Array.from({ length: this.#settings.partitions }, (_, p) => p);
    return this.#index.revive(purchaseIds, all, (revived) =>
      this.#broker.publish(revived.map((r) => this.#outgoing(r))),
    );
  }

  async find(purchaseId: string): Promise<AcceptedPurchase | null> {
    return this.#index.find(purchaseId);
  }

  async depth(): Promise<{ depth: number; oldestAcceptedAt: string | null }> {
    return this.#index.depth();
  }

  async depthOf(eventId: string): Promise<{ queued: number; deadLetters: number }> {
    return this.#index.depthOf(eventId);
  }

  async ping(): Promise<void> {
    await Promise.all([this.#broker.usable(), this.#index.ping()]);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const wake of this.#waiters) wake();
    for (const lease of this.#leases.values()) clearTimeout(lease.timer);
    this.#leases.clear();
    await this.#broker.close();
    await this.#index.close();
  }

  #partitionOf(eventId: string): number {
    return partitionOf(eventId, this.#settings.partitions);
  }

  #outgoing(indexed: IndexedPurchase): Outgoing {
    return { ...indexed, partition: this.#partitionOf(indexed.purchase.eventId) };
  }

  #onDelivery(partition: number, generation: number, message: ConsumeMessage): void {
    const carried = parseMessage(message);
    const view = this.#views[partition]!;
    view.activity = 'active';
    view.received += 1;
    view.generation = generation;
    // parseMessage answers at least one purchase, all of one event.
    if (!carried || this.#partitionOf(carried[0]!.purchase.eventId) !== partition) {
      // Not onsale's (someone published by hand): set aside in `{prefix}.dead` rather than lost or looped.
      this.#broker.reject(partition, generation, message);
      return;
    }
    const eventId = carried[0]!.purchase.eventId;
    const carrier = { partition, generation, message, left: carried.length, dead: 0, size: carried.length };
    const deliveries = carried.map(({ purchase, seq }) => ({ purchase, seq, partition, carrier }));
    const list = this.#events.get(eventId);
    if (list) list.push(...deliveries);
    else this.#events.set(eventId, deliveries);
    view.held += 1;
    for (const wake of this.#waiters) wake();
  }

  #onLost(partition: number): void {
    for (const [eventId, list] of this.#events) {
      if (list[0]?.partition === partition) this.#events.delete(eventId);
    }
    for (const [eventId, lease] of this.#leases) {
      if (lease.partition !== partition) continue;
      clearTimeout(lease.timer);
      this.#leases.delete(eventId);
    }
    this.#views[partition] = freshView();
  }

  /** Waits up to `ms` for a delivery (or close). */
  #nextDelivery(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#waiters.add(done);
    });
  }

  /**
   * Waits until this process holds what RabbitMQ reported ready, when the claim began, on the partitions it
   * may be the active consumer of (up to a full prefetch). Without it a claim right after an enqueue could
   * see part of what is confirmed: an event's tail, or an older event, still on the wire. Messages that
   * arrive later do not extend the wait, so a flood never holds a claim back. A partition whose ready
   * messages never come has another worker as active consumer: it is marked passive and not waited for
   * again until it delivers or is subscribed anew.
   */
  async #settle(): Promise<void> {
    const prefetch = this.#broker.prefetch ?? DEFAULT_PREFETCH;
    const watched = this.#views.flatMap((view, p) =>
      view.activity !== 'passive' && view.held < prefetch && this.#broker.subscribed(p) ? [{ view, p }] : [],
    );
    const ready = await Promise.all(watched.map(({ p }) => this.#broker.ready(p).catch(() => 0)));
    const targets = watched
      .map(({ view }, i) => ({ view, until: view.received + Math.min(ready[i]!, prefetch - view.held) }))
      .filter((t) => t.view.received < t.until);
    const started = Date.now();
    let progressAt = started;
    let received = targets.reduce((sum, t) => sum + t.view.received, 0);
    while (targets.some((t) => t.view.received < t.until)) {
      await this.#nextDelivery(SETTLE_STALL_MS);
      const now = Date.now();
      const total = targets.reduce((sum, t) => sum + t.view.received, 0);
      if (total > received) [received, progressAt] = [total, now];
      if (this.#closed || now - progressAt >= SETTLE_STALL_MS || now - started >= SETTLE_MAX_MS) {
        for (const t of targets)
          if (t.view.received < t.until && t.view.activity === 'unknown') t.view.activity = 'passive';
        return;
      }
    }
  }

  /** The event, among those not leased to another worker, whose oldest held purchase is the oldest. */
  #pick(workerId: string): string | undefined {
    const now = Date.now();
    let best: { eventId: string; seq: number } | undefined;
    for (const [eventId, list] of this.#events) {
      const lease = this.#leases.get(eventId);
      if (lease && lease.workerId !== workerId && lease.expiresAt > now) continue;
      const seq = list[0]!.seq;
      if (!best || seq < best.seq) best = { eventId, seq };
    }
    return best?.eventId;
  }

  /**
   * Leases up to `max` held purchases of the event and inspects them under the index's lock: those still
   * queued make the batch (their order is the queue's), the others are dropped. Null when none is left.
   */
  async #take(eventId: string, workerId: string, max: number, leaseMs: number): Promise<ClaimedBatch | null> {
    const list = this.#events.get(eventId)!;
    const candidates: Delivery[] = [];
    const duplicates: Delivery[] = [];
    const seen = new Set<string>();
    for (const d of list) {
      if (candidates.length >= max) break;
      // A second copy of a purchase (replayed while an old copy was still out): the first one stands.
      if (seen.has(d.purchase.purchaseId)) duplicates.push(d);
      else candidates.push(d);
      seen.add(d.purchase.purchaseId);
    }
    const partition = candidates[0]!.partition;
    // Leased before the await, so that no other worker of this process takes the event meanwhile.
    const lease = this.#lease(eventId, workerId, partition, leaseMs);
    const found = await this.#index.inspect(
      partition,
      candidates.map((d) => d.purchase.purchaseId),
    );
    if (this.#leases.get(eventId) !== lease) return null; // the partition was lost meanwhile
    const byId = new Map(candidates.map((d) => [d.purchase.purchaseId, d]));
    this.#finish([...found.gone.map((id) => byId.get(id)!), ...duplicates], 'ack');
    this.#finish(
      found.dead.map((id) => byId.get(id)!),
      'reject',
    );
    if (found.queued.length === 0) {
      this.#unleaseToken(eventId, lease.token);
      return null;
    }
    const batch = found.queued.map((id) => byId.get(id)!);
    return {
      eventId,
      purchases: batch.map((d) => d.purchase),
      receipts: batch,
      deliveries: found.headClaims,
      lease: lease.token,
    };
  }

  #lease(eventId: string, workerId: string, partition: number, leaseMs: number): Lease {
    const old = this.#leases.get(eventId);
    if (old) clearTimeout(old.timer);
    const token = this.#nextToken++;
    const timer = setTimeout(() => {
      // The lease ran out with its batch neither acked nor released: its worker is stuck (or, in the
      // contract tests, "dead"). Hand the partition over, as the port promises another worker the batch.
      if (this.#leases.get(eventId)?.token === token) this.#broker.handover(partition, HANDOVER_PAUSE_MS);
    }, leaseMs);
    timer.unref();
    const lease = { token, workerId, partition, expiresAt: Date.now() + leaseMs, timer };
    this.#leases.set(eventId, lease);
    return lease;
  }

  #unlease(batch: ClaimedBatch): void {
    this.#unleaseToken(batch.eventId, batch.lease as number);
  }

  #unleaseToken(eventId: string, token: number): void {
    const lease = this.#leases.get(eventId);
    if (lease?.token !== token) return;
    clearTimeout(lease.timer);
    this.#leases.delete(eventId);
  }

  /**
   * Takes deliveries out of the buffer (one pass per event: a batch may be 10,000 of a 20,000 prefetch) and
   * acks or rejects each on the broker, by its own tag, if its channel still lives.
   */
  #finish(deliveries: readonly Delivery[], how: 'ack' | 'reject'): void {
    const done = new Set(deliveries);
    for (const eventId of new Set(deliveries.map((d) => d.purchase.eventId))) {
      const list = this.#events.get(eventId);
      if (!list) continue;
      const kept = list.filter((d) => !done.has(d));
      if (kept.length > 0) this.#events.set(eventId, kept);
      else this.#events.delete(eventId);
    }
    for (const d of deliveries) {
      const c = d.carrier;
      if (c.left === 0) continue; // its message is done already: a purchase never counts twice
      c.left -= 1;
      if (how === 'reject') c.dead += 1;
      if (c.left > 0) continue;
      // The message goes when its last purchase does. A copy goes to `{prefix}.dead` only when every
      // purchase in it was dead-lettered; the index is what says which purchases are dead either way.
      const view = this.#views[c.partition]!;
      if (view.generation === c.generation) view.held -= 1;
      if (c.dead === c.size) this.#broker.reject(c.partition, c.generation, c.message);
      else this.#broker.ack(c.partition, c.generation, c.message);
    }
  }
}

function freshView(): PartitionView {
  return { activity: 'unknown', held: 0, received: 0, generation: null };
}

/**
 * The index lives in the deployment's database, which must be PostgreSQL: the broker serves processes on
 * many machines, and an index in one machine's file would serve only that one (config refuses the pair).
 */
function openIndex(databaseUrl: string, prefix: string): PurchaseIndex {
  if (/^postgres(ql)?:/i.test(databaseUrl)) return new PostgresIndex(databaseUrl, prefix);
  throw new Error(
    `the RabbitMQ queue keeps its index in the database, which must be PostgreSQL (postgres:), not "${databaseUrl}"`,
  );
}

/** The purchases a message carries, each with its seq, or null if it is not one onsale published. */
function parseMessage(message: ConsumeMessage): Array<{ purchase: AcceptedPurchase; seq: number }> | null {
  const headers = message.properties.headers ?? {};
  let body: unknown;
  try {
    body = JSON.parse(message.content.toString('utf8'));
  } catch {
    return null; // not JSON
  }
  if (!Array.isArray(body)) {
    const purchase = asPurchase(body);
    const seq = Number(headers[SEQ_HEADER]);
    return purchase && Number.isSafeInteger(seq) ? [{ purchase, seq }] : null;
  }
  const seqs: unknown = headers[SEQS_HEADER];
  if (!Array.isArray(seqs) || seqs.length !== body.length || body.length === 0) return null;
  const carried: Array<{ purchase: AcceptedPurchase; seq: number }> = [];
  for (let i = 0; i < body.length; i++) {
    const purchase = asPurchase(body[i]);
    const seq = Number(seqs[i]);
    if (
      !purchase ||
      !Number.isSafeInteger(seq) ||
      (i > 0 && purchase.eventId !== carried[0]!.purchase.eventId)
    )
      return null;
    carried.push({ purchase, seq });
  }
  return carried;
}

/** A value as a purchase, or null if it is not one onsale published. */
function asPurchase(value: unknown): AcceptedPurchase | null {
  const v = value as Partial<AcceptedPurchase> | null;
  if (
    v &&
    typeof v === 'object' &&
    typeof v.purchaseId === 'string' &&
    typeof v.eventId === 'string' &&
    typeof v.buyerId === 'string' &&
    typeof v.acceptedAt === 'string' &&
    Array.isArray(v.items)
  ) {
    return withCanonicalBuyerId(v as AcceptedPurchase);
  }
  return null;
}
