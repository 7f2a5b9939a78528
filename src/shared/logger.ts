import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { pino, type DestinationStream, type Logger } from 'pino';
import type PinoPretty from 'pino-pretty';

/**
 * pino-pretty and its dozen dependencies, loaded only by a process that writes pretty lines: every process
 * of `onsale start` starts faster without them when logs go to a collector.
 */
function loadPretty(): typeof PinoPretty {
  return createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
}

/** How log records are written: JSON lines, or pino-pretty's coloured lines; `auto` picks by stdout. */
export type LogFormat = 'json' | 'pretty' | 'auto';

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
 * `auto` resolved: pretty when stdout is a terminal (a person reads it), JSON otherwise (a collector does).
 * The supervisors resolve it once and hand the result to their children, whose stdout may not be the TTY.
 */
export function resolveLogFormat(
  format: LogFormat,
  stdoutIsTTY = process.stdout.isTTY === true,
): 'json' | 'pretty' {
  return format === 'auto' ? (stdoutIsTTY ? 'pretty' : 'json') : format;
}

/**
 * Logs on stdout (or `destination`), one record per line, tagged with the process's role: JSON, or, in the
 * `pretty` format, human-readable coloured lines (pino-pretty, synchronous: no worker thread, and a line is
 * out before a crash). Callers log `purchaseRef`/`buyerRef` and never a credential; the redaction below is
 * the net under that rule, in both formats (it runs before formatting).
 */
export function createLogger(
  level: string,
  role: string,
  destination?: DestinationStream,
  format: LogFormat = 'auto',
): Logger {
  const chosen = destination && format === 'auto' ? 'json' : resolveLogFormat(format);
  const out =
    chosen === 'pretty'
      ? loadPretty()({
          colorize: destination ? false : process.stdout.isTTY === true,
          sync: true,
          destination: destination ?? 1,
          ignore: 'hostname',
        })
      : destination;
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
    out,
  );
}
