/**
 * Errors with stable codes. Every layer throws these; the web server maps them once to the error body and
 * status of api.md (src/web/errors.ts), whatever adapter raised them.
 */
export type ErrorCode =
  | 'invalid_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'sales_not_open'
  | 'queue_not_open'
  | 'admission_required'
  | 'proof_of_work_required'
  | 'idempotency_conflict'
  | 'payment_declined'
  | 'hold_expired'
  | 'not_payable'
  | 'not_cancellable'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'rate_limited'
  | 'overloaded'
  | 'unavailable';

export class OnsaleError extends Error {
  readonly code: ErrorCode;
  /** Seconds a client should wait before trying again (rate_limited, overloaded, unavailable). */
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, message: string, options?: { retryAfterSeconds?: number; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'OnsaleError';
    this.code = code;
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}

/** A datastore or queue that does not answer (locked, down, timed out): the caller may retry later. */
export class UnavailableError extends OnsaleError {
  constructor(message: string, cause?: unknown) {
    super('unavailable', message, { retryAfterSeconds: 1, cause });
    this.name = 'UnavailableError';
  }
}
