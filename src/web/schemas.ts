/**
 * JSON schemas of the API's requests and answers: Fastify validates requests by them and the OpenAPI
 * document (openapi.ts) is generated from them. Unknown request fields are refused, never silently dropped.
 * Answers are serialized with JSON.stringify (app.ts), so a field missing from a response schema is still
 * sent; test/openapi.test.ts checks that real answers carry no field their schema does not describe.
 */
import { BUYER_ID_KINDS, type BuyerIdKind } from '../domain/buyer.js';
import { MAX_DIFFICULTY } from '../domain/proof-of-work.js';
import { REJECT_REASONS } from '../domain/types.js';

/**
 * Fastify's ajv options for every route's schemas (and the purchase fast path's): no types coerced, no
 * properties removed, the first error only (all of them would let a client make ajv work per field).
 */
export const AJV_OPTIONS = { removeAdditional: false, coerceTypes: false, allErrors: false } as const;

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
        powDifficulty: { type: 'integer', minimum: 0, maximum: MAX_DIFFICULTY },
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
    powDifficulty: { type: 'integer', minimum: 0, maximum: MAX_DIFFICULTY },
  },
} as const;

export interface RoomLimitsBody {
  maxActiveBuyers?: number;
  maxAdmittedPerMinute?: number | null;
  powDifficulty?: number;
}

export const joinBody = {
  type: 'object',
  additionalProperties: false,
  required: ['buyerId'],
  properties: {
    buyerId: { type: 'string', minLength: 1, maxLength: 128 },
    proofOfWork: {
      type: 'object',
      additionalProperties: false,
      required: ['challenge', 'solution'],
      description:
        'a solved challenge (POST /api/events/{eventId}/queue/challenge), when the room asks for one',
      properties: {
        challenge: { type: 'string', minLength: 1, maxLength: 1024 },
        solution: { type: 'string', minLength: 1, maxLength: 64 },
      },
    },
  },
} as const;

/** Asking for a proof-of-work challenge (POST /api/events/:eventId/queue/challenge). */
export const challengeBody = {
  type: 'object',
  additionalProperties: false,
  required: ['buyerId'],
  properties: { buyerId: { type: 'string', minLength: 1, maxLength: 128 } },
} as const;

export const challengeView = {
  description: 'a challenge for this buyer and event: find a solution, then join with both',
  type: 'object',
  required: ['challenge', 'difficulty', 'expiresAt'],
  properties: {
    challenge: { type: 'string' },
    difficulty: {
      type: 'integer',
      minimum: 0,
      description: 'leading zero bits SHA-256(challenge + ":" + solution) must have; 0: any solution',
    },
    expiresAt: { type: 'string', format: 'date-time', description: 'join before this' },
  },
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
  properties: { eventId: { ...id, description: "the event's id" } },
} as const;

export const purchaseParams = {
  type: 'object',
  required: ['purchaseId'],
  properties: { purchaseId: { ...id, description: "the purchase's id (from the answer to the purchase)" } },
} as const;

/** Printable ASCII, 1..128 characters. */
export const purchaseHeaders = {
  type: 'object',
  properties: {
    'idempotency-key': {
      type: 'string',
      minLength: 1,
      maxLength: 128,
      pattern: '^[\\x20-\\x7e]*$',
      description:
        'Optional. Sent again with the same body (for the same event and buyer) it answers the same purchase ' +
        'instead of making a second one; with another body it is a 409 idempotency_conflict. Kept 24 hours.',
    },
    'onsale-admission': {
      type: 'string',
      description:
        "The admission token of the buyer's admitted place (GET /api/queue/{placeId}), for an event with a " +
        'waiting room; without a valid one such a purchase is a 403 admission_required.',
    },
  },
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

const isoTime = { type: 'string', format: 'date-time' } as const;

const ticketTypeView = {
  type: 'object',
  required: ['id', 'name', 'priceCents', 'capacity', 'maxPerBuyer', 'available'],
  properties: {
    id,
    name: { type: 'string' },
    priceCents: { type: 'integer', minimum: 0 },
    capacity: { type: 'integer', minimum: 1 },
    maxPerBuyer: { type: 'integer', minimum: 1 },
    available: {
      type: 'integer',
      minimum: 0,
      description: 'tickets left; at most one second behind the truth',
    },
  },
} as const;

/** An event with the tickets left of each type (GET /api/events/:eventId, and the answer to creating one). */
export const eventView = {
  description: 'the event, with the tickets left of each type',
  type: 'object',
  required: ['id', 'name', 'salesOpenAt', 'holdSeconds', 'buyerIdKind', 'ticketTypes'],
  properties: {
    id,
    name: { type: 'string' },
    salesOpenAt: isoTime,
    holdSeconds: { type: 'integer', minimum: 0 },
    buyerIdKind: {
      type: 'string',
      enum: BUYER_ID_KINDS,
      description: '`email`: buyer ids must be email addresses',
    },
    ticketTypes: { type: 'array', items: ticketTypeView },
    waitingRoom: {
      type: ['object', 'null'],
      description: 'the waiting room in front of its purchases; null (or absent): none',
      required: ['opensAt', 'maxActiveBuyers', 'maxAdmittedPerMinute', 'sessionSeconds'],
      properties: {
        opensAt: { ...isoTime, description: 'when the room takes its first places' },
        maxActiveBuyers: { type: 'integer', minimum: 1 },
        maxAdmittedPerMinute: { type: ['integer', 'null'], minimum: 1 },
        sessionSeconds: { type: 'integer', minimum: 1, description: 'how long an admission lasts' },
        powDifficulty: { type: 'integer', minimum: 0, description: 'proof of work asked to join (0: none)' },
      },
    },
  },
} as const;

export const eventList = {
  description: 'the events (without their ticket types)',
  type: 'object',
  required: ['events'],
  properties: {
    events: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'name', 'salesOpenAt'],
        properties: { id, name: { type: 'string' }, salesOpenAt: isoTime },
      },
    },
  },
} as const;

const PURCHASE_STATUSES = [
  'queued',
  'waitlisted',
  'held',
  'confirmed',
  'rejected',
  'expired',
  'cancelled',
] as const;

export const purchaseView = {
  description: 'the purchase',
  type: 'object',
  required: [
    'purchaseId',
    'eventId',
    'buyerId',
    'status',
    'reason',
    'items',
    'tickets',
    'holdExpiresAt',
    'createdAt',
    'updatedAt',
  ],
  properties: {
    purchaseId: id,
    eventId: id,
    buyerId: { type: 'string', description: 'as the buyer typed it' },
    status: {
      type: 'string',
      enum: PURCHASE_STATUSES,
      description: 'final: confirmed, rejected, expired, cancelled',
    },
    reason: {
      type: ['string', 'null'],
      enum: [...REJECT_REASONS, null],
      description: 'why a rejected purchase got nothing; null otherwise',
    },
    items: {
      type: 'array',
      items: {
        type: 'object',
        required: ['ticketTypeId', 'quantity'],
        properties: { ticketTypeId: id, quantity: { type: 'integer', minimum: 1 } },
      },
    },
    tickets: {
      type: 'array',
      description: 'the tickets of a confirmed purchase, each with a unique code',
      items: {
        type: 'object',
        required: ['id', 'ticketTypeId', 'code'],
        properties: { id, ticketTypeId: id, code: { type: 'string' } },
      },
    },
    holdExpiresAt: {
      type: ['string', 'null'],
      format: 'date-time',
      description: 'when a held purchase expires unless paid',
    },
    payment: {
      type: ['object', 'null'],
      description: 'the payment of a held purchase, as onsale last recorded it; null before any attempt',
      required: ['status', 'nextActionUrl'],
      properties: {
        status: {
          type: 'string',
          enum: ['processing', 'requires_action', 'succeeded', 'declined', 'failed'],
        },
        nextActionUrl: {
          type: ['string', 'null'],
          description: 'where the buyer completes a step the provider asks for (3-D Secure)',
        },
      },
    },
    refunded: {
      type: 'boolean',
      description: 'a charge that came after the purchase had ended (expired, cancelled) was refunded',
    },
    createdAt: isoTime,
    updatedAt: isoTime,
  },
} as const;

/** The answer to a purchase: where to follow it. */
export const purchaseReceipt = {
  type: 'object',
  required: ['purchaseId', 'status', 'statusUrl'],
  properties: {
    purchaseId: { ...id, description: 'unguessable: it is the key to the tickets' },
    status: { type: 'string', enum: PURCHASE_STATUSES },
    statusUrl: { type: 'string', description: '/api/purchases/{purchaseId}' },
  },
} as const;

export const purchaseList = {
  description: "the event's purchases, newest first",
  type: 'object',
  required: ['purchases'],
  properties: { purchases: { type: 'array', items: purchaseView } },
} as const;

export const eventStats = {
  description: "the event's exact figures",
  type: 'object',
  required: ['eventId', 'ticketTypes', 'purchases', 'deadLetters'],
  properties: {
    eventId: id,
    ticketTypes: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'capacity', 'sold', 'held', 'available'],
        description: 'sold + held + available = capacity, always',
        properties: {
          id,
          capacity: { type: 'integer' },
          sold: { type: 'integer' },
          held: { type: 'integer' },
          available: { type: 'integer' },
        },
      },
    },
    purchases: {
      type: 'object',
      description:
        'purchases by status; queued counts dead letters too; refunded: expired or cancelled purchases ' +
        'whose late charge was refunded',
      required: [...PURCHASE_STATUSES],
      properties: Object.fromEntries(
        [...PURCHASE_STATUSES, 'refunded'].map((s) => [s, { type: 'integer', minimum: 0 }]),
      ),
    },
    shard: {
      type: 'integer',
      minimum: 0,
      description: 'the database shard the event lives on, counted from 0, when events are sharded',
    },
    deadLetters: {
      type: 'integer',
      minimum: 0,
      description: "the event's purchases that failed processing too often, waiting for an operator",
    },
    workers: {
      type: 'integer',
      minimum: 0,
      description:
        'the worker processes alive under `onsale cluster`, as the cluster tells its web servers ' +
        '(absent elsewhere: see onsale_workers on /metrics)',
    },
  },
} as const;

/** A place in an event's waiting room (POST /api/events/:eventId/queue, GET /api/queue/:placeId). */
export const placeView = {
  description: "the buyer's place in line",
  type: 'object',
  required: [
    'placeId',
    'eventId',
    'buyerId',
    'state',
    'position',
    'aheadOfYou',
    'etaSeconds',
    'admission',
    'refreshAfterSeconds',
  ],
  properties: {
    placeId: { ...id, description: "the place's id: read the place with it" },
    eventId: id,
    buyerId: { type: 'string', description: 'as the buyer typed it' },
    state: {
      type: 'string',
      enum: ['prequeue', 'waiting', 'admitted', 'sold_out', 'expired'],
      description: 'prequeue: joined before the sales open, shuffled at the opening',
    },
    position: {
      type: ['integer', 'null'],
      description: 'the place in line, from 1; null before the shuffle',
    },
    aheadOfYou: { type: ['integer', 'null'], minimum: 0 },
    etaSeconds: { type: ['number', 'null'], minimum: 0, description: 'an estimate of the wait' },
    admission: {
      type: ['object', 'null'],
      description: 'once admitted: the token to send as Onsale-Admission with the purchase',
      required: ['token', 'expiresAt'],
      properties: { token: { type: 'string' }, expiresAt: isoTime },
    },
    refreshAfterSeconds: { type: 'number', minimum: 0, description: 'when to read the place again' },
  },
} as const;

/** The organizer's view of a line (GET and PATCH /api/events/:eventId/queue). */
export const lineView = {
  description: "the line's length per state, its limits and its speed",
  type: 'object',
  required: [
    'eventId',
    'opened',
    'prequeue',
    'waiting',
    'soldOutPlaces',
    'admitted',
    'active',
    'expired',
    'soldOut',
    'maxActiveBuyers',
    'maxAdmittedPerMinute',
    'powDifficulty',
    'admittedLastMinute',
    'etaOfLastSeconds',
  ],
  properties: {
    eventId: id,
    opened: { type: 'boolean', description: 'the sales opened and the early places were shuffled' },
    prequeue: { type: 'integer', minimum: 0 },
    waiting: { type: 'integer', minimum: 0 },
    soldOutPlaces: { type: 'integer', minimum: 0, description: 'places still in line once sold out' },
    admitted: { type: 'integer', minimum: 0 },
    active: { type: 'integer', minimum: 0, description: 'admitted buyers whose purchase is not final yet' },
    expired: { type: 'integer', minimum: 0 },
    soldOut: { type: 'boolean' },
    maxActiveBuyers: { type: 'integer', minimum: 1 },
    maxAdmittedPerMinute: { type: ['integer', 'null'], minimum: 1 },
    powDifficulty: { type: 'integer', minimum: 0, description: 'proof of work asked to join (0: none)' },
    admittedLastMinute: { type: 'integer' },
    etaOfLastSeconds: { type: ['number', 'null'], description: 'the estimated wait of the last in line' },
  },
} as const;

/** A purchase's payment history, for the admin (GET /api/purchases/:purchaseId/payments). */
export const paymentHistoryView = {
  description: "the purchase's payment, and every attempt, answer, webhook and refund recorded for it",
  type: 'object',
  required: ['purchaseId', 'payment', 'refunded', 'history'],
  properties: {
    purchaseId: id,
    payment: purchaseView.properties.payment,
    refunded: purchaseView.properties.refunded,
    history: {
      type: 'array',
      items: {
        type: 'object',
        required: ['at', 'kind', 'detail'],
        properties: { at: isoTime, kind: { type: 'string' }, detail: { type: ['string', 'null'] } },
      },
    },
  },
} as const;

/** `{ "status": "ok" }` and the like. */
export function statusBody(status: string) {
  return {
    description: `{ "status": "${status}" }`,
    type: 'object',
    required: ['status'],
    properties: { status: { type: 'string', enum: [status] } },
  } as const;
}

/** A response that is not JSON (a page, a stream, Prometheus text), for the response schema of a route. */
export function textResponse(description: string, contentType: string) {
  return { description, content: { [contentType]: { schema: { type: 'string' } } } };
}

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
    powDifficulty?: number;
  };
}

export interface PurchaseBody {
  buyerId: string;
  items: Array<{ ticketTypeId: string; quantity: number }>;
}
