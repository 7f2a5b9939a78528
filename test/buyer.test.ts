/** The canonical buyer id and its validation (src/domain/buyer.ts), as pure functions. */
import { describe, expect, it } from 'vitest';
import { buyerIdentity, canonicalBuyerId, withCanonicalBuyerId } from '../src/domain/buyer.js';
import { OnsaleError } from '../src/domain/errors.js';

describe('canonicalBuyerId', () => {
  it('gives one id for spellings that differ in case, end spaces, width and accent composition', () => {
    const spellings = [
      'alice@example.com',
      'Alice@Example.com',
      'ALICE@EXAMPLE.COM',
      ' alice@example.com',
      'alice@example.com ',
      '\u3000alice@example.com\t',
      'ａｌｉｃｅ@example.com',
      'ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ',
    ];
    for (const s of spellings) expect(canonicalBuyerId(s), s).toBe('alice@example.com');
    expect(canonicalBuyerId('jos\u00e9')).toBe(canonicalBuyerId('jose\u0301'));
    expect(canonicalBuyerId('JOSE\u0301')).toBe('jos\u00e9');
    // Compatibility forms become plain ones: the ligature ﬁ, circled and superscript digits.
    expect(canonicalBuyerId('ﬁona①²')).toBe('fiona12');
  });

  it('keeps what tells buyers apart: inner spaces, +tags, other letters', () => {
    expect(canonicalBuyerId('ann smith')).toBe('ann smith');
    expect(canonicalBuyerId('Bob+Tix@Example.com')).toBe('bob+tix@example.com');
    expect(canonicalBuyerId('bob+tix@example.com')).not.toBe(canonicalBuyerId('bob@example.com'));
    expect(canonicalBuyerId('ann')).not.toBe(canonicalBuyerId('anne'));
    // toLowerCase, not full case folding: ß is not ss.
    expect(canonicalBuyerId('STRAẞE')).toBe('straße');
    expect(canonicalBuyerId('straße')).not.toBe(canonicalBuyerId('strasse'));
  });

  it('is idempotent', () => {
    for (const s of ['Ａｌｉｃｅ', 'jose\u0301', ' MiXeD ', 'İstanbul', 'ǅemal', 'ΣΊΣΥΦΟΣ', '𝕌𝕟𝕚']) {
      const once = canonicalBuyerId(s);
      expect(canonicalBuyerId(once), s).toBe(once);
    }
  });
});

describe('buyerIdentity', () => {
  const refusal = (typed: string, kind: 'any' | 'email' = 'any') => {
    const result = buyerIdentity(typed, kind);
    expect(result, JSON.stringify(typed)).toBeInstanceOf(OnsaleError);
    const error = result as OnsaleError;
    expect(error.code).toBe('invalid_request');
    expect(error.message).toContain('buyerId');
    return error.message;
  };

  it('returns the canonical id of an acceptable id', () => {
    expect(buyerIdentity(' Ann ', 'any')).toBe('ann');
    expect(buyerIdentity(' Bob+Tix@Example.COM ', 'email')).toBe('bob+tix@example.com');
    expect(buyerIdentity('ｂｏｂ@ｅｘａｍｐｌｅ．ｃｏｍ', 'email')).toBe('bob@example.com');
    expect(buyerIdentity('zoë@bücher.de', 'email')).toBe('zoë@bücher.de');
    expect(buyerIdentity('a@sub.example.co.uk', 'email')).toBe('a@sub.example.co.uk');
    expect(buyerIdentity('smile 😀', 'any')).toBe('smile 😀');
    // A zero-width joiner that joins emoji (a family, a skin-toned person) is visible, so allowed.
    expect(buyerIdentity('👩\u200d👩\u200d👧 family', 'any')).toBe('👩\u200d👩\u200d👧 family');
    expect(buyerIdentity('🧑🏽\u200d🚀', 'any')).toBe('🧑🏽\u200d🚀');
    expect(buyerIdentity('❤\ufe0f\u200d🔥', 'any')).toBe('❤\ufe0f\u200d🔥');
  });

  it('refuses blank ids', () => {
    for (const blank of ['', ' ', '   ', '\u3000', '\u00a0 \u2003']) expect(refusal(blank)).toMatch(/blank/);
  });

  it('refuses control, format, bidi and line-separator characters, and lone surrogates', () => {
    const bad = [
      '\u0000',
      'a\u0000b',
      'a\rb',
      'a\nb',
      'a\tb',
      '\u007f',
      '\u0085',
      '\u009f',
      '\u200e',
      '\u200f',
      ...['\u202a', '\u202b', '\u202c', '\u202d', '\u202eevil'],
      ...['\u2066', '\u2067', '\u2068', '\u2069'],
      '\u061c',
      'zero\u200bwidth',
      'join\u200der',
      '👩\u200d',
      'a\u200d👩',
      '\u200d👩',
      'soft\u00adhyphen',
      '\ufeffbom',
      'tag\u{e0041}',
      'line\u2028sep',
      'para\u2029sep',
      '\ud800',
      'x\udc00y',
    ];
    for (const s of bad) expect(refusal(s)).toMatch(/control|format/);
  });

  it('refuses ids longer than 128 characters once normalized', () => {
    expect(buyerIdentity('a'.repeat(128), 'any')).toBe('a'.repeat(128));
    // Characters, not UTF-16 units, as the typed limit counts them.
    expect(buyerIdentity('😀'.repeat(128), 'any')).toBe('😀'.repeat(128));
    expect(refusal('😀'.repeat(127) + '½')).toMatch(/128/);
    // U+FDFA is one character that NFKC makes 18.
    expect(refusal('\ufdfa'.repeat(8))).toMatch(/128/);
  });

  it('refuses what is not an email on an email event', () => {
    const bad = [
      'not-an-email',
      'a@b',
      '@example.com',
      'a@',
      'a@@example.com',
      'a b@example.com',
      'a@exa mple.com',
      'a@.com',
      'a@example.',
      'a@example..com',
      'a@-example.com',
      'a@example-.com',
      'a@exam_ple.com',
      `${'x'.repeat(65)}@example.com`,
    ];
    for (const s of bad) expect(refusal(s, 'email')).toMatch(/email/);
    for (const s of bad.slice(0, 2)) expect(buyerIdentity(s, 'any')).toBe(s);
  });
});

describe('withCanonicalBuyerId', () => {
  it('keeps a carried canonical id and derives a missing one', () => {
    const carried = { buyerId: ' Ann ', canonicalBuyerId: 'ann' };
    expect(withCanonicalBuyerId(carried)).toBe(carried);
    expect(withCanonicalBuyerId({ buyerId: ' Ann ' })).toEqual({ buyerId: ' Ann ', canonicalBuyerId: 'ann' });
  });
});
