import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import { createEvent, purchase, waitFinal } from './helpers/api.js';
import { eventually } from './helpers/http.js';
import { startOnsale, type Onsale } from './helpers/processes.js';

/**
 * A status stream (SSE) closed by its client while the purchase is still queued: the server must let it
 * go — its place under the per-client cap of open streams, its watch of the purchase — or every buyer who
 * closes a tab would hold one for good, and the client would soon be refused (429) though it has none open.
 */

/** Opens the purchase's stream on a connection of its own; resolves once the first event has arrived. */
function openStream(
  url: string,
): Promise<{ status: number; first: string; req: ClientRequest; res: IncomingMessage }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, headers: { accept: 'text/event-stream' } }, (res) => {
      let body = '';
      const onData = (chunk: Buffer) => {
        body += chunk.toString();
        if (res.statusCode !== 200 || body.includes('\n\n')) {
          res.off('data', onData);
          resolve({ status: res.statusCode!, first: body, req, res });
        }
      };
      res.on('data', onData);
      res.once('end', () => resolve({ status: res.statusCode!, first: body, req, res }));
    });
    req.once('error', reject);
    req.end();
  });
}

let onsale: Onsale | undefined;
afterAll(async () => {
  await onsale?.stop();
});

describe('a status stream closed by its client while the purchase is queued', () => {
  it('frees its place: the client may open as many again, over and over; the stream still ends when final', async () => {
    // No worker: the purchase stays queued. Loopback is not exempt (the default): the cap applies.
    onsale = await startOnsale({ workers: 0, env: { ONSALE_MAX_STREAMS_PER_CLIENT: '2' } });
    const { baseUrl } = onsale;
    const event = await createEvent(baseUrl);
    const answer = await purchase(baseUrl, event.id, {
      buyerId: 'tab-closer@example.com',
      items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
    });
    expect(answer.status).toBe(202);
    const url = `${baseUrl}/api/purchases/${answer.body.purchaseId}/events`;

    for (let round = 0; round < 5; round++) {
      // At the cap of 2 (eventually: the server learns of the last round's closes from the sockets).
      const streams = await eventually(async () => {
        const opened = [await openStream(url), await openStream(url)];
        if (opened.every((s) => s.status === 200)) return opened;
        for (const s of opened) s.req.destroy();
        throw new Error(`round ${round}: ${opened.map((s) => s.status).join(', ')}`);
      }, 20_000);
      for (const s of streams) expect(s.first).toContain('"status":"queued"');
      const third = await openStream(url);
      expect(third.status).toBe(429);
      // The buyer closes the tabs: the connections go, the purchase is still queued.
      for (const s of streams) s.req.destroy();
    }

    // Once a worker runs, a stream open at that moment gets the final status and is ended by the server.
    const stream = await eventually(async () => {
      const s = await openStream(url);
      if (s.status !== 200) throw new Error(String(s.status));
      return s;
    }, 20_000);
    const ended = new Promise<string>((resolve) => {
      let rest = '';
      stream.res.on('data', (chunk: Buffer) => (rest += chunk.toString()));
      stream.res.once('end', () => resolve(rest));
    });
    onsale.addWorker();
    expect(await ended).toContain('"status":"confirmed"');
    expect((await waitFinal(baseUrl, answer.body.purchaseId)).status).toBe('confirmed');
  });
});
