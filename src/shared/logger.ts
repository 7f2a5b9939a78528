import { pino, type DestinationStream, type Logger } from 'pino';

/**
 * Fields never written to a log, wherever a caller puts them: the admin token, Authorization headers and
 * payment tokens. Request lines carry no header or body at all; this is the net under that rule.
 */
const REDACTED_PATHS = [
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

/** JSON logs on stdout (or `destination`), one line per record, tagged with the process's role. */
export function createLogger(level: string, role: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { role, pid: process.pid },
      redact: { paths: REDACTED_PATHS, censor: '[secret]' },
    },
    destination,
  );
}
