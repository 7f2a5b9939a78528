import { createHash } from 'node:crypto';
import { pino, type DestinationStream, type Logger } from 'pino';

/** Fields holding credentials: the admin token, Authorization headers and payment tokens. Never logged. */
const SECRET_PATHS = [
  'adminToken',
  'token',
  'paymentToken',
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  '*.adminToken',
  '*.paymentToken',
  '*.authorization',
  'body.paymentToken',
  'req.body.paymentToken',
];

/**
 * Fields holding a purchase id (the key to its tickets) or a buyer's id (often an email): logged only as
 * their logRef, so that log lines can still be matched up without anyone reading the log holding them.
 */
const REFERENCED_KEYS = new Set(['purchaseId', 'buyerId']);
const REFERENCED_PATHS = [...REFERENCED_KEYS].flatMap((key) => [key, `*.${key}`]);

/**
 * A short, stable stand-in for an id that must not be logged: the first 8 hex digits of its SHA-256. The
 * same id always gives the same ref, so a web server's line and a worker's line about one purchase match.
 */
export function logRef(id: string): string {
  return createHash('sha256').update(id).digest('hex').slice(0, 8);
}

/**
 * JSON logs on stdout (or `destination`), one line per record, tagged with the process's role. Callers log
 * `purchaseRef`/`buyerRef` and never a credential; the redaction below is the net under that rule.
 */
export function createLogger(level: string, role: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { role, pid: process.pid },
      redact: {
        paths: [...SECRET_PATHS, ...REFERENCED_PATHS],
        censor: (value: unknown, path: string[]) =>
          REFERENCED_KEYS.has(path[path.length - 1] ?? '') && typeof value === 'string'
            ? logRef(value)
            : '[secret]',
      },
    },
    destination,
  );
}
