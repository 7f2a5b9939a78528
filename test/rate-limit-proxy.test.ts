/**
 * Whom the address rate limit counts: loopback like anyone by default (a reverse proxy on the same host
 * would otherwise make every buyer exempt), and behind a trusted proxy the right-most untrusted address of
 * X-Forwarded-For, whatever the client wrote to its left.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectApiError, send } from './helpers/http.js';
import { startOnsale, type Onsale } from './helpers/processes.js';

const BUDGET = 3;
const started: Onsale[] = [];

afterAll(async () => {
  await Promise.all(started.map((o) => o.stop()));
});

async function statuses(base: string, n: number, from: string, forwardedFor?: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const headers: Record<string, string> = forwardedFor ? { 'x-forwarded-for': forwardedFor } : {};
    out.push((await send(base, 'GET', '/api/events', { localAddress: from, headers })).status);
  }
  return out;
}

describe('the default configuration', () => {
  let base: string;
  beforeAll(async () => {
    const onsale = await startOnsale({ workers: 0, env: { ONSALE_ADDRESS_RATE: `${BUDGET}/m` } });
    started.push(onsale);
    base = onsale.baseUrl;
  });

  it('rate-limits loopback like any client', async () => {
    expect(await statuses(base, BUDGET + 1, '127.0.0.1')).toEqual([...Array<number>(BUDGET).fill(200), 429]);
    expectApiError(
      await send(base, 'GET', '/api/events', { localAddress: '127.0.0.1' }),
      429,
      'rate_limited',
    );
  });
});

describe('behind a trusted proxy at 127.0.0.1', () => {
  let base: string;
  beforeAll(async () => {
    const onsale = await startOnsale({
      workers: 0,
      env: { ONSALE_ADDRESS_RATE: `${BUDGET}/m`, ONSALE_TRUST_PROXY: '127.0.0.1' },
    });
    started.push(onsale);
    base = onsale.baseUrl;
  });

  it('counts the right-most untrusted address of X-Forwarded-For, not what the client wrote before it', async () => {
    // A client claiming loopback, passed on by the proxy with its real address appended.
    expect(await statuses(base, BUDGET, '127.0.0.1', '127.0.0.1, 203.0.113.9')).toEqual(
      Array<number>(BUDGET).fill(200),
    );
    // The same client changing its own left-most value: the same bucket, now empty.
    for (const spoofed of ['127.0.0.1', '198.51.100.1', '10.0.0.1, 127.0.0.1']) {
      const res = await send(base, 'GET', '/api/events', {
        localAddress: '127.0.0.1',
        headers: { 'x-forwarded-for': `${spoofed}, 203.0.113.9` },
      });
      expectApiError(res, 429, 'rate_limited', spoofed);
    }
    // Another client behind the same proxy has its own budget, and the proxy itself is not 203.0.113.9.
    expect(await statuses(base, 1, '127.0.0.1', '127.0.0.1, 203.0.113.10')).toEqual([200]);
    expect(await statuses(base, 1, '127.0.0.1', '203.0.113.11')).toEqual([200]);
  });

  it('ignores X-Forwarded-For from an address it does not trust', async () => {
    // 127.0.0.2 is not the proxy: its header is the client's own word, and its connection address counts.
    expect(await statuses(base, BUDGET + 1, '127.0.0.2', '203.0.113.20')).toEqual([
      ...Array<number>(BUDGET).fill(200),
      429,
    ]);
    expect(await statuses(base, 1, '127.0.0.2', '203.0.113.21')).toEqual([429]);
  });
});
