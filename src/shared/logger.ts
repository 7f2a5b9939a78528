import { pino, type Logger } from 'pino';

/** JSON logs on stdout, one line per record, tagged with the process's role. */
export function createLogger(level: string, role: string): Logger {
  return pino({
    level,
    base: { role, pid: process.pid },
    redact: {
      paths: ['req.headers.authorization', 'headers.authorization', 'adminToken'],
      censor: '[secret]',
    },
  });
}
