import { describe, expect, it } from 'vitest';
import { newId, newPurchaseId, newTickets } from '../src/shared/ids.js';
import { isoTime } from '../src/shared/iso-time.js';

describe('event and ticket type ids', () => {
  it('are 16 URL-safe characters and never start with "-", which a command line takes for an option', () => {
    // Without the rule, one id in 64 starts with '-': among 10,000 about 156 would.
    const ids = Array.from({ length: 10_000 }, newId);
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_][A-Za-z0-9_-]{15}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe('purchase ids and ticket codes', () => {
  it('start with their millisecond in 12 hex digits, then 128 random bits, and never repeat', () => {
    // Many ids of one millisecond (the time part is reused), then of others, through several pool refills.
    const times = [0x18f00000000, 0x18f00000000, 0x18f00000001, 0x18f00000000, 0xfff];
    const ids = times.flatMap((ms) => Array.from({ length: 400 }, () => newPurchaseId(undefined, ms)));
    ids.forEach((id, i) => {
      expect(id).toMatch(/^[0-9a-f]{12}[A-Za-z0-9_-]{22}$/);
      expect(parseInt(id.slice(0, 12), 16)).toBe(times[Math.floor(i / 400)]);
    });
    expect(new Set(ids).size).toBe(ids.length);
    expect(newPurchaseId('event.3', 1)).toMatch(/^000000000001[A-Za-z0-9_-]{22}\.3$/);
    const codes = newTickets(3, 0xabc).map((t) => t.code);
    for (const code of codes) expect(code.slice(0, 12)).toBe('000000000abc');
  });

  it('are stamped with the same ISO time as Date writes, the same millisecond again or not', () => {
    for (const ms of [1_733_300_000_123, 1_733_300_000_123, 1_733_300_000_124, 0, 1_733_300_000_123])
      expect(isoTime(ms)).toBe(new Date(ms).toISOString());
  });
});
