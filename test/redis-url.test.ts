import { afterAll, describe, expect, it } from 'vitest';
import { parseRedisUrl } from '../src/adapters/redis/url.js';
import { runCli, tempDir } from './helpers/processes.js';

describe('the Redis queue URL', () => {
  it('names one server as before, passing ioredis its own parameters', () => {
    expect(parseRedisUrl('redis://:pw@127.0.0.1:6380/2?prefix=shop&family=4')).toEqual({
      cluster: false,
      url: 'redis://:pw@127.0.0.1:6380/2?family=4',
      prefix: 'shop',
    });
    expect(parseRedisUrl('rediss://cache.example').prefix).toBe('onsale');
  });

  it('names a cluster by several nodes or cluster=1, with credentials and TLS for every node', () => {
    expect(parseRedisUrl('rediss://app:p%40ss@h1:7000,h2,[::1]:7002?prefix=p')).toEqual({
      cluster: true,
      nodes: [
        { host: 'h1', port: 7000 },
        { host: 'h2', port: 6379 },
        { host: '::1', port: 7002 },
      ],
      tls: true,
      username: 'app',
      password: 'p@ss',
      prefix: 'p',
    });
    expect(parseRedisUrl('redis://h1:7000?cluster=1')).toMatchObject({ cluster: true, tls: false });
  });

  it.each([
    ['redis://h1:7000,h2:7001?cluster=0', /contradicts/],
    ['redis://h1:7000,h2:7001/3', /one database/],
    ['redis://h1:7000,h2:x', /not a host\[:port\]/],
    ['redis://h1:70000?cluster=1', /out of range/],
    ['redis://h1?cluster=yes', /cluster must be 0 or 1/],
    ['redis://h1,h2?timeout=5', /unknown parameter "timeout"/],
    ['redis://h1?prefix=a{b}', /must not contain/],
    ['redis://h1/x', /must be a number/],
  ])('refuses %s', (url, message) => {
    expect(() => parseRedisUrl(url)).toThrow(message);
  });

  const dir = tempDir();
  afterAll(() => dir.remove());

  it('is checked at start: a malformed one exits 2, naming the setting and never the password', async () => {
    const p = runCli(['serve'], {
      ONSALE_DATA_DIR: dir.path,
      ONSALE_QUEUE_URL: 'redis://app:s3cret-pw@h1:7000,h2:7001/3',
    });
    expect((await p.exited).code).toBe(2);
    expect(p.output()).toContain('ONSALE_QUEUE_URL');
    expect(p.output()).toContain('one database');
    expect(p.output()).not.toContain('s3cret-pw');
  });
});
