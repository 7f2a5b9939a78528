import { describe, expect, it } from 'vitest';
import { newId } from '../src/shared/ids.js';

describe('event and ticket type ids', () => {
  it('are 16 URL-safe characters and never start with "-", which a command line takes for an option', () => {
    // Without the rule, one id in 64 starts with '-': among 10,000 about 156 would.
    const ids = Array.from({ length: 10_000 }, newId);
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_][A-Za-z0-9_-]{15}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
