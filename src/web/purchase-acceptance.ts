import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { buyerIdentity } from '../domain/buyer.js';
import { OnsaleError, UnavailableError } from '../domain/errors.js';
import { purchaseRefusal } from '../domain/purchase-request.js';
import type { AcceptedPurchase, Purchase, SaleEvent } from '../domain/types.js';
import type { Config } from '../config.js';
import type { EnqueueRequest, EnqueueResult, Queue } from '../ports/queue.js';
import type { AdmittedPurchase, WaitingRoom } from '../ports/waiting-room.js';
import { newPurchaseId } from '../shared/ids.js';
import { isoTime } from '../shared/iso-time.js';
import type { AdmissionSigner } from './admission-token.js';
import { Backpressure, RateLimiter } from './admission.js';
import { GroupCommit } from './group-commit.js';
import type { Lookups } from './lookups.js';
import type { PurchaseBody } from './schemas.js';

/** What a purchase's answer carries. */
export interface Receipt {
  purchaseId: string;
  status: Purchase['status'];
  statusUrl: string;
}

/** An accepted purchase's answer: 202 for a new one, 200 for the one its Idempotency-Key already made. */
export interface Acceptance {
  statusCode: 200 | 202;
  receipt: Receipt;
}

interface AcceptanceDeps {
  config: Config;
  queue: Queue;
  lookups: Lookups;
  /** Shared with buildApp, which waits for it to drain when the server stops. */
  commits: GroupCommit<EnqueueRequest, EnqueueResult>;
  /** Checks the Onsale-Admission token of purchases of events with a waiting room, and tells the room. */
  admissions: { signer: AdmissionSigner; room: WaitingRoom };
  logger: Logger;
}

/**
 * Buying: the decisions of POST /api/events/{eventId}/purchases on a body that passed its schema, from the
 * buyer's identity to the durable write and the receipt. One instance per web server, shared by the Fastify
 * route and the purchase fast path (purchase-fast-path.ts), so that both answer alike.
 */
export class PurchaseAcceptance {
  readonly #queue: GroupCommit<EnqueueRequest, EnqueueResult>;
  readonly #lookups: Lookups;
  readonly #admissions: AcceptanceDeps['admissions'];
  readonly #logger: Logger;
  readonly #backpressure: Backpressure;
  readonly #buyerLimit: RateLimiter;
  // Admitted purchases of concurrent requests are recorded in one transaction: one commit each would hold
  // the event loop for a sync per purchase.
  readonly #admittedPurchases: GroupCommit<AdmittedPurchase, void>;
  // Set once the server closes (after the drain delay): purchases still coming on open connections are refused.
  #closing = false;

  constructor({ config, queue, lookups, commits, admissions, logger }: AcceptanceDeps) {
    this.#queue = commits;
    this.#lookups = lookups;
    this.#admissions = admissions;
    this.#logger = logger;
    this.#backpressure = new Backpressure(queue, config.maxQueueDepth);
    this.#buyerLimit = new RateLimiter(config.buyerRate);
    this.#admittedPurchases = new GroupCommit<AdmittedPurchase, void>(async (notes) => {
      await admissions.room.notePurchases(notes);
      return notes.map(() => undefined);
    }, 500);
  }

  /** From now on every purchase is refused with 503 unavailable (the server is shutting down). */
  close(): void {
    this.#closing = true;
  }

  /**
   * Accepts a purchase of `event` or throws the OnsaleError to answer with. `idempotencyKey` and `admission`
   * are the headers as sent, already checked against the route's header schema.
   */
  async accept(
    event: SaleEvent,
    { buyerId, items }: PurchaseBody,
    idempotencyKey: string | undefined,
    admission: unknown,
  ): Promise<Acceptance> {
    // The one normalization of this request: the limits and the Idempotency-Key go by this id.
    const canonicalBuyerId = buyerIdentity(buyerId, event.buyerIdKind);
    if (canonicalBuyerId instanceof OnsaleError) throw canonicalBuyerId;
    const now = Date.now();
    const refusal = purchaseRefusal(event, items, now);
    if (refusal) throw refusal;
    const placeId = event.waitingRoom ? this.#admittedPlaceFor(event.id, canonicalBuyerId, admission) : null;
    this.#buyerLimit.take(canonicalBuyerId, now, event.id);
    this.#backpressure.check(now);
    if (this.#closing)
      throw new OnsaleError('unavailable', 'this server is shutting down', { retryAfterSeconds: 1 });

    const purchase: AcceptedPurchase = {
      purchaseId: newPurchaseId(event.id, now),
      eventId: event.id,
      buyerId,
      canonicalBuyerId,
      items: items.map((i) => ({ ticketTypeId: i.ticketTypeId, quantity: i.quantity })),
      acceptedAt: isoTime(now),
    };
    const result = await this.#queue.submit(
      idempotencyKey === undefined
        ? { purchase }
        : { purchase, idempotency: { key: idempotencyKey, requestHash: requestHash(purchase) } },
    );
    // This event's shard did not answer (the others of the same group commit were written).
    if (result.status === 'unavailable') throw new UnavailableError(result.message);
    if (result.status === 'conflict') {
      throw new OnsaleError('idempotency_conflict', 'this Idempotency-Key was used with a different body');
    }
    if (placeId !== null) await this.#noteAdmittedPurchase(placeId, result.purchaseId);
    if (result.status === 'duplicate') {
      const first = await this.#lookups.findPurchase(result.purchaseId);
      return { statusCode: 200, receipt: receipt(result.purchaseId, first?.status ?? 'queued') };
    }
    this.#backpressure.accepted();
    return { statusCode: 202, receipt: receipt(purchase.purchaseId, 'queued') };
  }

  /**
   * The place whose admission the header carries, for this event and buyer and not expired; else 403. The
   * signature is checked here, without a database read.
   */
  #admittedPlaceFor(eventId: string, canonicalBuyerId: string, header: unknown): string {
    const claims = typeof header === 'string' ? this.#admissions.signer.verify(header.trim()) : null;
    if (!claims || claims.eventId !== eventId || claims.canonicalBuyerId !== canonicalBuyerId) {
      throw new OnsaleError(
        'admission_required',
        'this event has a waiting room: buy with the Onsale-Admission token of your admitted place',
      );
    }
    return claims.placeId;
  }

  /** So that the room frees the buyer's slot once the purchase is final; the admission's expiry does too. */
  async #noteAdmittedPurchase(placeId: string, purchaseId: string): Promise<void> {
    try {
      await this.#admittedPurchases.submit({ placeId, purchaseId });
    } catch (error) {
      this.#logger.warn(
        { err: error },
        'could not record an admitted purchase; its slot frees when the admission expires',
      );
    }
  }
}

function receipt(purchaseId: string, status: Purchase['status']): Receipt {
  return { purchaseId, status, statusUrl: `/api/purchases/${purchaseId}` };
}

/** What makes two requests with one Idempotency-Key "the same body": two spellings of one buyer are. */
function requestHash(p: AcceptedPurchase): string {
  return createHash('sha256')
    .update(JSON.stringify([p.canonicalBuyerId, p.items.map((i) => [i.ticketTypeId, i.quantity])]))
    .digest('base64url');
}
