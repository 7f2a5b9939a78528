/**
 * Checkout decisions for events with holds: what a payment, a cancel, an expiry or a late charge does to a
 * purchase, to the event's stock and to the waitlist. Pure: storage adapters read the state, call these,
 * and write the plan in one transaction (each status change conditional on the status it was read in).
 */
import {
  buyerKey,
  couldReturn,
  fitsNow,
  noReturnReason,
  type StockLevel,
  type TicketGenerator,
} from './allocation.js';
import type {
  PaymentStatus,
  PurchaseItem,
  PurchaseStatus,
  RejectReason,
  Ticket,
  TicketType,
} from './types.js';

/** What checkout needs to know of a stored purchase. */
export interface StoredPurchase {
  purchaseId: string;
  canonicalBuyerId: string;
  items: PurchaseItem[];
  status: PurchaseStatus;
}

export interface StatusChange {
  purchaseId: string;
  from: PurchaseStatus;
  to: PurchaseStatus;
  reason: RejectReason | null;
  /** Set when a waitlisted purchase becomes held. */
  holdExpiresAt: string | null;
  /** Set when a held purchase is confirmed: its tickets, issued now. */
  tickets: Ticket[] | null;
}

/** Everything one checkout step writes, in one transaction. */
export interface CheckoutPlan {
  changes: StatusChange[];
  /** Per ticket type, what `sold` and `held` change by. */
  stock: Map<string, { sold: number; held: number }>;
  /** Per buyerKey(), tickets given back from the buyer's total (a positive count to subtract). */
  released: Map<string, { buyerId: string; ticketTypeId: string; quantity: number }>;
}

function emptyPlan(): CheckoutPlan {
  return { changes: [], stock: new Map(), released: new Map() };
}

function moveStock(
  plan: CheckoutPlan,
  stock: Map<string, StockLevel>,
  items: readonly PurchaseItem[],
  sold: number,
  held: number,
): void {
  for (const item of items) {
    const level = stock.get(item.ticketTypeId);
    if (!level) throw new Error(`ticket type ${item.ticketTypeId} is not part of this event`);
    level.sold += sold * item.quantity;
    level.held += held * item.quantity;
    const delta = plan.stock.get(item.ticketTypeId) ?? { sold: 0, held: 0 };
    delta.sold += sold * item.quantity;
    delta.held += held * item.quantity;
    plan.stock.set(item.ticketTypeId, delta);
  }
}

function release(plan: CheckoutPlan, purchase: StoredPurchase): void {
  for (const item of purchase.items) {
    const key = buyerKey(purchase.canonicalBuyerId, item.ticketTypeId);
    const entry = plan.released.get(key) ?? {
      buyerId: purchase.canonicalBuyerId,
      ticketTypeId: item.ticketTypeId,
      quantity: 0,
    };
    entry.quantity += item.quantity;
    plan.released.set(key, entry);
  }
}

function change(
  purchase: StoredPurchase,
  to: PurchaseStatus,
  extra: Partial<Pick<StatusChange, 'reason' | 'holdExpiresAt' | 'tickets'>> = {},
): StatusChange {
  return {
    purchaseId: purchase.purchaseId,
    from: purchase.status,
    to,
    reason: extra.reason ?? null,
    holdExpiresAt: extra.holdExpiresAt ?? null,
    tickets: extra.tickets ?? null,
  };
}

/**
 * Whether the waitlist of an event with this stock could move at all, so that storage reads it only then:
 * a waitlisted purchase is served only when some tickets are available, and rejected only when a type has
 * fewer unsold tickets than a buyer may ask for.
 */
export function waitlistMayMove(stock: Map<string, StockLevel>): boolean {
  for (const level of stock.values()) {
    if (level.capacity - level.sold - level.held > 0) return true;
    if (level.capacity - level.sold < level.maxPerBuyer) return true;
  }
  return false;
}

/**
 * Serves the waitlist in acceptance order (`waitlist` as given): a purchase that fits what is available
 * now is held, one that no return of held tickets could serve any more is rejected (its share of the
 * buyer's limit given back), the others keep their place.
 */
function settleWaitlist(
  plan: CheckoutPlan,
  waitlist: readonly StoredPurchase[],
  stock: Map<string, StockLevel>,
  holdExpiresAt: string,
): void {
  const decided = new Set(plan.changes.map((c) => c.purchaseId));
  for (const purchase of waitlist) {
    if (purchase.status !== 'waitlisted' || decided.has(purchase.purchaseId)) continue;
    if (!couldReturn(purchase, stock)) {
      plan.changes.push(change(purchase, 'rejected', { reason: noReturnReason(purchase, stock) }));
      release(plan, purchase);
    } else if (fitsNow(purchase, stock)) {
      moveStock(plan, stock, purchase.items, 0, 1);
      plan.changes.push(change(purchase, 'held', { holdExpiresAt }));
    }
  }
}

/** The time a hold that starts at `now` ends. */
export function holdEnd(now: Date, holdSeconds: number): string {
  return new Date(now.getTime() + holdSeconds * 1000).toISOString();
}

/**
 * When the holds a step grants begin: when the step is written (`written`, read under the lock), never
 * before the time the caller dated the step (`requested`). The caller's reading can be old by then, after
 * waiting behind other writers: a hold dated by it would be shorter than the event's, and could end before
 * holds that were granted before it.
 */
export function holdsBeginAt(requested: Date, written: Date): Date {
  return written > requested ? written : requested;
}

/**
 * Ends purchases without payment: held ones (expired or cancelled) give their tickets back, waitlisted ones
 * (cancelled) their place; both give back their share of the buyer's limit. Then the waitlist is served,
 * its holds beginning at `now` (see holdsBeginAt()).
 * Purchases that are no longer held or waitlisted are left alone (another process ended them first).
 */
export function planRelease(
  ending: ReadonlyArray<{ purchase: StoredPurchase; to: 'expired' | 'cancelled' }>,
  stock: Map<string, StockLevel>,
  waitlist: readonly StoredPurchase[],
  holdSeconds: number,
  now: Date,
): CheckoutPlan {
  const plan = emptyPlan();
  for (const { purchase, to } of ending) {
    if (purchase.status === 'held') moveStock(plan, stock, purchase.items, 0, -1);
    else if (purchase.status !== 'waitlisted' || to !== 'cancelled') continue;
    plan.changes.push(change(purchase, to));
    release(plan, purchase);
  }
  if (plan.changes.length > 0) settleWaitlist(plan, waitlist, stock, holdEnd(now, holdSeconds));
  return plan;
}

/**
 * Confirms a paid, held purchase: its tickets move from held to sold and are issued. Sold tickets never
 * come back, so waitlisted purchases that no return could serve any more are rejected.
 */
export function planConfirm(
  purchase: StoredPurchase,
  stock: Map<string, StockLevel>,
  waitlist: readonly StoredPurchase[],
  generate: TicketGenerator,
  holdSeconds: number,
  now: Date,
): CheckoutPlan {
  const plan = emptyPlan();
  if (purchase.status !== 'held') return plan;
  moveStock(plan, stock, purchase.items, 1, -1);
  const count = purchase.items.reduce((sum, item) => sum + item.quantity, 0);
  const fresh = generate(count);
  const tickets: Ticket[] = [];
  let next = 0;
  for (const item of purchase.items) {
    for (let i = 0; i < item.quantity; i++)
      tickets.push({ ...fresh[next++]!, ticketTypeId: item.ticketTypeId });
  }
  plan.changes.push(change(purchase, 'confirmed', { tickets }));
  settleWaitlist(plan, waitlist, stock, holdEnd(now, holdSeconds));
  return plan;
}

/** What the buyer's total of a purchase is: the sum of price × quantity of its items. */
export function orderTotal(ticketTypes: readonly TicketType[], items: readonly PurchaseItem[]): number {
  let total = 0;
  for (const item of items) {
    const type = ticketTypes.find((t) => t.id === item.ticketTypeId);
    if (!type) throw new Error(`ticket type ${item.ticketTypeId} is not part of this event`);
    total += type.priceCents * item.quantity;
  }
  return total;
}

/** Why a purchase cannot be paid now, or null when it can. */
export type PaymentRefusal = 'already_confirmed' | 'hold_expired' | 'not_payable';

export function paymentRefusal(
  purchase: { status: PurchaseStatus; holdExpiresAt: string | null },
  now: Date,
): PaymentRefusal | null {
  switch (purchase.status) {
    case 'confirmed':
      return 'already_confirmed';
    case 'expired':
      return 'hold_expired';
    case 'held':
      // Past its end and not yet swept: as good as expired (the sweep turns it within 2 seconds).
      return purchase.holdExpiresAt !== null && purchase.holdExpiresAt <= now.toISOString()
        ? 'hold_expired'
        : null;
    default:
      return 'not_payable';
  }
}

/** What a cancel does: `cancel` it, answer as before (`already`), or refuse. */
export function cancelDecision(status: PurchaseStatus): 'cancel' | 'already' | 'not_cancellable' {
  if (status === 'held' || status === 'waitlisted') return 'cancel';
  if (status === 'cancelled') return 'already';
  return 'not_cancellable';
}

/**
 * What a charge the provider says succeeded does to a purchase: a held one is confirmed; one that ended
 * without payment meanwhile (expired, cancelled) is refunded, once; a confirmed one stays as it is (the
 * same payment told twice).
 */
export function succeededChargeEffect(
  status: PurchaseStatus,
  refund: 'due' | 'done' | null,
): 'confirm' | 'refund' | 'none' {
  if (status === 'held') return 'confirm';
  if (status === 'confirmed' || refund !== null) return 'none';
  return 'refund';
}

/**
 * The payment status a purchase shows after the provider's answer `next`, given the one recorded: a
 * succeeded payment is never shown as anything else afterwards (an out-of-order failure changes nothing).
 */
export function nextPaymentStatus(recorded: PaymentStatus | null, next: PaymentStatus): PaymentStatus {
  return recorded === 'succeeded' ? 'succeeded' : next;
}

/**
 * Whether a release of `ending` (or the confirmation of `confirming`) could move the waitlist, so that
 * storage reads the waitlist only then.
 */
export function waitlistNeeded(
  ending: ReadonlyArray<{ purchase: StoredPurchase }>,
  stock: Map<string, StockLevel>,
  confirming?: StoredPurchase,
): boolean {
  const after = new Map([...stock].map(([id, level]) => [id, { ...level }]));
  for (const { purchase } of ending) {
    if (purchase.status !== 'held') continue;
    for (const item of purchase.items) after.get(item.ticketTypeId)!.held -= item.quantity;
  }
  if (confirming?.status === 'held') {
    for (const item of confirming.items) {
      after.get(item.ticketTypeId)!.held -= item.quantity;
      after.get(item.ticketTypeId)!.sold += item.quantity;
    }
  }
  return waitlistMayMove(after);
}

/** A first look at an unsettled payment comes this long after the attempt began (its caller is usually quicker). */
export const RECONCILE_FIRST_MS = 10_000;
/** Then, while the payment stays unsettled, it is looked at again this often. */
export const RECONCILE_AGAIN_MS = 10_000;

export function reconcileAfter(now: Date, ms: number): string {
  return new Date(now.getTime() + ms).toISOString();
}

/** A purchase's payment as stored. */
export interface StoredPayment {
  status: PurchaseStatus;
  paymentStatus: PaymentStatus | null;
  nextActionUrl: string | null;
  refund: 'due' | 'done' | null;
  reconcileAfter: string | null;
}

/** What recording a provider's answer writes: the payment's new columns, and whether to confirm. */
export interface PaymentStep {
  effect: 'confirmed' | 'refund_due' | 'recorded' | 'none';
  /** Confirm the purchase (planConfirm()) in the same transaction. */
  confirm: boolean;
  /** Whether the payment columns change (the rest of the fields are their new values). */
  write: boolean;
  paymentStatus: PaymentStatus | null;
  nextActionUrl: string | null;
  paymentId: string | null;
  refund: 'due' | 'done' | null;
  reconcileAfter: string | null;
}

export type ProviderAnswer =
  | { kind: 'succeeded'; paymentId: string }
  | { kind: 'requires_action'; paymentId: string; nextActionUrl: string }
  | { kind: 'declined' | 'failed'; paymentId: string | null; message: string }
  | { kind: 'processing'; paymentId: string }
  | { kind: 'unstarted' }
  | { kind: 'refunded'; refundId: string };

/**
 * Applies a provider's answer to a stored payment. A succeeded payment stays succeeded whatever comes
 * after (a failure delivered late or out of order); a refund is made due once and done once.
 */
export function paymentStep(current: StoredPayment, answer: ProviderAnswer, now: Date): PaymentStep {
  const keep: PaymentStep = {
    effect: 'none',
    confirm: false,
    write: false,
    paymentStatus: current.paymentStatus,
    nextActionUrl: current.nextActionUrl,
    paymentId: null,
    refund: current.refund,
    reconcileAfter: current.reconcileAfter,
  };
  const settledAt = current.refund === 'due' ? now.toISOString() : null;
  const unsettledAt = FINAL_ONES.has(current.status)
    ? reconcileAfter(now, RECONCILE_AGAIN_MS * 3)
    : reconcileAfter(now, RECONCILE_AGAIN_MS);
  switch (answer.kind) {
    case 'succeeded': {
      const effect = succeededChargeEffect(current.status, current.refund);
      if (effect === 'confirm') {
        return {
          ...keep,
          effect: 'confirmed',
          confirm: true,
          write: true,
          paymentStatus: 'succeeded',
          nextActionUrl: null,
          paymentId: answer.paymentId,
          reconcileAfter: settledAt,
        };
      }
      if (effect === 'refund') {
        return {
          ...keep,
          effect: 'refund_due',
          write: true,
          paymentStatus: 'succeeded',
          nextActionUrl: null,
          paymentId: answer.paymentId,
          refund: 'due',
          reconcileAfter: now.toISOString(),
        };
      }
      if (current.paymentStatus === 'succeeded') return keep;
      return {
        ...keep,
        write: true,
        paymentStatus: 'succeeded',
        nextActionUrl: null,
        paymentId: answer.paymentId,
        reconcileAfter: settledAt,
      };
    }
    case 'refunded':
      if (current.refund === 'done') return keep;
      return { ...keep, effect: 'recorded', write: true, refund: 'done', reconcileAfter: null };
    default:
      if (current.paymentStatus === 'succeeded') return keep;
  }
  switch (answer.kind) {
    case 'requires_action':
      return {
        ...keep,
        effect: 'recorded',
        write: true,
        paymentStatus: 'requires_action',
        nextActionUrl: answer.nextActionUrl,
        paymentId: answer.paymentId,
        reconcileAfter: unsettledAt,
      };
    case 'processing':
      return {
        ...keep,
        effect: 'recorded',
        write: true,
        paymentStatus: 'processing',
        paymentId: answer.paymentId,
        reconcileAfter: unsettledAt,
      };
    case 'unstarted':
      if (current.paymentStatus !== 'processing') return keep;
      return { ...keep, effect: 'recorded', write: true, paymentStatus: null, reconcileAfter: settledAt };
    default:
      return {
        ...keep,
        effect: 'recorded',
        write: true,
        paymentStatus: answer.kind,
        nextActionUrl: null,
        paymentId: answer.paymentId,
        reconcileAfter: settledAt,
      };
  }
}

const FINAL_ONES: ReadonlySet<PurchaseStatus> = new Set(['confirmed', 'rejected', 'expired', 'cancelled']);
