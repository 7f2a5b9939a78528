import type { FastifyReply } from 'fastify';
import { OnsaleError, type ErrorCode } from '../domain/errors.js';

/** The HTTP status of each error code (api.md): the one place where codes become statuses. */
const HTTP_STATUS: Record<ErrorCode | 'internal_error', number> = {
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  sales_not_open: 409,
  queue_not_open: 409,
  admission_required: 403,
  idempotency_conflict: 409,
  payment_declined: 402,
  hold_expired: 409,
  not_payable: 409,
  not_cancellable: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  internal_error: 500,
  overloaded: 503,
  unavailable: 503,
};

export function httpStatus(code: ErrorCode | 'internal_error'): number {
  return HTTP_STATUS[code];
}

/** What a 503 says when a datastore or queue fails: which one, and why, goes to the log only. */
export const UNAVAILABLE_MESSAGE = 'the service is unavailable right now; try again';

/** Writes api.md's error body, with the status of its code (and a 401's WWW-Authenticate challenge). */
export function sendError(
  reply: FastifyReply,
  code: ErrorCode | 'internal_error',
  message: string,
  retryAfterSeconds?: number,
): FastifyReply {
  if (retryAfterSeconds !== undefined) reply.header('retry-after', String(retryAfterSeconds));
  if (code === 'unauthorized') reply.header('www-authenticate', 'Bearer realm="onsale"');
  return reply
    .code(HTTP_STATUS[code])
    .type('application/json; charset=utf-8')
    .send({ error: { code, message } });
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
    return new OnsaleError('invalid_request', e.message ?? 'the request is not valid');
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
  const [status, reason, code, message] =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large', 'headers_too_large', 'the request headers are too large']
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout', 'request_timeout', 'the request did not arrive in time']
        : [400, 'Bad Request', 'invalid_request', 'the request is not valid HTTP/1.1'];
  const body = JSON.stringify({ error: { code, message } });
  return (
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
  );
}
