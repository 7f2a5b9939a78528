import type { StockLevel } from '../domain/allocation.js';
import type { BuyerIdKind } from '../domain/buyer.js';
import type { StoredPayment, StoredPurchase } from '../domain/checkout.js';
import type {
  EventStats,
  PaymentStatus,
  Purchase,
  PurchaseItem,
  PurchaseStatus,
  RejectReason,
  SaleEvent,
  Ticket,
  TicketType,
} from '../domain/types.js';
import type { Line, Place } from '../domain/waiting-room.js';

/**
 * Rows that the PostgreSQL and SQLite adapters read alike, and their mapping to domain values. A column the
 * engines return differently (JSON parsed or as text, booleans or 0/1, tickets in a table or a column)
 * stays out of these rows: each adapter adds it and maps it itself.
 */

/** Stored text back as the domain wrote it. PostgreSQL text cannot hold NUL: its adapter passes fromDb. */
export type DecodeText = (text: string) => string;

/** For an engine that keeps text as written (SQLite). */
export const sameText: DecodeText = (text) => text;

/** An event (events), but for its waiting room settings: JSON that only PostgreSQL parses. */
export interface EventRow {
  id: string;
  name: string;
  sales_open_at: string;
  hold_seconds: number;
  buyer_id_kind: BuyerIdKind;
}

/** A ticket type with its stock (ticket_types). */
export interface TicketTypeRow {
  id: string;
  name: string;
  price_cents: number;
  capacity: number;
  max_per_buyer: number;
  sold: number;
  held: number;
}

/** A purchase (purchases), but for its tickets: a JSON column in SQLite, a table in PostgreSQL. */
export interface PurchaseRow {
  id: string;
  event_id: string;
  buyer_id: string;
  status: Exclude<PurchaseStatus, 'queued'>;
  reason: RejectReason | null;
  items: string;
  hold_expires_at: string | null;
  created_at: string;
  updated_at: string;
  buyer_key: string | null;
  payment_status: PaymentStatus | null;
  next_action_url: string | null;
  refund: 'due' | 'done' | null;
  reconcile_after: string | null;
}

/** The storage rows to domain values, for an engine whose text comes back through `decode`. */
export function storageRows(decode: DecodeText) {
  return {
    event: (row: EventRow, ticketTypes: TicketType[], waitingRoom: SaleEvent['waitingRoom']): SaleEvent => ({
      id: decode(row.id),
      name: decode(row.name),
      salesOpenAt: row.sales_open_at,
      holdSeconds: row.hold_seconds,
      buyerIdKind: row.buyer_id_kind,
      ticketTypes,
      waitingRoom,
    }),
    ticketType: (row: TicketTypeRow): TicketType => ({
      id: decode(row.id),
      name: decode(row.name),
      priceCents: row.price_cents,
      capacity: row.capacity,
      maxPerBuyer: row.max_per_buyer,
    }),
    ticketTypeStats: (row: TicketTypeRow): EventStats['ticketTypes'][number] => ({
      id: decode(row.id),
      capacity: row.capacity,
      sold: row.sold,
      held: row.held,
      available: row.capacity - row.sold - row.held,
    }),
    stockLevel: (row: Pick<TicketTypeRow, 'capacity' | 'sold' | 'held' | 'max_per_buyer'>): StockLevel => ({
      capacity: row.capacity,
      sold: row.sold,
      held: row.held,
      maxPerBuyer: row.max_per_buyer,
    }),
    storedPurchase: (row: PurchaseRow): StoredPurchase => ({
      purchaseId: decode(row.id),
      canonicalBuyerId: decode(row.buyer_key ?? row.buyer_id),
      items: JSON.parse(row.items) as PurchaseItem[],
      status: row.status,
    }),
    storedPayment: (row: PurchaseRow): StoredPayment => ({
      status: row.status,
      paymentStatus: row.payment_status,
      nextActionUrl: row.next_action_url,
      refund: row.refund,
      reconcileAfter: row.reconcile_after,
    }),
    purchase: (row: PurchaseRow, tickets: Ticket[]): Purchase => ({
      purchaseId: decode(row.id),
      eventId: decode(row.event_id),
      buyerId: decode(row.buyer_id),
      status: row.status,
      reason: row.reason,
      items: JSON.parse(row.items) as PurchaseItem[],
      tickets,
      holdExpiresAt: row.hold_expires_at,
      payment: row.payment_status ? { status: row.payment_status, nextActionUrl: row.next_action_url } : null,
      refunded: row.refund === 'done',
      createdAt: row.created_at,
      updatedAt: row.updated_at,
    }),
  };
}

/** A waiting room's line (room_lines), but for opened, sold_out and progress (typed per engine). */
export interface LineColumns {
  event_id: string;
  sales_open_at: string;
  session_seconds: number;
  max_active_buyers: number;
  max_admitted_per_minute: number | null;
  pow_difficulty: number;
  prequeued: number;
  tail: number;
  head: number;
  active: number;
  admitted: number;
  expired: number;
}

/** A place in a line (room_places), but for `used`: a boolean in PostgreSQL. */
export interface PlaceColumns {
  id: string;
  event_id: string;
  buyer_id: string;
  buyer_key: string;
  joined_at: string;
  line_number: number | null;
  outcome: 'admitted' | 'expired' | null;
  admitted_at: string | null;
  admission_expires_at: string | null;
  eta_at_join: number | null;
}

/** The columns of PlaceColumns, and `used`: a purchase was accepted with the place's admission. */
export const PLACE_COLUMNS = `id, event_id, buyer_id, buyer_key, joined_at, line_number, outcome, admitted_at,
  admission_expires_at, eta_at_join,
  EXISTS (SELECT 1 FROM room_purchases WHERE place_id = room_places.id) AS used`;

/**
 * The waiting room rows to domain values, for an engine whose text comes back through `decode`. A line's
 * opened, sold_out and progress come `mapped` by the adapter from its engine's types.
 */
export function roomRows(decode: DecodeText) {
  return {
    line: (row: LineColumns, mapped: Pick<Line, 'opened' | 'soldOut' | 'progress'>): Line => ({
      eventId: decode(row.event_id),
      salesOpenAt: row.sales_open_at,
      opened: mapped.opened,
      prequeued: row.prequeued,
      tail: row.tail,
      head: row.head,
      active: row.active,
      admitted: row.admitted,
      expired: row.expired,
      soldOut: mapped.soldOut,
      maxActiveBuyers: row.max_active_buyers,
      maxAdmittedPerMinute: row.max_admitted_per_minute,
      sessionSeconds: row.session_seconds,
      powDifficulty: row.pow_difficulty,
      progress: mapped.progress,
    }),
    place: (row: PlaceColumns, used: boolean): Place => ({
      placeId: decode(row.id),
      eventId: decode(row.event_id),
      buyerId: decode(row.buyer_id),
      canonicalBuyerId: decode(row.buyer_key),
      joinedAt: row.joined_at,
      lineNumber: row.line_number,
      outcome: row.outcome,
      admittedAt: row.admitted_at,
      admissionExpiresAt: row.admission_expires_at,
      used,
      etaAtJoin: row.eta_at_join,
    }),
  };
}
