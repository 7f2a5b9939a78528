/** JSON schemas of api.md's request bodies. Unknown fields are refused, never silently dropped. */

import { BUYER_ID_KINDS, type BuyerIdKind } from '../domain/buyer.js';

const id = { type: 'string', minLength: 1, maxLength: 64 } as const;

const ticketTypeInput = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'priceCents', 'capacity'],
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 200 },
    priceCents: { type: 'integer', minimum: 0, maximum: 1_000_000_000_00 },
    capacity: { type: 'integer', minimum: 1, maximum: 10_000_000 },
    maxPerBuyer: { type: 'integer', minimum: 1, maximum: 100, default: 10 },
  },
} as const;

export const newEventBody = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'ticketTypes'],
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 200 },
    salesOpenAt: { type: 'string', format: 'date-time', maxLength: 64 },
    holdSeconds: { type: 'integer', minimum: 0, maximum: 86_400, default: 0 },
    buyerIdKind: { type: 'string', enum: BUYER_ID_KINDS, default: 'any' },
    ticketTypes: { type: 'array', minItems: 1, maxItems: 50, items: ticketTypeInput },
    waitingRoom: {
      type: 'object',
      additionalProperties: false,
      properties: {
        opensAt: { type: 'string', format: 'date-time', maxLength: 64 },
        maxActiveBuyers: { type: 'integer', minimum: 1, maximum: 1_000_000 },
        maxAdmittedPerMinute: { type: ['integer', 'null'], minimum: 1, maximum: 10_000_000 },
        sessionSeconds: { type: 'integer', minimum: 10, maximum: 86_400 },
      },
    },
  },
} as const;

/** The limits an organizer may change during a sale (PATCH /api/events/:eventId/queue). */
export const roomLimitsBody = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: {
    maxActiveBuyers: { type: 'integer', minimum: 1, maximum: 1_000_000 },
    maxAdmittedPerMinute: { type: ['integer', 'null'], minimum: 1, maximum: 10_000_000 },
  },
} as const;

export interface RoomLimitsBody {
  maxActiveBuyers?: number;
  maxAdmittedPerMinute?: number | null;
}

export const joinBody = {
  type: 'object',
  additionalProperties: false,
  required: ['buyerId'],
  properties: { buyerId: { type: 'string', minLength: 1, maxLength: 128 } },
} as const;

export const placeParams = {
  type: 'object',
  required: ['placeId'],
  properties: { placeId: { type: 'string', minLength: 1, maxLength: 64 } },
} as const;

export const purchaseBody = {
  type: 'object',
  additionalProperties: false,
  required: ['buyerId', 'items'],
  properties: {
    buyerId: { type: 'string', minLength: 1, maxLength: 128 },
    items: {
      type: 'array',
      minItems: 1,
      maxItems: 50,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['ticketTypeId', 'quantity'],
        properties: {
          ticketTypeId: id,
          quantity: { type: 'integer', minimum: 1, maximum: 100 },
        },
      },
    },
  },
} as const;

export const eventParams = {
  type: 'object',
  required: ['eventId'],
  properties: { eventId: id },
} as const;

export const purchaseParams = {
  type: 'object',
  required: ['purchaseId'],
  properties: { purchaseId: id },
} as const;

/** Query strings are text (types are not coerced), so `limit` is checked as digits: 1..100. */
export const purchaseListQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    q: { type: 'string', minLength: 1, maxLength: 128 },
    limit: { type: 'string', pattern: '^([1-9][0-9]?|100)$' },
  },
} as const;

export interface PurchaseListQuery {
  q?: string;
  limit?: string;
}

export interface NewEventBody {
  name: string;
  salesOpenAt?: string;
  holdSeconds: number;
  buyerIdKind: BuyerIdKind;
  ticketTypes: Array<{ name: string; priceCents: number; capacity: number; maxPerBuyer: number }>;
  waitingRoom?: {
    opensAt?: string;
    maxActiveBuyers?: number;
    maxAdmittedPerMinute?: number | null;
    sessionSeconds?: number;
  };
}

export interface PurchaseBody {
  buyerId: string;
  items: Array<{ ticketTypeId: string; quantity: number }>;
}
