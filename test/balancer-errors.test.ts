import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BALANCER_ERRORS, renderHaproxy, renderNginx } from '../src/processes/lb/balancer.js';
import { freePort, tempDir, until } from './helpers/processes.js';

/**
 * The balancer's own errors (no web server up) are answered in onsale's JSON error shape with Retry-After,
 * like the web servers' own 503s, not as the balancer's HTML page: a client backs off the same way.
 */
describe.each(['haproxy', 'nginx'] as const)('%s with no web server up', (lb) => {
  const dir = tempDir(`onsale-${lb}-errors-`);
  let balancer: ChildProcess | undefined;
  let base = '';

  afterAll(() => {
    balancer?.kill('SIGKILL');
    dir.remove();
  });

  it('answers in the JSON error shape with Retry-After, for reads and for purchases with or without a key', async () => {
    const port = await freePort();
    const deadPort = await freePort(); // nothing listens there
    const plan = {
      listenHost: '127.0.0.1',
      listenPort: port,
      servers: [{ name: 'web-1', host: '127.0.0.1', port: deadPort }],
      runDir: dir.path,
    };
    const configPath = join(dir.path, `${lb}.conf`);
    writeFileSync(configPath, lb === 'haproxy' ? renderHaproxy(plan) : renderNginx(plan));
    balancer =
      lb === 'haproxy'
        ? spawn('haproxy', ['-db', '-f', configPath], { stdio: 'ignore' })
        : spawn('nginx', ['-p', `${dir.path}/`, '-e', 'stderr', '-c', configPath, '-g', 'daemon off;'], {
            stdio: 'ignore',
          });
    base = `http://127.0.0.1:${port}`;
    await until(async () => (await fetch(`${base}/healthz`).catch(() => null)) !== null, 30_000);

    const requests: Array<[string, RequestInit]> = [
      ['/api/events/e1', {}],
      [
        '/api/events/e1/purchases',
        { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } },
      ],
      [
        '/api/events/e1/purchases',
        {
          method: 'POST',
          body: '{}',
          headers: { 'content-type': 'application/json', 'idempotency-key': 'k-1' },
        },
      ],
    ];
    for (const [path, init] of requests) {
      const res = await fetch(`${base}${path}`, init);
      // HAProxy says 503 (no server), nginx 502 (none answered): each keeps its status.
      expect(res.status).toBe(lb === 'haproxy' ? 503 : 502);
      expect(res.headers.get('retry-after')).toBe('1');
      expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
      expect(await res.json()).toEqual({
        error: { code: 'unavailable', message: BALANCER_ERRORS[res.status as 502 | 503] },
      });
    }
  });
});
