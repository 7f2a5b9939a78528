/** The business vocabulary of onsale: events, ticket types, purchases and tickets. */

import type { BuyerIdKind } from './buyer.js';

export interface TicketType {
  id: string;
  name: string;
  priceCents: number;
  capacity: number;
  maxPerBuyer: number;
}

export interface SaleEvent {
  id: string;
  name: string;
  salesOpenAt: string;
  holdSeconds: number;
  /** What the event takes as buyer ids (src/domain/buyer.ts). */
  buyerIdKind: BuyerIdKind;
  ticketTypes: TicketType[];
  /** The waiting room in front of its purchases (src/domain/waiting-room.ts); null: none (absent: none). */
  waitingRoom?: WaitingRoomSettings | null;
}

export interface WaitingRoomSettings {
  /** When the room takes its first places (≤ salesOpenAt); places taken before salesOpenAt are shuffled. */
  opensAt: string;
  /** Admitted buyers at once whose purchase is not final yet (the organizer may change it during the sale). */
  maxActiveBuyers: number;
  /** Admissions per minute at most; null: only maxActiveBuyers bounds them. */
  maxAdmittedPerMinute: number | null;
  /** How long an admission lasts from the moment it is given (not renewed). */
  sessionSeconds: number;
  /** Leading zero bits of the proof of work asked to join (src/domain/proof-of-work.ts); 0 or absent: none. */
  powDifficulty?: number;
}

export interface NewTicketType {
  name: string;
  priceCents: number;
  capacity: number;
  maxPerBuyer: number;
}

export interface NewEvent {
  name: string;
  salesOpenAt: string;
  holdSeconds: number;
  /** Default 'any'. */
  buyerIdKind?: BuyerIdKind;
  ticketTypes: NewTicketType[];
  /** Default none. */
  waitingRoom?: WaitingRoomSettings | null;
}

export interface PurchaseItem {
  ticketTypeId: string;
  quantity: number;
}

/** A purchase as the web server accepted it: what travels on the queue from web server to worker. */
export interface AcceptedPurchase {
  purchaseId: string;
  eventId: string;
  /** As the buyer typed it: what the purchase shows. */
  buyerId: string;
  /**
   * canonicalBuyerId(buyerId), computed once by the web server: what the per-buyer limit counts by. Queues
   * that keep only the typed id derive it again when they read a purchase back.
   */
  canonicalBuyerId: string;
  items: PurchaseItem[];
  acceptedAt: string;
}

export type PurchaseStatus =
  'queued' | 'waitlisted' | 'held' | 'confirmed' | 'rejected' | 'expired' | 'cancelled';
export const PURCHASE_STATUSES: readonly PurchaseStatus[] = [
  'queued',
  'waitlisted',
  'held',
  'confirmed',
  'rejected',
  'expired',
  'cancelled',
];
export const REJECT_REASONS = ['sold_out', 'insufficient_inventory', 'limit_exceeded'] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

export const FINAL_STATUSES: ReadonlySet<PurchaseStatus> = new Set([
  'confirmed',
  'rejected',
  'expired',
  'cancelled',
]);

export interface Ticket {
  id: string;
  ticketTypeId: string;
  code: string;
}

export interface Purchase {
  purchaseId: string;
  eventId: string;
  buyerId: string;
  status: PurchaseStatus;
  reason: RejectReason | null;
  items: PurchaseItem[];
  tickets: Ticket[];
  holdExpiresAt: string | null;
  /** The payment of a held purchase as the buyer should see it; null before any attempt. */
  payment: PaymentView | null;
  /** A charge that came after the purchase could no longer be confirmed was refunded. */
  refunded: boolean;
  createdAt: string;
  updatedAt: string;
}

/** Where a purchase's payment stands at the provider, as onsale last recorded it. */
export type PaymentStatus = 'processing' | 'requires_action' | 'succeeded' | 'declined' | 'failed';

export interface PaymentView {
  status: PaymentStatus;
  nextActionUrl: string | null;
}

interface TicketTypeStock {
  id: string;
  capacity: number;
  sold: number;
  held: number;
  available: number;
}

export interface EventStats {
  eventId: string;
  /** The database shard the event lives on, counted from 0, when events are sharded. */
  shard?: number;
  ticketTypes: TicketTypeStock[];
  purchases: Record<PurchaseStatus | 'refunded', number>;
}

/** Every count of a stats answer at 0, for adapters to fill. */
export function zeroPurchaseCounts(): Record<PurchaseStatus | 'refunded', number> {
  return {
    queued: 0,
    waitlisted: 0,
    held: 0,
    confirmed: 0,
    rejected: 0,
    expired: 0,
    cancelled: 0,
    refunded: 0,
  };
}

export function queuedPurchase(accepted: AcceptedPurchase): Purchase {
  return {
    purchaseId: accepted.purchaseId,
    eventId: accepted.eventId,
    buyerId: accepted.buyerId,
    status: 'queued',
    reason: null,
    items: accepted.items,
    tickets: [],
    holdExpiresAt: null,
    payment: null,
    refunded: false,
    createdAt: accepted.acceptedAt,
    updatedAt: accepted.acceptedAt,
  };
}
