import type { FastifyReply } from 'fastify';
import { OnsaleError, UnavailableError, type ErrorCode } from '../domain/errors.js';
import { groupBy } from '../shared/group-by.js';

/**
 * Every error code a client can see: the domain's, plus those only the web server gives (a bug, and requests
 * that Node's HTTP parser refuses before any route runs).
 */
export type ApiErrorCode = ErrorCode | 'internal_error' | 'request_timeout' | 'headers_too_large';

/**
 * The HTTP status of each error code, and when a client sees it: the one place where codes become statuses.
 * The OpenAPI document (openapi.ts) lists these per route; a test checks that every code here is in it.
 */
export const ERROR_CODES: Record<ApiErrorCode, { status: number; when: string }> = {
  invalid_request: {
    status: 400,
    when: 'the body, path, query or a header fails validation, or the JSON is malformed',
  },
  unauthorized: {
    status: 401,
    when: 'no valid `Authorization: Bearer <admin token>` (with `WWW-Authenticate: Bearer realm="onsale"`)',
  },
  payment_declined: {
    status: 402,
    when: 'the payment provider declined the payment: nothing charged, the purchase stays `held`',
  },
  forbidden: { status: 403, when: "a buy or join form posted from another site's page" },
  admission_required: {
    status: 403,
    when: 'a purchase of an event with a waiting room without a valid `Onsale-Admission` token',
  },
  proof_of_work_required: {
    status: 403,
    when: 'joining a waiting room that asks for a proof of work without a valid solution: none, wrong, expired, used already, or for another event or buyer',
  },
  not_found: {
    status: 404,
    when: 'no such event, purchase, place in line or route; a webhook of a provider that is not the configured one',
  },
  request_timeout: {
    status: 408,
    when: 'the headers and body did not arrive within ONSALE_REQUEST_TIMEOUT; the connection is closed',
  },
  sales_not_open: { status: 409, when: "a purchase before the event's salesOpenAt" },
  queue_not_open: { status: 409, when: 'joining a waiting room before its `opensAt`' },
  idempotency_conflict: { status: 409, when: 'an Idempotency-Key used again with a different body' },
  hold_expired: { status: 409, when: 'paying a purchase whose hold has expired' },
  not_payable: {
    status: 409,
    when: 'paying a purchase that is not held: queued, waitlisted, cancelled or rejected',
  },
  not_cancellable: {
    status: 409,
    when: 'cancelling a purchase that is queued, confirmed or otherwise final',
  },
  payload_too_large: { status: 413, when: 'the body is larger than ONSALE_BODY_LIMIT' },
  unsupported_media_type: { status: 415, when: 'a body that is not `application/json`' },
  rate_limited: {
    status: 429,
    when: 'the buyer or the client address is over its rate limit (with `Retry-After`)',
  },
  headers_too_large: { status: 431, when: 'the request headers are larger than Node accepts' },
  internal_error: { status: 500, when: 'a bug in onsale (logged with the request id)' },
  overloaded: {
    status: 503,
    when: 'more purchases are queued than ONSALE_MAX_QUEUE_DEPTH (with `Retry-After`)',
  },
  unavailable: {
    status: 503,
    when: 'the database, the queue or the payment provider does not answer, or the server is draining (with `Retry-After`)',
  },
};

/** Codes Node's HTTP parser answers before any route runs: every operation may get them. */
export const CONNECTION_ERROR_CODES: readonly ApiErrorCode[] = ['request_timeout', 'headers_too_large'];

export function httpStatus(code: ApiErrorCode): number {
  return ERROR_CODES[code].status;
}

/** The JSON schema of the error body, with the codes a response may carry. */
export function errorBodySchema(codes: readonly ApiErrorCode[]) {
  return {
    type: 'object' as const,
    required: ['error'],
    properties: {
      error: {
        type: 'object' as const,
        required: ['code', 'message'],
        properties: {
          code: { type: 'string' as const, enum: [...codes] },
          message: { type: 'string' as const, description: 'what went wrong, for a person' },
        },
      },
    },
  };
}

/**
 * The error responses of a route for its response schema: one entry per status, listing the codes it can
 * answer with and when. Routes declare their codes here so that the OpenAPI document lists them.
 */
export function errorResponses(...codes: ApiErrorCode[]): Record<number, object> {
  const byStatus = groupBy(codes, httpStatus);
  return Object.fromEntries(
    [...byStatus].map(([status, list]) => [
      status,
      {
        description: list.map((c) => `\`${c}\`: ${ERROR_CODES[c].when}`).join('; '),
        ...errorBodySchema(list),
      },
    ]),
  );
}

/** What a 503 says when a datastore or queue fails: which one, and why, goes to the log only. */
export const UNAVAILABLE_MESSAGE = 'the service is unavailable right now; try again';

/** Writes api.md's error body, with the status of its code (and a 401's WWW-Authenticate challenge). */
export function sendError(
  reply: FastifyReply,
  code: ApiErrorCode,
  message: string,
  retryAfterSeconds?: number,
): FastifyReply {
  if (retryAfterSeconds !== undefined) reply.header('retry-after', String(retryAfterSeconds));
  if (code === 'unauthorized') reply.header('www-authenticate', 'Bearer realm="onsale"');
  return reply
    .code(httpStatus(code))
    .type('application/json; charset=utf-8')
    .send({ error: { code, message } });
}

/** What a client is told of a failure, and what the log is told. */
export interface ErrorAnswer {
  code: ApiErrorCode;
  message: string;
  retryAfterSeconds?: number;
  /** A bug is logged as an error, a 5xx the client did not cause as a warning, a client's mistake not at all. */
  log: { level: 'error' | 'warn'; message: string } | null;
}

/** The answer to any error a request ended with: a domain error with its code, anything else a 500. */
export function errorAnswer(error: unknown): ErrorAnswer {
  const failure = toOnsaleError(error);
  if (!failure) {
    return {
      code: 'internal_error',
      message: 'something went wrong on our side',
      log: { level: 'error', message: 'request failed' },
    };
  }
  return {
    code: failure.code,
    // A datastore's failure names its engine and error codes: that is for the log, not for clients.
    message: failure instanceof UnavailableError ? UNAVAILABLE_MESSAGE : failure.message,
    retryAfterSeconds: failure.retryAfterSeconds,
    log: httpStatus(failure.code) >= 500 ? { level: 'warn', message: failure.message } : null,
  };
}

/** Fastify's own failures of a client's request, by their stable codes. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_request',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_request',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_request',
  FST_ERR_CTP_INVALID_TYPE: 'unsupported_media_type',
};

/**
 * Maps any error to the canonical OnsaleError a client should see, or null for a bug (a 500).
 * Validation failures keep ajv's message, which names the field: "body/items/0/quantity must be <= 100".
 */
export function toOnsaleError(error: unknown): OnsaleError | null {
  if (error instanceof OnsaleError) return error;
  const e = error as { code?: string; statusCode?: number; validation?: unknown; message?: string };
  if (e.validation) {
    // "headers/idempotency-key must …" names the header as a client writes it: "Idempotency-Key must …".
    const message = (e.message ?? 'the request is not valid').replace(
      /^headers\/([a-z0-9-]+)/,
      (_, name: string) => name.replace(/(^|-)([a-z])/g, (part) => part.toUpperCase()),
    );
    return new OnsaleError('invalid_request', message);
  }
  const mapped = e.code ? FASTIFY_CODES[e.code] : undefined;
  if (mapped) return new OnsaleError(mapped, clientMessage(mapped, e.message));
  if (error instanceof SyntaxError || (e.statusCode === 400 && typeof e.message === 'string')) {
    return new OnsaleError('invalid_request', `malformed JSON: ${e.message ?? 'cannot parse the body'}`);
  }
  if (e.statusCode === 413) return new OnsaleError('payload_too_large', clientMessage('payload_too_large'));
  if (e.statusCode === 415)
    return new OnsaleError('unsupported_media_type', clientMessage('unsupported_media_type'));
  if (e.statusCode === 404) return new OnsaleError('not_found', 'not found');
  if (e.statusCode === 503) return new OnsaleError('unavailable', 'shutting down', { retryAfterSeconds: 1 });
  return null;
}

function clientMessage(code: ErrorCode, detail?: string): string {
  switch (code) {
    case 'payload_too_large':
      return 'the request body is larger than this server accepts';
    case 'unsupported_media_type':
      return 'the body must be JSON, sent with Content-Type: application/json';
    default:
      return detail ?? 'the request is not valid';
  }
}

/**
 * Fastify's routing failures (its `frameworkErrors`): a path whose percent-encoding does not decode, or a
 * path parameter longer than the router takes. Both are parameters that fail validation: 400.
 */
export function sendFrameworkError(reply: FastifyReply, error: { code?: string }): FastifyReply {
  const message =
    error.code === 'FST_ERR_MAX_PARAM_LENGTH'
      ? 'a path parameter is longer than this server accepts'
      : 'the URL path is not valid (bad percent-encoding)';
  return sendError(reply, 'invalid_request', message);
}

/**
 * The bytes to write on a connection whose request Node's HTTP parser refused (a bad request line or header,
 * headers too large, a request that never finished), with api.md's error body rather than Fastify's own.
 */
export function clientErrorResponse(error: { code?: string }): string {
  const [reason, code, message]: [string, ApiErrorCode, string] =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? ['Request Header Fields Too Large', 'headers_too_large', 'the request headers are too large']
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? ['Request Timeout', 'request_timeout', 'the request did not arrive in time']
        : ['Bad Request', 'invalid_request', 'the request is not valid HTTP/1.1'];
  const status = httpStatus(code);
  const body = JSON.stringify({ error: { code, message } });
  return (
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
  );
}
