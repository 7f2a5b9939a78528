import { describe, expect, it } from 'vitest';
import { RateLimiter } from '../src/web/admission.js';

describe('the per-buyer rate limiter', () => {
  it('forgets one-time buyers once their bucket is full again, not a minute later', () => {
    const limiter = new RateLimiter({ count: 10, windowMs: 10_000 });
    const start = Date.now();
    for (let i = 0; i < 5_000; i++) limiter.take(`buyer-${i}`, start);
    expect(limiter.size).toBe(5_000);
    // One token comes back per second: 1.5 s later every one-time buyer's bucket is full, and swept.
    limiter.take('late', start + 1_500);
    expect(limiter.size).toBe(1);
  });

  it('keeps the buckets of buyers still short of tokens, and still refuses them', () => {
    const limiter = new RateLimiter({ count: 10, windowMs: 10_000 });
    const start = Date.now();
    for (let i = 0; i < 10; i++) limiter.take('eager', start);
    expect(() => limiter.take('eager', start)).toThrow(/too many requests/);
    // A sweep 1.5 s later: one and a half tokens back, not ten, so the bucket stays and counts on.
    limiter.take('other', start + 1_500);
    expect(limiter.size).toBe(2);
    limiter.take('eager', start + 1_500);
    expect(() => limiter.take('eager', start + 1_500)).toThrow(/too many requests/);
  });

  it('counts a key in each scope on its own, and says when the next token comes back', () => {
    const limiter = new RateLimiter({ count: 2, windowMs: 10_000 });
    const start = Date.now();
    limiter.take('buyer', start, 'event-a');
    limiter.take('buyer', start, 'event-a');
    // One token back every 5 s: 5 s to wait, said as Retry-After.
    expect(() => limiter.take('buyer', start, 'event-a')).toThrow(
      expect.objectContaining({ code: 'rate_limited', retryAfterSeconds: 5 }),
    );
    limiter.take('buyer', start, 'event-b');
    expect(limiter.size).toBe(2);
    limiter.take('buyer', start + 5_000, 'event-a');
    expect(() => limiter.take('buyer', start + 5_000, 'event-a')).toThrow(/too many requests/);
  });

  it('keeps every bucket exactly while its table grows, and refuses each buyer on its own', () => {
    const limiter = new RateLimiter({ count: 3, windowMs: 3_000 });
    const start = Date.now();
    const buyers = Array.from({ length: 20_000 }, (_, i) => `buyer-${i}`);
    for (const buyer of buyers) for (let t = 0; t < 3; t++) limiter.take(buyer, start, 'event');
    expect(limiter.size).toBe(20_000);
    const refused = buyers.filter((buyer) => {
      try {
        limiter.take(buyer, start, 'event');
        return false;
      } catch {
        return true;
      }
    });
    expect(refused).toHaveLength(20_000);
    // The same ids in another scope are other buckets.
    for (const buyer of buyers) limiter.take(buyer, start, 'other-event');
    expect(limiter.size).toBe(40_000);
  });

  it('tells a scope and a key apart however the text is split between them', () => {
    const limiter = new RateLimiter({ count: 1, windowMs: 10_000 });
    const start = Date.now();
    limiter.take('b:c', start, 'a');
    limiter.take('c', start, 'a:b');
    limiter.take('', start, 'ab');
    limiter.take('ab', start, '');
    expect(limiter.size).toBe(4);
    expect(() => limiter.take('b:c', start, 'a')).toThrow(/too many requests/);
  });
});
