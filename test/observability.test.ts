import { afterAll, describe, expect, it } from 'vitest';
import { createEvent, getJson, purchase, waitFinal } from './helpers/api.js';
import { logRef } from '../src/shared/logger.js';
import { ADMIN_TOKEN, freePort, runCli, startOnsale, until, type Onsale } from './helpers/processes.js';

type LogLine = Record<string, unknown> & { level: number; msg: string };

function lines(output: string): LogLine[] {
  return output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

const BUY = (ticketTypeId: string) => ({
  buyerId: 'ada@example.com',
  items: [{ ticketTypeId, quantity: 1 }],
});

describe('request logs and a standalone worker (onsale serve + onsale worker --metrics-port)', () => {
  let onsale: Onsale | undefined;
  afterAll(async () => onsale?.stop());

  it('logs one JSON line per request with its id, carries the purchaseRef to the worker, logs no secret', async () => {
    onsale = await startOnsale({ workers: 0, env: { LOG_LEVEL: 'debug' } });
    const metricsPort = await freePort();
    const worker = onsale.addWorker({ ONSALE_METRICS_PORT: String(metricsPort) });
    const [web] = onsale.processes;
    const event = await createEvent(onsale.baseUrl);
    const secret = 'Bearer a-client-credential-never-to-be-logged';
    const res = await fetch(`${onsale.baseUrl}/api/events/${event.id}/purchases`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: secret, 'x-request-id': 'lb-42' },
      body: JSON.stringify(BUY(event.ticketTypes[0]!.id)),
    });
    expect(res.status).toBe(202);
    expect(res.headers.get('x-request-id')).toBe('lb-42');
    const { purchaseId } = (await res.json()) as { purchaseId: string };
    expect((await waitFinal(onsale.baseUrl, purchaseId)).status).toBe('confirmed');
    const refused = await purchase(onsale.baseUrl, event.id, { buyerId: 'no-items' });
    expect(refused.status).toBe(400);
    const generatedId = refused.headers.get('x-request-id')!;
    // This process's random prefix and a counter.
    expect(generatedId).toMatch(/^[0-9a-f]{12}-[0-9a-z]+$/);

    // The web server's line for the purchase: its request id, route pattern, status and purchaseRef (a
    // short hash: the purchase id itself is the key to the tickets, never logged).
    const purchaseRef = logRef(purchaseId);
    await until(() => lines(web!.output()).some((l) => l.reqId === generatedId));
    const webLines = lines(web!.output());
    const accepted = webLines.find((l) => l.msg === 'request' && l.purchaseRef === purchaseRef)!;
    expect(accepted).toMatchObject({
      level: 30,
      role: 'web',
      reqId: 'lb-42',
      method: 'POST',
      route: '/api/events/:eventId/purchases',
      status: 202,
    });
    expect(typeof accepted.ms).toBe('number');
    expect(webLines.find((l) => l.reqId === generatedId)).toMatchObject({
      status: 400,
      code: 'invalid_request',
    });
    // One line per request: the purchase's request is logged once.
    expect(webLines.filter((l) => l.reqId === 'lb-42')).toHaveLength(1);

    // The worker's line for the same purchase, at debug.
    await until(() => lines(worker.output()).some((l) => l.purchaseRef === purchaseRef));
    expect(lines(worker.output()).find((l) => l.purchaseRef === purchaseRef)).toMatchObject({
      level: 20,
      role: 'worker',
      msg: 'purchase finalized',
      eventId: event.id,
      outcome: 'confirmed',
    });

    // Nothing secret: not the buyer's credential, not the admin token used to create the event.
    for (const output of [web!.output(), worker.output()]) {
      expect(output).not.toContain(purchaseId);
      expect(output).not.toContain('a-client-credential');
      expect(output).not.toContain(ADMIN_TOKEN);
    }

    // The standalone worker serves its own metrics, counting itself as one live worker.
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(text).toMatch(/^onsale_workers 1$/m);
    expect(text).toMatch(/^onsale_purchases_finalized_total\{outcome="confirmed"\} 1$/m);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/other`)).status).toBe(404);
    // And the web server (not a cluster) serves its own.
    const web200 = await (
      await fetch(`${onsale.baseUrl}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    ).text();
    expect(web200).toMatch(/^onsale_purchases_accepted_total 1$/m);
    expect(web200).toMatch(/^onsale_purchases_refused_total\{reason="invalid"\} 1$/m);
  });
});

describe('metrics off, log level warn', () => {
  let onsale: Onsale | undefined;
  afterAll(async () => onsale?.stop());

  it('serves no /metrics and still sells; logs no request line at warn', async () => {
    onsale = await startOnsale({ env: { ONSALE_METRICS: 'off' } });
    const res = await getJson(`${onsale.baseUrl}/metrics`);
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('not_found');
    expect(res.body.error.message).toContain('ONSALE_METRICS');
    const event = await createEvent(onsale.baseUrl);
    const bought = await purchase(onsale.baseUrl, event.id, BUY(event.ticketTypes[0]!.id));
    expect(bought.status).toBe(202);
    expect((await waitFinal(onsale.baseUrl, bought.body.purchaseId)).status).toBe('confirmed');
    for (const p of onsale.processes) expect(p.output()).not.toContain('"msg":"request"');
  });

  it.each([
    [['serve'], { ONSALE_METRICS: 'maybe' }, 'ONSALE_METRICS'],
    [['worker'], { ONSALE_METRICS_PORT: '70000' }, 'ONSALE_METRICS_PORT'],
    [['worker', '--metrics-port', 'x'], {}, '--metrics-port'],
  ])('refuses a bad metrics setting (%s %o) with exit 2 naming it', async (args, env, name) => {
    const proc = runCli(args, env);
    const { code } = await proc.exited;
    expect(code).toBe(2);
    expect(proc.output()).toContain(name);
  });
});
