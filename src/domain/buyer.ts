import { OnsaleError } from './errors.js';

/**
 * What an event takes as buyer ids: `any` text (the default, so API clients that send their own ids keep
 * working) or an `email` address.
 */
export const BUYER_ID_KINDS = ['any', 'email'] as const;

export type BuyerIdKind = (typeof BUYER_ID_KINDS)[number];

/**
 * Characters a buyer id may not hold: controls (Cc: NUL, CR, LF, tab, DEL, C1), format characters (Cf:
 * bidi marks, overrides and isolates, zero-width spaces and non-joiners, soft hyphen, BOM, tag characters),
 * line and paragraph separators (Zl, Zp) and lone surrogates (Cs, which cannot be stored as text). Every
 * one is invisible or reorders what a person reads, so it would let two ids that look the same count as
 * two buyers, or spoof an admin's view and logs. The zero-width joiner is the one exception, where it
 * joins two emoji into one (👩‍👩‍👧): there it is visible, and refusing it would refuse such ids.
 */
const FORBIDDEN = /(?!\u200d)[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;
const STRAY_JOINER =
  /(?<!\p{Extended_Pictographic}[\u{fe0f}\p{Emoji_Modifier}]?)\u200d|\u200d(?!\p{Extended_Pictographic})/u;

/** Longest canonical id, in characters (code points, as the typed limit counts them). */
const MAX_CANONICAL_LENGTH = 128;

/**
 * A deliberately simple email syntax, checked on the canonical form: one `@`; a local part of 1..64
 * characters without spaces or `@`; a domain of two or more dot-separated labels of letters and digits,
 * hyphens inside. Whether the mailbox exists is not the server's business.
 */
const EMAIL =
  /^[^\s@]{1,64}@(?:[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?\.)+[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?$/u;

/**
 * The canonical form of a buyer id, the one the per-buyer limit, the per-buyer rate limit and idempotency
 * keys go by: Unicode NFKC (fullwidth and compatibility characters become their plain forms, composed and
 * decomposed accents become one), lower-cased with toLowerCase (not full case folding: `ß` stays `ß`), and
 * trimmed of white space at both ends. For an email the whole address is lower-cased and a `+tag` is kept
 * (providers differ on what it means). Total and pure: it never refuses; see buyerIdentity for that.
 */
export function canonicalBuyerId(typed: string): string {
  return typed.normalize('NFKC').toLowerCase().trim();
}

/**
 * The canonical id of the buyer id `typed` of an event whose ids are `kind`, or the error (invalid_request,
 * naming buyerId) that refuses it: blank, holding a forbidden character, too long once canonical, or not
 * an email when the event wants one. One normalization per call.
 */
export function buyerIdentity(typed: string, kind: BuyerIdKind): string | OnsaleError {
  if (FORBIDDEN.test(typed) || (typed.includes('\u200d') && STRAY_JOINER.test(typed))) {
    return new OnsaleError(
      'invalid_request',
      'buyerId must not contain control, format (bidi, zero-width) or line-separator characters',
    );
  }
  const canonical = canonicalBuyerId(typed);
  if (canonical.length === 0) return new OnsaleError('invalid_request', 'buyerId must not be blank');
  // NFKC can expand a character (U+FDFA becomes 18), so the typed limit does not bound the canonical id.
  if (canonical.length > MAX_CANONICAL_LENGTH && [...canonical].length > MAX_CANONICAL_LENGTH) {
    return new OnsaleError(
      'invalid_request',
      `buyerId must be at most ${MAX_CANONICAL_LENGTH} characters once normalized`,
    );
  }
  if (kind === 'email' && !EMAIL.test(canonical)) {
    return new OnsaleError('invalid_request', 'buyerId must be an email address, like name@example.com');
  }
  return canonical;
}

/**
 * Where a buyer's tickets can be emailed: the canonical buyer id when it is an email address (every id of
 * an `email` event is; an `any` event's id may be), else null (no email is sent).
 */
export function emailAddressOf(canonicalId: string): string | null {
  return EMAIL.test(canonicalId) ? canonicalId : null;
}

/**
 * A purchase as a queue hands it back, with its canonical buyer id: the one it carries, or, for a queue
 * that keeps only the typed id (or a message written before the field existed), derived again by the same
 * pure function, which gives what the web server computed.
 */
export function withCanonicalBuyerId<T extends { buyerId: string; canonicalBuyerId?: string }>(
  purchase: T,
): T & { canonicalBuyerId: string } {
  return typeof purchase.canonicalBuyerId === 'string'
    ? (purchase as T & { canonicalBuyerId: string })
    : { ...purchase, canonicalBuyerId: canonicalBuyerId(purchase.buyerId) };
}
