/**
 * A small typed client of the onsale HTTP API (docs/api.md), for integrators: `import { OnsaleClient } from
 * 'onsale/client'`. It needs nothing but `fetch` (Node 20, browsers). test/client.test.ts checks every
 * operation here against the server's OpenAPI document (GET /api/openapi.json), and the simulator builds
 * its requests with the `requests` builders below, so the client is exercised by every simulated sale.
 *
 * @example
 * const onsale = new OnsaleClient({ baseUrl: 'http://127.0.0.1:3000' });
 * const [event] = (await onsale.listEvents()).events;
 * const receipt = await onsale.purchase(event.id, { buyerId: 'ada@example.com', items: [...] }, { idempotencyKey });
 * const final = await onsale.waitForFinal(receipt.purchaseId);
 */

export type PurchaseStatus =
  'queued' | 'waitlisted' | 'held' | 'confirmed' | 'rejected' | 'expired' | 'cancelled';
export type RejectReason = 'sold_out' | 'insufficient_inventory' | 'limit_exceeded';
export type BuyerIdKind = 'any' | 'email';

/** The statuses a purchase never leaves. */
export const FINAL_STATUSES: ReadonlySet<PurchaseStatus> = new Set([
  'confirmed',
  'rejected',
  'expired',
  'cancelled',
]);

export interface TicketType {
  id: string;
  name: string;
  priceCents: number;
  capacity: number;
  maxPerBuyer: number;
  /** Tickets left; at most one second behind the truth. */
  available: number;
}

export interface SaleEvent {
  id: string;
  name: string;
  salesOpenAt: string;
  holdSeconds: number;
  buyerIdKind: BuyerIdKind;
  ticketTypes: TicketType[];
  /** The waiting room in front of its purchases; null or absent: none. */
  waitingRoom?: WaitingRoomSettings | null;
}

export interface WaitingRoomSettings {
  opensAt: string;
  maxActiveBuyers: number;
  maxAdmittedPerMinute: number | null;
  sessionSeconds: number;
}

export interface EventSummary {
  id: string;
  name: string;
  salesOpenAt: string;
}

export interface NewEvent {
  name: string;
  /** ISO-8601; default now. */
  salesOpenAt?: string;
  holdSeconds?: number;
  buyerIdKind?: BuyerIdKind;
  ticketTypes: Array<{ name: string; priceCents: number; capacity: number; maxPerBuyer?: number }>;
  waitingRoom?: Partial<WaitingRoomSettings>;
}

export interface PurchaseItem {
  ticketTypeId: string;
  quantity: number;
}

export interface PurchaseRequest {
  buyerId: string;
  items: PurchaseItem[];
}

export interface PurchaseReceipt {
  purchaseId: string;
  status: PurchaseStatus;
  statusUrl: string;
}

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
  /** The payment of a held purchase as onsale last recorded it; null before any attempt. */
  payment?: {
    status: 'processing' | 'requires_action' | 'succeeded' | 'declined' | 'failed';
    nextActionUrl: string | null;
  } | null;
  /** A charge that came after the purchase had ended was refunded. */
  refunded?: boolean;
  createdAt: string;
  updatedAt: string;
}

/** A buyer's place in an event's waiting room. */
export interface Place {
  placeId: string;
  eventId: string;
  buyerId: string;
  state: 'prequeue' | 'waiting' | 'admitted' | 'sold_out' | 'expired';
  position: number | null;
  aheadOfYou: number | null;
  etaSeconds: number | null;
  /** Once admitted: send `token` as the purchase's `admission` option. */
  admission: { token: string; expiresAt: string } | null;
  refreshAfterSeconds: number;
}

/** A proof-of-work challenge of a waiting room (when its `powDifficulty` is above 0). */
export interface Challenge {
  challenge: string;
  /** Leading zero bits SHA-256(`${challenge}:${solution}`) must have. */
  difficulty: number;
  expiresAt: string;
}

/** A solved challenge, sent with the join. */
export interface ProofOfWork {
  challenge: string;
  solution: string;
}

/** The organizer's view of a waiting line. */
export interface LineStats {
  eventId: string;
  opened: boolean;
  prequeue: number;
  waiting: number;
  soldOutPlaces: number;
  admitted: number;
  active: number;
  expired: number;
  soldOut: boolean;
  maxActiveBuyers: number;
  maxAdmittedPerMinute: number | null;
  admittedLastMinute: number;
  etaOfLastSeconds: number | null;
}

export interface PaymentHistory {
  purchaseId: string;
  payment: Purchase['payment'];
  refunded: boolean;
  history: Array<{ at: string; kind: string; detail: string | null }>;
}

export interface EventStats {
  eventId: string;
  ticketTypes: Array<{ id: string; capacity: number; sold: number; held: number; available: number }>;
  purchases: Record<PurchaseStatus, number> & { refunded?: number };
  deadLetters: number;
  /** The database shard of the event, counted from 0, when events are sharded. */
  shard?: number;
  /** The worker processes alive, under `onsale cluster` only. */
  workers?: number;
}

/** The body of every error answer. */
export interface ErrorBody {
  error: { code: string; message: string };
}

/** An HTTP request, as `fetch` or undici's `Pool.request` take it (the path is relative to the server). */
export interface RequestSpec {
  method: 'GET' | 'POST' | 'PATCH';
  path: string;
  headers: Record<string, string>;
  body?: string;
}

/**
 * Each operation of the client: its method and path as the OpenAPI document writes them, and the statuses
 * of its successful answers. test/client.test.ts checks them against the document.
 */
export const OPERATIONS = {
  listEvents: { method: 'GET', path: '/api/events', ok: [200] },
  getEvent: { method: 'GET', path: '/api/events/{eventId}', ok: [200] },
  createEvent: { method: 'POST', path: '/api/events', ok: [201] },
  eventStats: { method: 'GET', path: '/api/events/{eventId}/stats', ok: [200] },
  listPurchases: { method: 'GET', path: '/api/events/{eventId}/purchases', ok: [200] },
  exportPurchases: { method: 'GET', path: '/api/events/{eventId}/export.csv', ok: [200] },
  purchase: { method: 'POST', path: '/api/events/{eventId}/purchases', ok: [200, 202] },
  getPurchase: { method: 'GET', path: '/api/purchases/{purchaseId}', ok: [200] },
  purchaseEvents: { method: 'GET', path: '/api/purchases/{purchaseId}/events', ok: [200] },
  pay: { method: 'POST', path: '/api/purchases/{purchaseId}/payment', ok: [200, 202] },
  cancel: { method: 'POST', path: '/api/purchases/{purchaseId}/cancel', ok: [200] },
  paymentHistory: { method: 'GET', path: '/api/purchases/{purchaseId}/payments', ok: [200] },
  queueChallenge: { method: 'POST', path: '/api/events/{eventId}/queue/challenge', ok: [200] },
  joinQueue: { method: 'POST', path: '/api/events/{eventId}/queue', ok: [200, 201] },
  getPlace: { method: 'GET', path: '/api/queue/{placeId}', ok: [200] },
  getLine: { method: 'GET', path: '/api/events/{eventId}/queue', ok: [200] },
  setRoomLimits: { method: 'PATCH', path: '/api/events/{eventId}/queue', ok: [200] },
  health: { method: 'GET', path: '/healthz', ok: [200] },
  ready: { method: 'GET', path: '/readyz', ok: [200] },
  openApi: { method: 'GET', path: '/api/openapi.json', ok: [200] },
} as const;

export type OperationName = keyof typeof OPERATIONS;

const JSON_TYPE = 'application/json';
const id = (value: string) => encodeURIComponent(value);
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/**
 * Builders of each operation's request, for callers that send requests their own way (the simulator sends
 * them through undici pools). Admin operations take the admin token.
 */
export const requests = {
  listEvents: (): RequestSpec => ({ method: 'GET', path: '/api/events', headers: {} }),
  getEvent: (eventId: string): RequestSpec => ({
    method: 'GET',
    path: `/api/events/${id(eventId)}`,
    headers: {},
  }),
  createEvent: (event: NewEvent, adminToken: string): RequestSpec => ({
    method: 'POST',
    path: '/api/events',
    headers: { 'content-type': JSON_TYPE, ...bearer(adminToken) },
    body: JSON.stringify(event),
  }),
  eventStats: (eventId: string, adminToken: string): RequestSpec => ({
    method: 'GET',
    path: `/api/events/${id(eventId)}/stats`,
    headers: bearer(adminToken),
  }),
  listPurchases: (
    eventId: string,
    adminToken: string,
    query: { q?: string; limit?: number } = {},
  ): RequestSpec => {
    const search = new URLSearchParams();
    if (query.q !== undefined) search.set('q', query.q);
    if (query.limit !== undefined) search.set('limit', String(query.limit));
    const qs = search.toString();
    return {
      method: 'GET',
      path: `/api/events/${id(eventId)}/purchases${qs ? `?${qs}` : ''}`,
      headers: bearer(adminToken),
    };
  },
  exportPurchases: (eventId: string, adminToken: string): RequestSpec => ({
    method: 'GET',
    path: `/api/events/${id(eventId)}/export.csv`,
    headers: { accept: 'text/csv', ...bearer(adminToken) },
  }),
  purchase: (
    eventId: string,
    request: PurchaseRequest,
    options: { idempotencyKey?: string; admission?: string } = {},
  ): RequestSpec => ({
    method: 'POST',
    path: `/api/events/${id(eventId)}/purchases`,
    headers: {
      'content-type': JSON_TYPE,
      ...(options.idempotencyKey === undefined ? {} : { 'idempotency-key': options.idempotencyKey }),
      ...(options.admission === undefined ? {} : { 'onsale-admission': options.admission }),
    },
    body: JSON.stringify({ buyerId: request.buyerId, items: request.items }),
  }),
  getPurchase: (purchaseId: string): RequestSpec => ({
    method: 'GET',
    path: `/api/purchases/${id(purchaseId)}`,
    headers: {},
  }),
  purchaseEvents: (purchaseId: string): RequestSpec => ({
    method: 'GET',
    path: `/api/purchases/${id(purchaseId)}/events`,
    headers: { accept: 'text/event-stream' },
  }),
  pay: (
    purchaseId: string,
    paymentToken: string,
    options: { idempotencyKey?: string } = {},
  ): RequestSpec => ({
    method: 'POST',
    path: `/api/purchases/${id(purchaseId)}/payment`,
    headers: {
      'content-type': JSON_TYPE,
      ...(options.idempotencyKey === undefined ? {} : { 'idempotency-key': options.idempotencyKey }),
    },
    body: JSON.stringify({ paymentToken }),
  }),
  cancel: (purchaseId: string): RequestSpec => ({
    method: 'POST',
    path: `/api/purchases/${id(purchaseId)}/cancel`,
    headers: { 'content-type': JSON_TYPE },
    body: '{}',
  }),
  paymentHistory: (purchaseId: string, adminToken: string): RequestSpec => ({
    method: 'GET',
    path: `/api/purchases/${id(purchaseId)}/payments`,
    headers: bearer(adminToken),
  }),
  queueChallenge: (eventId: string, buyerId: string): RequestSpec => ({
    method: 'POST',
    path: `/api/events/${id(eventId)}/queue/challenge`,
    headers: { 'content-type': JSON_TYPE },
    body: JSON.stringify({ buyerId }),
  }),
  joinQueue: (eventId: string, buyerId: string, proofOfWork?: ProofOfWork): RequestSpec => ({
    method: 'POST',
    path: `/api/events/${id(eventId)}/queue`,
    headers: { 'content-type': JSON_TYPE },
    body: JSON.stringify(proofOfWork ? { buyerId, proofOfWork } : { buyerId }),
  }),
  getPlace: (placeId: string): RequestSpec => ({
    method: 'GET',
    path: `/api/queue/${id(placeId)}`,
    headers: {},
  }),
  getLine: (eventId: string, adminToken: string): RequestSpec => ({
    method: 'GET',
    path: `/api/events/${id(eventId)}/queue`,
    headers: bearer(adminToken),
  }),
  setRoomLimits: (
    eventId: string,
    limits: { maxActiveBuyers?: number; maxAdmittedPerMinute?: number | null },
    adminToken: string,
  ): RequestSpec => ({
    method: 'PATCH',
    path: `/api/events/${id(eventId)}/queue`,
    headers: { 'content-type': JSON_TYPE, ...bearer(adminToken) },
    body: JSON.stringify(limits),
  }),
  health: (): RequestSpec => ({ method: 'GET', path: '/healthz', headers: {} }),
  ready: (): RequestSpec => ({ method: 'GET', path: '/readyz', headers: {} }),
  openApi: (): RequestSpec => ({ method: 'GET', path: '/api/openapi.json', headers: {} }),
} satisfies Record<OperationName, (...args: never[]) => RequestSpec>;

/** An error answer of the server: its status, its stable code, and when to try again (429, 503). */
export class OnsaleApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** From Retry-After, when the server sent it. */
  readonly retryAfterSeconds: number | undefined;

  constructor(status: number, code: string, message: string, retryAfterSeconds?: number) {
    super(`${status} ${code}: ${message}`);
    this.name = 'OnsaleApiError';
    this.status = status;
    this.code = code;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

export interface OnsaleClientOptions {
  /** The server, e.g. `http://127.0.0.1:3000` (a path prefix is kept). */
  baseUrl: string;
  /** For the admin operations. */
  adminToken?: string;
  /** Default: the global fetch. */
  fetch?: typeof fetch;
}

/** The onsale HTTP API over fetch. Every method throws OnsaleApiError for an error answer. */
export class OnsaleClient {
  readonly #base: string;
  readonly #adminToken: string | undefined;
  readonly #fetch: typeof fetch;

  constructor(options: OnsaleClientOptions) {
    this.#base = options.baseUrl.replace(/\/+$/, '');
    this.#adminToken = options.adminToken;
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
  }

  listEvents(): Promise<{ events: EventSummary[] }> {
    return this.#json('listEvents', requests.listEvents());
  }

  getEvent(eventId: string): Promise<SaleEvent> {
    return this.#json('getEvent', requests.getEvent(eventId));
  }

  async createEvent(event: NewEvent): Promise<SaleEvent> {
    return this.#json('createEvent', requests.createEvent(event, this.#admin()));
  }

  async eventStats(eventId: string): Promise<EventStats> {
    return this.#json('eventStats', requests.eventStats(eventId, this.#admin()));
  }

  async listPurchases(
    eventId: string,
    query: { q?: string; limit?: number } = {},
  ): Promise<{ purchases: Purchase[] }> {
    return this.#json('listPurchases', requests.listPurchases(eventId, this.#admin(), query));
  }

  /**
   * Buys. The answer means the purchase is durably queued (`replayed`: this Idempotency-Key had already made
   * it). Send the same key again after a network error or a 429/503: it never makes a second purchase.
   */
  /**
   * The event's allocated purchases as CSV (a UTF-8 byte-order mark, a header line, one line per purchase),
   * as the server streams it: read it piece by piece, or whole with `new Response(stream).text()`.
   */
  async exportPurchases(eventId: string): Promise<ReadableStream<Uint8Array>> {
    const res = await this.#send('exportPurchases', requests.exportPurchases(eventId, this.#admin()));
    return res.body ?? new Response('').body!;
  }

  async purchase(
    eventId: string,
    request: PurchaseRequest,
    /** `admission`: the token of the buyer's admitted place, for an event with a waiting room. */
    options: { idempotencyKey?: string; admission?: string } = {},
  ): Promise<PurchaseReceipt & { replayed: boolean }> {
    const res = await this.#send('purchase', requests.purchase(eventId, request, options));
    return { ...((await res.json()) as PurchaseReceipt), replayed: res.status === 200 };
  }

  getPurchase(purchaseId: string): Promise<Purchase> {
    return this.#json('getPurchase', requests.getPurchase(purchaseId));
  }

  /** The purchase now and at every change, until a final status (server-sent events). */
  async *watchPurchase(purchaseId: string): AsyncGenerator<Purchase> {
    const res = await this.#send('purchaseEvents', requests.purchaseEvents(purchaseId));
    if (!res.body) return;
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const data = buffer
          .slice(0, end)
          .split('\n')
          .filter((line) => line.startsWith('data:'))
          .map((line) => line.slice(5).trim())
          .join('\n');
        buffer = buffer.slice(end + 2);
        if (data) yield JSON.parse(data) as Purchase;
      }
    }
  }

  /** Follows the purchase until its status is final, and returns it. */
  async waitForFinal(purchaseId: string): Promise<Purchase> {
    for (;;) {
      for await (const purchase of this.watchPurchase(purchaseId)) {
        if (FINAL_STATUSES.has(purchase.status)) return purchase;
      }
      // The stream ended early (a server restarting): read it, and follow again if still not final.
      const now = await this.getPurchase(purchaseId);
      if (FINAL_STATUSES.has(now.status)) return now;
    }
  }

  /** Pays a held purchase: confirmed (200), or still held with a step for the buyer (202, payment.nextActionUrl). */
  async pay(
    purchaseId: string,
    paymentToken: string,
    options: { idempotencyKey?: string } = {},
  ): Promise<Purchase> {
    return this.#json('pay', requests.pay(purchaseId, paymentToken, options));
  }

  /** Cancels a held or waitlisted purchase; its tickets go back on sale. */
  cancel(purchaseId: string): Promise<Purchase> {
    return this.#json('cancel', requests.cancel(purchaseId));
  }

  /** A purchase's payment history (admin). */
  paymentHistory(purchaseId: string): Promise<PaymentHistory> {
    return this.#json('paymentHistory', requests.paymentHistory(purchaseId, this.#admin()));
  }

  /** A proof-of-work challenge for joining the event's waiting room, bound to the buyer. */
  queueChallenge(eventId: string, buyerId: string): Promise<Challenge> {
    return this.#json('queueChallenge', requests.queueChallenge(eventId, buyerId));
  }

  /**
   * Takes (or finds) the buyer's place in the event's waiting room; with a proof of work when the room asks
   * for one (queueChallenge, then a solution).
   */
  async joinQueue(
    eventId: string,
    buyerId: string,
    proofOfWork?: ProofOfWork,
  ): Promise<Place & { created: boolean }> {
    const res = await this.#send('joinQueue', requests.joinQueue(eventId, buyerId, proofOfWork));
    return { ...((await res.json()) as Place), created: res.status === 201 };
  }

  /** Reads a place in line; once admitted it carries the admission token for the purchase. */
  getPlace(placeId: string): Promise<Place> {
    return this.#json('getPlace', requests.getPlace(placeId));
  }

  /** The event's waiting line (admin). */
  getLine(eventId: string): Promise<LineStats> {
    return this.#json('getLine', requests.getLine(eventId, this.#admin()));
  }

  /** Changes the waiting room's limits during the sale (admin). */
  setRoomLimits(
    eventId: string,
    limits: { maxActiveBuyers?: number; maxAdmittedPerMinute?: number | null },
  ): Promise<LineStats> {
    return this.#json('setRoomLimits', requests.setRoomLimits(eventId, limits, this.#admin()));
  }

  health(): Promise<{ status: 'ok' }> {
    return this.#json('health', requests.health());
  }

  ready(): Promise<{ status: 'ready' }> {
    return this.#json('ready', requests.ready());
  }

  /** The server's OpenAPI 3.1 document. */
  openApi(): Promise<Record<string, unknown>> {
    return this.#json('openApi', requests.openApi());
  }

  #admin(): string {
    if (this.#adminToken === undefined) throw new Error('this operation needs the adminToken option');
    return this.#adminToken;
  }

  async #json<T>(operation: OperationName, spec: RequestSpec): Promise<T> {
    return (await (await this.#send(operation, spec)).json()) as T;
  }

  async #send(operation: OperationName, spec: RequestSpec): Promise<Response> {
    const res = await this.#fetch(`${this.#base}${spec.path}`, {
      method: spec.method,
      headers: spec.headers,
      ...(spec.body === undefined ? {} : { body: spec.body }),
    });
    if ((OPERATIONS[operation].ok as readonly number[]).includes(res.status)) return res;
    throw await apiError(res);
  }
}

async function apiError(res: Response): Promise<OnsaleApiError> {
  const text = await res.text();
  let body: Partial<ErrorBody> = {};
  try {
    body = JSON.parse(text) as Partial<ErrorBody>;
  } catch {
    // not the API's error body (a proxy's page): keep the status
  }
  const retryAfter = Number(res.headers.get('retry-after') ?? Number.NaN);
  return new OnsaleApiError(
    res.status,
    body.error?.code ?? 'http_error',
    body.error?.message ?? (text.slice(0, 200) || res.statusText),
    Number.isFinite(retryAfter) ? retryAfter : undefined,
  );
}
