import { OnsaleError } from './errors.js';

/** A lone UTF-16 surrogate cannot be stored as text and kept verbatim, so text holding one is refused. */
const LONE_SURROGATE = /\p{Cs}/u;

/** The error that refuses texts which cannot be kept exactly as sent, or null when all of them can. */
export function unstorableText(...texts: string[]): OnsaleError | null {
  return texts.some((t) => LONE_SURROGATE.test(t))
    ? new OnsaleError('invalid_request', 'text must be valid Unicode (a lone surrogate was found)')
    : null;
}
