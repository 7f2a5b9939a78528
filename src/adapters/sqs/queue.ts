import { createHash } from 'node:crypto';
import {
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  QueueDoesNotExist,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  SQSClient,
  type Message,
  type SendMessageBatchRequestEntry,
} from '@aws-sdk/client-sqs';
import { withCanonicalBuyerId } from '../../domain/buyer.js';
import { UnavailableError } from '../../domain/errors.js';
import type { AcceptedPurchase } from '../../domain/types.js';
import type { ClaimedBatch, DeadLetter, EnqueueRequest, EnqueueResult, Queue } from '../../ports/queue.js';
import { groupBy } from '../../shared/group-by.js';
import { SqsIndex, type IndexedPurchase } from './index-store.js';
import { parseSqsUrl, type SqsSettings } from './url.js';

/**
 * A message body stays under this many bytes (SQS takes 256 KiB per message and per SendMessageBatch
 * request; a body of this size leaves room for a second one and the request's own fields).
 */
const MAX_BODY_BYTES = 120_000;
/** SendMessageBatch takes 10 entries and 256 KiB in all. */
const MAX_BATCH_ENTRIES = 10;
const MAX_BATCH_BYTES = 250_000;
/**
 * A message received this many times goes to the dead-letter queue (SQS's most). The adapter's own dead
 * letters are the index's (the worker decides them); this only sets aside what keeps coming back unread.
 */
const MAX_RECEIVE_COUNT = 1000;
/** Messages a claim looks at before it answers null (each one spent deletes itself). */
const MAX_TURNS = 100;
/** A lease is taken again by its worker only while this much of it is left (its messages still held). */
const LEASE_MARGIN_MS = 250;
/** How long one SQS request may take before it counts as failed (a long poll adds its wait). */
const REQUEST_TIMEOUT_MS = 5_000;

/** A message this process holds: received, not deleted, invisible to others until its lease runs out. */
interface Held {
  handle: string;
  purchaseIds: string[];
}

/** The lease of one event: the message(s) of its group this process holds for a worker. */
interface Lease {
  workerId: string;
  eventId: string;
  held: Held[];
  expiresAt: number;
}

/**
 * The Amazon SQS queue (`sqs://NAME?…`, see url.ts): a FIFO queue `NAME.fifo` with a dead-letter queue
 * `NAME-dead.fifo` (a redrive policy), and an index in PostgreSQL (the deployment's database).
 *
 * Messages. One enqueue call sends one message per event (more when its purchases pass MAX_BODY_BYTES),
 * the event's purchases as a JSON array, with the event as MessageGroupId and the first purchase's id and
 * sequence number as MessageDeduplicationId (a retried send within SQS's five minutes is dropped by SQS;
 * a replayed dead letter has a new sequence number, so it is not). A message is the durable record of the
 * acceptance on SQS, and holding one is holding its event: while a message of a group is in flight, FIFO
 * SQS delivers no other message of that group, to anyone. So a claim receives one message, and its
 * visibility timeout (the claim's lease, rounded up to whole seconds) is the lease of the whole event.
 *
 * The index. SQS returns a group's messages one receive at a time (at most 10, and fauxqs one), cannot
 * say what is queued for an event, and forgets deduplication after five minutes; the index (index-store.ts)
 * holds each queued purchase with its acceptance sequence number, the idempotency keys, the dead letters
 * and the claim counts. A claim that holds an event's message reads the event's oldest purchases from the
 * index, across as many messages as they came in. A message is deleted only when none of its purchases is
 * queued any more; a message received with all its purchases gone (acked through a later one) is deleted
 * then, and the claim receives the next. A lease that runs out makes the message visible again to any
 * worker, which is what the port asks of a crashed worker's batch.
 *
 * A queue that has vanished (deleted, or an emulator restarted empty) is created again, and every purchase
 * the index still holds is sent again, so an accepted purchase is never stranded without a message.
 */
export class SqsQueue implements Queue {
  readonly #settings: SqsSettings;
  readonly #index: SqsIndex;
  readonly #client: SQSClient;
  /** The queues' URLs, looked up (or created) once, and again when SQS says the queue does not exist. */
  #urls: Promise<{ main: string }> | undefined;
  /** Leases this process holds, by event: a worker that claims again takes its own event again. */
  readonly #leases = new Map<string, Lease>();
  /** Receives in flight: close() waits for them (a long poll ends within `wait`) and shows what they got. */
  readonly #receiving = new Set<Promise<unknown>>();
  #closed = false;

  constructor(url: string, databaseUrl: string) {
    this.#settings = parseSqsUrl(url);
    this.#index = openIndex(databaseUrl, this.#settings.name);
    this.#client = new SQSClient({
      ...(this.#settings.endpoint ? { endpoint: this.#settings.endpoint } : {}),
      // An emulator needs some region; real SQS takes it from the URL or the SDK's own settings.
      ...(this.#settings.region
        ? { region: this.#settings.region }
        : this.#settings.endpoint && !process.env.AWS_REGION
          ? { region: 'us-east-1' }
          : {}),
      maxAttempts: 2,
      requestHandler: { connectionTimeout: 2_000, requestTimeout: REQUEST_TIMEOUT_MS },
    });
  }

  async migrate(): Promise<void> {
    await this.#index.migrate();
    await this.#sqs(() => this.#queueUrls());
  }

  async enqueue(requests: readonly EnqueueRequest[]): Promise<EnqueueResult[]> {
    if (requests.length === 0) return [];
    return this.#index.record(requests, (accepted) => this.#publish(accepted));
  }

  async claim(workerId: string, max: number, leaseMs: number): Promise<ClaimedBatch | null> {
    if (this.#closed) return null;
    const seconds = visibilitySeconds(leaseMs);
    // A worker claiming again while it holds an event (a retry after a failed batch) takes it again.
    const own = [...this.#leases.values()].find(
      (l) => l.workerId === workerId && l.expiresAt > Date.now() + LEASE_MARGIN_MS,
    );
    if (own && (await this.#extend(own, seconds))) {
      const batch = await this.#batchOf(own, max);
      if (batch) return batch;
      await this.#settle(own);
    }
    for (let turn = 0; turn < MAX_TURNS && !this.#closed; turn++) {
      const startedAt = Date.now();
      const message = await this.#receive(seconds);
      if (!message) return null;
      const purchases = parseBody(message.Body);
      if (!purchases) {
        // Not onsale's (someone sent it by hand): left to the redrive policy rather than looped on at once.
        continue;
      }
      const eventId = purchases[0]!.eventId;
      const lease: Lease = {
        workerId,
        eventId,
        held: [{ handle: message.ReceiptHandle!, purchaseIds: purchases.map((p) => p.purchaseId) }],
        // Counted from before the receive: never later than SQS's own deadline.
        expiresAt: startedAt + seconds * 1000,
      };
      this.#leases.set(eventId, lease);
      const batch = await this.#batchOf(lease, max);
      if (batch) return batch;
      await this.#settle(lease); // nothing of the event is queued: the message is spent
    }
    return null;
  }

  async ack(batch: ClaimedBatch): Promise<void> {
    // The index first: once its rows are gone, a message still holding them is spent, never redone.
    await this.#index.remove(batch.receipts as string[]);
    await this.#settle(batch.lease as Lease);
  }

  async release(batch: ClaimedBatch): Promise<void> {
    const lease = batch.lease as Lease;
    this.#unlease(lease);
    if (lease.expiresAt > Date.now()) await this.#showAgain(lease.held);
  }

  async deadLetter(batch: ClaimedBatch, reason: string): Promise<void> {
    await this.#index.bury(batch.receipts as string[], reason);
    await this.#settle(batch.lease as Lease);
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    return this.#index.deadLetters(limit);
  }

  async replayDeadLetters(purchaseIds?: readonly string[]): Promise<number> {
    return this.#index.revive(purchaseIds, (revived) => this.#publish(revived));
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
    await Promise.all([
      this.#index.ping(),
      this.#sqs(async () => {
        const { main } = await this.#queueUrls();
        await this.#client.send(
          new GetQueueAttributesCommand({ QueueUrl: main, AttributeNames: ['QueueArn'] }),
        );
      }),
    ]);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Not aborted: SQS may have handed out a message already, which would stay invisible for a whole lease.
    await Promise.allSettled([...this.#receiving]);
    // What this process holds goes back at once, rather than when its leases run out.
    const held = [...this.#leases.values()].filter((l) => l.expiresAt > Date.now()).flatMap((l) => l.held);
    this.#leases.clear();
    await this.#showAgain(held);
    this.#client.destroy();
    await this.#index.close();
  }

  /** The lease's batch: the event's oldest queued purchases (up to `max`), or null when none is queued. */
  async #batchOf(lease: Lease, max: number): Promise<ClaimedBatch | null> {
    const taken = await this.#index.take(lease.eventId, max);
    if (!taken) return null;
    return {
      eventId: lease.eventId,
      purchases: taken.purchases,
      receipts: taken.purchases.map((p) => p.purchaseId),
      deliveries: taken.claims,
      lease,
    };
  }

  /**
   * Ends a lease: deletes each held message none of whose purchases is queued any more, and shows the
   * others again at once (only while the lease holds: after it, another worker may hold them). Best
   * effort: a message left behind comes back when its visibility ends, and is settled then.
   */
  async #settle(lease: Lease): Promise<void> {
    this.#unlease(lease);
    try {
      const queued = await this.#index.stillQueued(lease.held.flatMap((h) => h.purchaseIds));
      const spent = lease.held.filter((h) => h.purchaseIds.every((id) => !queued.has(id)));
      const kept = lease.held.filter((h) => !spent.includes(h));
      const { main } = await this.#queueUrls();
      await Promise.all(
        spent.map((h) =>
          this.#client.send(new DeleteMessageCommand({ QueueUrl: main, ReceiptHandle: h.handle })),
        ),
      );
      if (lease.expiresAt > Date.now()) await this.#showAgain(kept);
    } catch {
      // Left for the visibility timeout (see above).
    }
  }

  /** Makes held messages visible again now. Best effort, as #settle. */
  async #showAgain(held: readonly Held[]): Promise<void> {
    if (held.length === 0) return;
    try {
      const { main } = await this.#queueUrls();
      await Promise.all(
        held.map((h) =>
          this.#client.send(
            new ChangeMessageVisibilityCommand({
              QueueUrl: main,
              ReceiptHandle: h.handle,
              VisibilityTimeout: 0,
            }),
          ),
        ),
      );
    } catch {
      // Visible again when their timeout ends.
    }
  }

  /** Extends a lease the worker takes again; false when SQS no longer lets this process hold it. */
  async #extend(lease: Lease, seconds: number): Promise<boolean> {
    const startedAt = Date.now();
    try {
      const { main } = await this.#queueUrls();
      await Promise.all(
        lease.held.map((h) =>
          this.#client.send(
            new ChangeMessageVisibilityCommand({
              QueueUrl: main,
              ReceiptHandle: h.handle,
              VisibilityTimeout: seconds,
            }),
          ),
        ),
      );
      lease.expiresAt = startedAt + seconds * 1000;
      return true;
    } catch {
      this.#unlease(lease);
      return false;
    }
  }

  #unlease(lease: Lease): void {
    if (this.#leases.get(lease.eventId) === lease) this.#leases.delete(lease.eventId);
  }

  /** One message, held for `seconds`, after a long poll of the URL's `wait`; null when none came. */
  async #receive(seconds: number): Promise<Message | null> {
    const receiving = this.#receiveOnce(seconds);
    this.#receiving.add(receiving);
    try {
      return await receiving;
    } finally {
      this.#receiving.delete(receiving);
    }
  }

  async #receiveOnce(seconds: number): Promise<Message | null> {
    try {
      const message = await this.#sqs(async () => {
        const { main } = await this.#queueUrls();
        const answer = await this.#client.send(
          new ReceiveMessageCommand({
            QueueUrl: main,
            MaxNumberOfMessages: 1,
            WaitTimeSeconds: this.#settings.waitSeconds,
            VisibilityTimeout: seconds,
          }),
          { requestTimeout: REQUEST_TIMEOUT_MS + this.#settings.waitSeconds * 1000 },
        );
        return answer.Messages?.[0] ?? null;
      });
      if (message && this.#closed) {
        // Came after close(): handed back at once to whoever claims next.
        await this.#showAgain([{ handle: message.ReceiptHandle!, purchaseIds: [] }]);
        return null;
      }
      return message;
    } catch (error) {
      if (this.#closed) return null;
      throw error;
    }
  }

  /**
   * Sends the purchases, one message per event and body (see MAX_BODY_BYTES), in SendMessageBatch
   * requests of up to 10; resolves once SQS has taken every one.
   */
  async #publish(purchases: readonly IndexedPurchase[]): Promise<void> {
    const entries = toEntries(purchases);
    const requests: SendMessageBatchRequestEntry[][] = [];
    let bytes = 0;
    for (const entry of entries) {
      const last = requests.at(-1);
      const size = Buffer.byteLength(entry.MessageBody!);
      if (last && last.length < MAX_BATCH_ENTRIES && bytes + size <= MAX_BATCH_BYTES) {
        last.push(entry);
        bytes += size;
      } else {
        requests.push([entry]);
        bytes = size;
      }
    }
    await this.#sqs(async () => {
      const { main } = await this.#queueUrls();
      await Promise.all(
        requests.map(async (batch) => {
          const answer = await this.#client.send(
            new SendMessageBatchCommand({ QueueUrl: main, Entries: batch }),
          );
          const failed = answer.Failed ?? [];
          if (failed.length > 0) {
            const first = failed[0]!;
            throw Object.assign(
              new Error(`SQS refused ${failed.length} message(s): ${first.Code} ${first.Message}`),
              {
                $fault: first.SenderFault ? 'client' : 'server',
              },
            );
          }
        }),
      );
    });
  }

  /**
   * Runs SQS requests: once more after a fresh look-up when the queue does not exist (created again, see
   * the class comment); a failure of SQS itself becomes UnavailableError (the buyer gets a 503, the worker
   * backs off). A request SQS refuses as malformed stays what it is: a bug.
   */
  async #sqs<T>(work: () => Promise<T>): Promise<T> {
    try {
      try {
        return await work();
      } catch (error) {
        if (!(error instanceof QueueDoesNotExist)) throw error;
        this.#urls = undefined;
        return await work();
      }
    } catch (error) {
      if (isRefusal(error)) throw error;
      throw new UnavailableError(`SQS does not answer (${describe(error)})`, error);
    }
  }

  #queueUrls(): Promise<{ main: string }> {
    this.#urls ??= this.#openQueues().catch((error: unknown) => {
      this.#urls = undefined;
      throw error;
    });
    return this.#urls;
  }

  /**
   * Looks up the two queues, creating what is missing. When the main queue had to be created while the
   * index holds queued purchases (SQS lost it), they are sent again.
   */
  async #openQueues(): Promise<{ main: string }> {
    const { name } = this.#settings;
    const dead = await this.#queueUrl(`${name}-dead.fifo`, { FifoQueue: 'true' });
    const arn = await this.#client.send(
      new GetQueueAttributesCommand({ QueueUrl: dead.url, AttributeNames: ['QueueArn'] }),
    );
    const main = await this.#queueUrl(`${name}.fifo`, {
      FifoQueue: 'true',
      RedrivePolicy: JSON.stringify({
        deadLetterTargetArn: arn.Attributes!.QueueArn,
        maxReceiveCount: MAX_RECEIVE_COUNT,
      }),
      // High-throughput FIFO: quotas and deduplication per message group (per event), not per queue.
      DeduplicationScope: 'messageGroup',
      FifoThroughputLimit: 'perMessageGroupId',
    });
    if (main.created) {
      const queued = await this.#index.all();
      if (queued.length > 0) await this.#sendAll(main.url, queued);
    }
    return { main: main.url };
  }

  async #queueUrl(
    queueName: string,
    attributes: Record<string, string>,
  ): Promise<{ url: string; created: boolean }> {
    try {
      const found = await this.#client.send(new GetQueueUrlCommand({ QueueName: queueName }));
      return { url: found.QueueUrl!, created: false };
    } catch (error) {
      if (!(error instanceof QueueDoesNotExist)) throw error;
    }
    const made = await this.#client.send(
      new CreateQueueCommand({ QueueName: queueName, Attributes: attributes }),
    );
    return { url: made.QueueUrl!, created: true };
  }

  /** Sends purchases to a queue just created, one message per event and body, without the look-up. */
  async #sendAll(url: string, purchases: readonly IndexedPurchase[]): Promise<void> {
    for (const entry of toEntries(purchases)) {
      await this.#client.send(
        new SendMessageCommand({
          QueueUrl: url,
          MessageBody: entry.MessageBody,
          MessageGroupId: entry.MessageGroupId,
          MessageDeduplicationId: entry.MessageDeduplicationId,
        }),
      );
    }
  }
}

/** The visibility timeout of a lease: whole seconds, rounded up (never shorter than the lease). */
export function visibilitySeconds(leaseMs: number): number {
  return Math.min(43_200, Math.max(1, Math.ceil(leaseMs / 1000)));
}

/** One entry per event and body, each event's purchases in acceptance order. */
function toEntries(purchases: readonly IndexedPurchase[]): SendMessageBatchRequestEntry[] {
  const byEvent = groupBy(
    [...purchases].sort((a, b) => a.seq - b.seq),
    (p) => p.purchase.eventId,
  );
  const entries: SendMessageBatchRequestEntry[] = [];
  for (const [eventId, list] of byEvent) {
    let body: string[] = [];
    let bytes = 2;
    let first: IndexedPurchase | undefined;
    const flush = () => {
      if (!first) return;
      entries.push({
        Id: String(entries.length),
        MessageBody: `[${body.join(',')}]`,
        MessageGroupId: sqsId(eventId),
        MessageDeduplicationId: sqsId(`${first.purchase.purchaseId}:${first.seq}`),
      });
      [body, bytes, first] = [[], 2, undefined];
    };
    for (const p of list) {
      const json = asciiJson(p.purchase);
      const size = Buffer.byteLength(json) + 1;
      if (first && bytes + size > MAX_BODY_BYTES) flush();
      first ??= p;
      body.push(json);
      bytes += size;
    }
    flush();
  }
  return entries;
}

/**
 * JSON of `value` in ASCII only: SQS refuses a body with some characters (control characters, and in
 * emulators anything past U+FFFD), so every non-ASCII one travels as a \uXXXX escape, which JSON.parse
 * reads back unchanged.
 */
function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/**
 * A group or deduplication id: the text itself when SQS takes it (up to 128 printable ASCII characters),
 * else its SHA-256 (event and purchase ids are this server's, so the hash is for odd ids only).
 */
function sqsId(text: string): string {
  return /^[\x21-\x7e]{1,128}$/.test(text) ? text : createHash('sha256').update(text).digest('hex');
}

/** The purchases of a message body, all of one event, or null if it is not one onsale sent. */
function parseBody(body: string | undefined): AcceptedPurchase[] | null {
  try {
    const value = JSON.parse(body ?? '') as unknown;
    if (!Array.isArray(value) || value.length === 0) return null;
    const purchases = value as Array<Partial<AcceptedPurchase> | null>;
    const eventId = purchases[0]?.eventId;
    const wellFormed = purchases.every(
      (p) =>
        p &&
        typeof p.purchaseId === 'string' &&
        p.eventId === eventId &&
        typeof p.eventId === 'string' &&
        typeof p.buyerId === 'string' &&
        typeof p.acceptedAt === 'string' &&
        Array.isArray(p.items),
    );
    return wellFormed ? (purchases as AcceptedPurchase[]).map(withCanonicalBuyerId) : null;
  } catch {
    return null;
  }
}

/** An error SQS answered about the request itself (malformed, too large), not about being unavailable. */
function isRefusal(error: unknown): boolean {
  const e = error as { $fault?: unknown; name?: unknown };
  return e.$fault === 'client' && !/Throttl|OverLimit|RequestExpired/i.test(String(e.name));
}

function describe(error: unknown): string {
  const e = error as { name?: unknown; message?: unknown };
  return `${typeof e.name === 'string' ? `${e.name}: ` : ''}${typeof e.message === 'string' ? e.message : String(error)}`;
}

/**
 * The index lives in the deployment's database, which must be PostgreSQL: the queue serves processes on
 * many machines, and an index in one machine's file would serve only that one (config refuses the pair).
 */
function openIndex(databaseUrl: string, name: string): SqsIndex {
  if (/^postgres(ql)?:/i.test(databaseUrl)) return new SqsIndex(databaseUrl, name);
  throw new Error(
    `the SQS queue keeps its index in the database, which must be PostgreSQL (postgres:), not "${databaseUrl}"`,
  );
}
