/**
 * `ms` (milliseconds since the epoch) as `new Date(ms).toISOString()` writes it. The last one is kept: a web
 * server under a rush stamps dozens of purchases within one millisecond, and formatting a date cost close to
 * a microsecond each time.
 */
let lastMs = Number.NaN;
let lastIso = '';

export function isoTime(ms: number): string {
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}
