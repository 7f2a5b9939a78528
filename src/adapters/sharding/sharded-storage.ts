import { UnavailableError } from '../../domain/errors.js';
import type { NewEvent, Purchase, PurchaseStatus, SaleEvent } from '../../domain/types.js';
import { newId, withShardTag } from '../../shared/ids.js';
import type { StatusChange } from '../../domain/checkout.js';
import type {
  BatchResult,
  CancelResult,
  PaymentHistoryEntry,
  PaymentRecord,
  PaymentStart,
  PaymentUpdate,
  Storage,
} from '../../ports/storage.js';
import { PostgresStorage } from '../postgres/storage.js';
import { ReplicaFreshness } from './replica-freshness.js';
import { Shards } from './shards.js';
import { groupBy } from '../../shared/group-by.js';

/** Where a read was served from, for the metric that counts them. */
export type ReadTarget = 'primary' | 'replica';

export interface ShardSpec {
  url: string;
  /** A streaming replica of this shard's primary, for reads; none: every read goes to the primary. */
  replicaUrl?: string;
}

export interface ShardedStorageOptions {
  /** Called for every read by where it was served (the read metric). */
  onRead?: (target: ReadTarget) => void;
  /** Reads go to a replica only while its data is fresher than this (ms). */
  maxReplicaLagMs?: number;
  /** How often each replica's freshness is measured (ms). */
  replicaCheckMs?: number;
}

/**
 * api.md allows event pages and availability to be up to a second old. A replica serves reads while it is
 * under half of that behind, which leaves the other half to the web server's availability cache
 * (src/web/event-cache.ts, 500 ms): what a buyer sees is never a second old either way.
 */
const MAX_REPLICA_LAG_MS = 500;
const REPLICA_CHECK_MS = 100;
/** A replica read slower than this is abandoned for the primary: a buyer never waits on a stuck replica. */
const REPLICA_READ_TIMEOUT_MS = 1_000;

/** One shard: its primary, and its replica with the measure of the replica's freshness. */
interface Shard {
  primary: PostgresStorage;
  replica: { storage: PostgresStorage; freshness: ReplicaFreshness } | null;
}

/**
 * Storage over several PostgreSQL databases (shards), each event on one, with optional streaming replicas
 * serving reads. It composes one PostgresStorage per shard (and per replica) and routes each call:
 *
 * - by event: the event id's shard tag (src/shared/ids.ts) names its shard; an untagged id lives on the
 *   first shard (events from before sharding). Adding a shard at the end of ONSALE_DATABASE_URL moves no
 *   event: old ids keep naming their shards, and new events spread over all of them.
 * - by purchase: a purchase id carries its event's tag; an untagged one is looked for on every shard.
 * - reads a buyer makes (event, availability, purchase, statuses, the event list) go to the shard's
 *   replica while it is fresh (ReplicaFreshness), else to the primary; something the replica does not
 *   have (yet) is asked of the primary, so a lagging replica never makes a purchase or event look unknown.
 * - everything that decides or writes (allocation, event creation, stats the admin acts on) goes to the
 *   primary.
 *
 * A shard that is down fails its own events' calls (UnavailableError: 503) and nothing else: lists and
 * pings answer from the shards that do (see Shards). A new port method is one line: `#event`,
 * `#read`, `#purchase` or `#everywhere` with the call to make.
 */
export class ShardedStorage implements Storage {
  readonly #shards: Shards<Shard>;
  readonly #onRead: (target: ReadTarget) => void;
  /** Where the next event goes: round robin from a random start, so that processes spread events too. */
  #next: number;

  constructor(specs: readonly ShardSpec[], options: ShardedStorageOptions = {}) {
    const tagged = specs.length > 1;
    const maxLagMs = options.maxReplicaLagMs ?? MAX_REPLICA_LAG_MS;
    const intervalMs = options.replicaCheckMs ?? REPLICA_CHECK_MS;
    this.#shards = new Shards(
      specs.map((spec, index): Shard => {
        const primary = new PostgresStorage(spec.url, {
          // One database: ids stay as they always were, so a shard added later finds them on shard 0.
          newEventId: tagged ? () => withShardTag(newId(), index) : newId,
        });
        if (!spec.replicaUrl) return { primary, replica: null };
        const freshness = new ReplicaFreshness(spec.url, spec.replicaUrl, { intervalMs, maxLagMs });
        freshness.start();
        return {
          primary,
          replica: { storage: new PostgresStorage(spec.replicaUrl, { retry: false }), freshness },
        };
      }),
    );
    this.#onRead = options.onRead ?? (() => undefined);
    this.#next = Math.floor(Math.random() * specs.length);
  }

  /** The shard an event lives on, or null when its id names none. */
  shardOf(eventId: string): number | null {
    return this.#shards.ofEvent(eventId);
  }

  /** Each replica's lag in ms (null: no replica, or it does not answer), in shard order. */
  replicaLags(): Array<number | null> {
    return this.#shards.all.map((s) => s.replica?.freshness.lagMs() ?? null);
  }

  async migrate(): Promise<void> {
    await Promise.all(this.#shards.all.map((s) => s.primary.migrate()));
  }

  async createEvent(event: NewEvent): Promise<SaleEvent> {
    // The next shard in turn, or the one after if it is down: creating an event needs any shard.
    let failure: unknown = null;
    for (let tried = 0; tried < this.#shards.count; tried++) {
      const index = this.#next;
      this.#next = (this.#next + 1) % this.#shards.count;
      if (this.#shards.resting(index)) continue;
      try {
        return await this.#shards.on(index, (s) => s.primary.createEvent(event));
      } catch (error) {
        if (!(error instanceof UnavailableError)) throw error;
        failure = error;
      }
    }
    throw failure ?? new UnavailableError('no database shard is available');
  }

  async listEvents(): Promise<Array<Pick<SaleEvent, 'id' | 'name' | 'salesOpenAt'>>> {
    const lists = await this.#everywhere((shard) => this.#readOn(shard, (s) => s.listEvents()));
    return lists.flat().sort((a, b) => compare(a.salesOpenAt, b.salesOpenAt) || compare(a.id, b.id));
  }

  getEvent(eventId: string): Promise<SaleEvent | null> {
    return this.#read(
      eventId,
      null,
      (s) => s.getEvent(eventId),
      (e) => e === null,
    );
  }

  getAvailability(eventId: string): Promise<Map<string, number>> {
    return this.#read(
      eventId,
      new Map(),
      (s) => s.getAvailability(eventId),
      (m) => m.size === 0,
    );
  }

  async getStats(eventId: string) {
    const stats = await this.#event(eventId, null, (s) => s.getStats(eventId));
    if (stats && this.#shards.count > 1) stats.shard = this.#shards.ofEvent(eventId)!;
    return stats;
  }

  async getPurchase(purchaseId: string): Promise<Purchase | null> {
    const found = await this.#purchase(purchaseId, (shard) =>
      this.#readOn(
        shard,
        (s) => s.getPurchase(purchaseId),
        (p) => p === null,
      ),
    );
    return found.find((p) => p !== null) ?? null;
  }

  async getStatuses(
    purchaseIds: readonly string[],
  ): Promise<Map<string, { status: PurchaseStatus; updatedAt: string }>> {
    const byShard = groupBy(
      purchaseIds.flatMap((id) => this.#shards.ofPurchase(id).map((index) => ({ id, index }))),
      (x) => x.index,
    );
    const answers = await this.#shards.answering(
      (shard, index) =>
        this.#statusesOn(
          shard,
          byShard.get(index)!.map((x) => x.id),
        ),
      [...byShard.keys()],
    );
    return new Map(answers.flatMap((a) => [...a.value]));
  }

  listPurchases(eventId: string, options: { match?: string; limit: number }): Promise<Purchase[]> {
    return this.#event(eventId, [], (s) => s.listPurchases(eventId, options));
  }

  // Checkout: a purchase's calls go to its shard; sweeps run on every shard; the payment provider's own
  // state (not tied to one event) lives on the first shard.

  async expireHolds(now: Date, limit: number): Promise<StatusChange[]> {
    return (await this.#everywhere((s) => s.primary.expireHolds(now, limit))).flat();
  }

  async cancelPurchase(purchaseId: string, now: Date): Promise<CancelResult | null> {
    const answers = await this.#purchase(purchaseId, (s) => s.primary.cancelPurchase(purchaseId, now));
    return answers.find((a) => a !== null) ?? null;
  }

  async beginPayment(purchaseId: string, attemptKey: string, now: Date): Promise<PaymentStart | null> {
    const answers = await this.#purchase(purchaseId, (s) =>
      s.primary.beginPayment(purchaseId, attemptKey, now),
    );
    return answers.find((a) => a !== null) ?? null;
  }

  async recordPayment(purchaseId: string, update: PaymentUpdate, now: Date): Promise<PaymentRecord> {
    const answers = await this.#purchase(purchaseId, (s) => s.primary.recordPayment(purchaseId, update, now));
    const found = answers.find((a) => a.purchase !== null) ?? answers[0];
    if (!found) throw new UnavailableError('no database shard answered');
    return found;
  }

  async paymentWork(now: Date, limit: number): Promise<Array<{ purchaseId: string; refundDue: boolean }>> {
    return (await this.#everywhere((s) => s.primary.paymentWork(now, limit))).flat();
  }

  async paymentHistory(purchaseId: string): Promise<PaymentHistoryEntry[]> {
    const answers = await this.#purchase(purchaseId, (s) => s.primary.paymentHistory(purchaseId));
    return answers.find((a) => a.length > 0) ?? [];
  }

  providerState(provider: string, key: string): Promise<{ value: string; version: number } | null> {
    return this.#shards.on(0, (s) => s.primary.providerState(provider, key));
  }

  setProviderState(provider: string, key: string, value: string, expected: number | null): Promise<boolean> {
    return this.#shards.on(0, (s) => s.primary.setProviderState(provider, key, value, expected));
  }

  purchasesPage(eventId: string, afterId: string | null, limit: number): Promise<Purchase[]> {
    return this.#event(eventId, [], (s) => s.purchasesPage(eventId, afterId, limit));
  }

  applyBatch(
    eventId: string,
    purchases: Parameters<Storage['applyBatch']>[1],
    ack?: Parameters<Storage['applyBatch']>[2],
  ): Promise<BatchResult> {
    // The queue's tables are not in one shard's database: its ack is never part of a shard's transaction.
    if (ack) throw new Error('a sharded storage cannot take the queue’s ack into applyBatch');
    const index = this.#shards.ofEvent(eventId);
    if (index === null) throw new Error(`event ${eventId} names no database shard of this configuration`);
    return this.#shards.on(index, (s) => s.primary.applyBatch(eventId, purchases));
  }

  /** Ready while any shard answers: the others' sales go on while one is down. */
  async ping(): Promise<void> {
    await this.#everywhere((shard) => shard.primary.ping());
  }

  async close(): Promise<void> {
    await Promise.all(
      this.#shards.all.map((s) =>
        Promise.all([s.primary.close(), s.replica?.storage.close(), s.replica?.freshness.close()]),
      ),
    );
  }

  // ——— Routing ———

  /** A decision or admin read about one event: on its shard's primary; `none` when its id names no shard. */
  async #event<T>(eventId: string, none: T, call: (storage: Storage) => Promise<T>): Promise<T> {
    const index = this.#shards.ofEvent(eventId);
    if (index === null) return none;
    return this.#shards.on(index, (s) => call(s.primary));
  }

  /** A buyer's read about one event: on its shard's replica while fresh (see #readOn). */
  async #read<T>(
    eventId: string,
    none: T,
    call: (storage: Storage) => Promise<T>,
    missing: (value: T) => boolean,
  ): Promise<T> {
    const index = this.#shards.ofEvent(eventId);
    if (index === null) return none;
    return this.#shards.on(index, (shard) => this.#readOn(shard, call, missing));
  }

  /** A call on every shard that may hold the purchase; the answers of those that answered. */
  async #purchase<T>(purchaseId: string, call: (shard: Shard) => Promise<T>): Promise<T[]> {
    const answers = await this.#shards.answering(call, this.#shards.ofPurchase(purchaseId));
    return answers.map((a) => a.value);
  }

  /** A call on every shard; the answers of those that answered (all down: the first failure). */
  async #everywhere<T>(call: (shard: Shard) => Promise<T>): Promise<T[]> {
    return (await this.#shards.answering(call)).map((a) => a.value);
  }

  /**
   * Reads from the shard's replica while it is fresh, else from the primary. What the replica answers as
   * `missing` (not there yet) is read again from the primary.
   */
  async #readOn<T>(
    shard: Shard,
    call: (storage: Storage) => Promise<T>,
    missing: (value: T) => boolean = () => false,
  ): Promise<T> {
    const fromReplica = await this.#fromReplica(shard, call);
    if (fromReplica && !missing(fromReplica.value)) return fromReplica.value;
    this.#onRead('primary');
    return call(shard.primary);
  }

  /**
   * The replica's answer while it is fresh; null when it is not, or when it fails or does not answer in
   * time: it is then dropped until its next fresh measure, and the caller reads the primary. The buyer
   * sees no error.
   */
  async #fromReplica<T>(shard: Shard, call: (storage: Storage) => Promise<T>): Promise<{ value: T } | null> {
    const replica = shard.replica;
    if (!replica?.freshness.usable()) return null;
    try {
      const value = await withTimeout(call(replica.storage), REPLICA_READ_TIMEOUT_MS);
      this.#onRead('replica');
      return { value };
    } catch {
      replica.freshness.failed();
      return null;
    }
  }

  /** Statuses of `ids` on one shard: from its replica while fresh, those it lacks from the primary. */
  async #statusesOn(
    shard: Shard,
    ids: readonly string[],
  ): Promise<Map<string, { status: PurchaseStatus; updatedAt: string }>> {
    const fromReplica = await this.#fromReplica(shard, (s) => s.getStatuses(ids));
    const found = fromReplica?.value ?? new Map<string, { status: PurchaseStatus; updatedAt: string }>();
    // Applied but not yet replayed, or still queued: only the primary can tell.
    const lacking = ids.filter((id) => !found.has(id));
    if (lacking.length === 0) return found;
    this.#onRead('primary');
    const more = await shard.primary.getStatuses(lacking);
    return new Map([...found, ...more]);
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
