import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendOpenLoop, type OpenLoopResult } from '../bench/open-loop.js';
import { renderOverloadHtml } from '../bench/overload-html.js';
import {
  contenderFigures,
  heldUp,
  OVERLOAD_CONTENDERS,
  OVERLOAD_PLAN,
  overloadJson,
} from '../bench/overload.js';
import { contenderName } from '../bench/sale.js';
import { freePort } from './helpers/processes.js';

/**
 * A contender that misbehaves in every way the overload part must count, one request in five each: never
 * answers (a timeout), drops the connection (an error), sheds load as the contract allows (503 with
 * Retry-After), sheds it without Retry-After (an error), or accepts (202).
 */
let server: Server;
let origin: string;
beforeAll(async () => {
  let n = 0;
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const kind = n++ % 5;
      if (kind === 0) return; // held open, never answered
      if (kind === 1) return req.socket.destroy();
      if (kind === 2) res.writeHead(503, { 'retry-after': '1' }).end('{}');
      else if (kind === 3) res.writeHead(503).end('{}');
      else res.writeHead(202, { 'content-type': 'application/json' }).end(`{"purchaseId":"p${n}"}`);
    });
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const send = (ratePerSec: number, durationSec: number): Promise<OpenLoopResult> =>
  sendOpenLoop({
    origin,
    path: '/api/events/e/purchases',
    body: (i) => JSON.stringify({ buyerId: `b-${i}` }),
    ratePerSec,
    durationSec,
    // Generous: only the never-answered requests may reach it, even on a busy machine.
    timeoutMs: 4000,
    connections: 64,
  });

describe('the overload part of the bench', () => {
  it('counts a request never answered as a timeout, a dropped one or a 503 without Retry-After as an error', async () => {
    const result = await send(50, 1);
    const f = contenderFigures('dropping server', result, { sold: 10, ticketsPerSec: 10 }, []);
    expect(f.requests).toBe(50);
    expect(f.timeouts).toBe(10);
    expect(f.errors).toBe(20);
    expect(f.shed).toBe(10);
    expect(f.accepted).toBe(10);
    expect(f.answered).toBe(40);
    // A timeout counts at the timeout: a server that drops a fifth of its requests cannot have a fast p99.
    expect(f.ackP99Ms).toBe(4000);
    expect(heldUp(f)).toBe(false);
    expect(result.answers.filter((a) => a.outcome === 'accepted').every((a) => a.body !== undefined)).toBe(
      true,
    );
  }, 20_000);

  it('writes every key of overload.*, with the embedded onsale as overload.onsale, and a chart per contender', async () => {
    const result = await send(20, 1);
    const names = OVERLOAD_CONTENDERS.map(contenderName);
    const contenders = names.map((name, i) =>
      contenderFigures(
        name,
        result,
        { sold: 10 * i, ticketsPerSec: 10 * i },
        i === 1 ? ['no_oversell: x'] : [],
      ),
    );
    const figures = {
      plan: { ...OVERLOAD_PLAN, durationSec: 1 },
      advisoryLockSustainedPerSec: 17,
      ratePerSec: 50,
      contenders,
    };
    const json = JSON.parse(JSON.stringify(overloadJson(figures))) as {
      ratePerSec: number;
      contenders: Array<Record<string, unknown>>;
      onsale: Record<string, unknown>;
    };
    expect(json.ratePerSec).toBe(50);
    expect(json.contenders.map((c) => c.name)).toEqual(names);
    for (const c of [...json.contenders, json.onsale]) {
      for (const key of [
        'name',
        'timeouts',
        'errors',
        'ackP50Ms',
        'ackP99Ms',
        'ticketsPerSec',
        'invariantsOk',
      ])
        expect(c, key).toHaveProperty(key);
      expect(c).not.toHaveProperty('perSecond');
    }
    expect(json.onsale.name).toBe('onsale start (embedded)');
    expect(json.onsale.ticketsPerSec).toBe(20);
    expect(json.contenders[1]!.invariantsOk).toBe(false);
    expect(json.contenders[0]!.timeouts).toBeGreaterThan(0);

    const html = renderOverloadHtml(figures, { startedAt: '2026-12-03T18:00:00Z', loadAverage: '1.00' });
    expect(html.match(/<polyline class="series"/g)).toHaveLength(names.length);
    for (const name of names) expect(html).toContain(name);
    expect(html).toContain("default-src 'none'");
  }, 20_000);
});
