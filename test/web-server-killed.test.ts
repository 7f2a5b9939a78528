import { request } from 'node:http';
import { afterAll, expect, it } from 'vitest';
import { createEvent } from './helpers/api.js';
import { sleep } from './helpers/http.js';
import { childrenOf, LOOPBACK_EXEMPT, startOnsale, until, type Onsale } from './helpers/processes.js';

/**
 * Under `onsale start` the web servers share one port. A web server killed while connections arrive must
 * leave none of them unanswered: each is answered by another web server or closed at once, so that a
 * client retries in milliseconds instead of waiting for its own timeout (a browser waits minutes).
 */

/** Far longer than any answer takes here, even on a loaded machine, and far shorter than a hung one. */
const HUNG_AFTER_MS = 30_000;

type Outcome = 'answered' | 'closed' | 'hung';

/** One GET on a connection of its own (as a new buyer arrives). */
function get(url: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = request(url, { agent: false, timeout: HUNG_AFTER_MS }, (res) => {
      res.resume();
      res.once('end', () => resolve('answered'));
      res.once('error', () => resolve('closed'));
    });
    req.once('timeout', () => {
      req.destroy();
      resolve('hung');
    });
    req.once('error', () => resolve('closed'));
    req.end();
  });
}

let onsale: Onsale | undefined;
afterAll(async () => {
  await onsale?.stop();
});

it('leaves no connection hanging when a web server is killed while connections arrive', async () => {
  onsale = await startOnsale({
    mode: 'start',
    env: { ONSALE_WEB: '2', ONSALE_WORKERS_MIN: '1', ONSALE_WORKERS_MAX: '1', ...LOOPBACK_EXEMPT },
  });
  const supervisor = onsale.processes[0]!.child.pid!;
  const event = await createEvent(onsale.baseUrl);
  const url = `${onsale.baseUrl}/api/events/${event.id}`;
  const webServers = () => childrenOf(supervisor).filter((c) => c.title === 'onsale-web');

  const outcomes: Outcome[] = [];
  let sending = true;
  const lanes = Array.from({ length: 24 }, async () => {
    while (sending) outcomes.push(await get(url));
  });

  const kills = 6;
  for (let k = 0; k < kills; k++) {
    // Both web servers up and serving, then the older one dies mid-stream.
    await until(() => webServers().length === 2, 60_000);
    const before = outcomes.filter((o) => o === 'answered').length;
    await until(() => outcomes.filter((o) => o === 'answered').length > before + 50, 60_000);
    process.kill(webServers()[0]!.pid, 'SIGKILL');
    await sleep(200);
  }
  await until(() => webServers().length === 2, 60_000);
  sending = false;
  await Promise.all(lanes);

  const count = (o: Outcome) => outcomes.filter((x) => x === o).length;
  expect(count('answered')).toBeGreaterThan(kills * 50);
  expect(count('hung')).toBe(0);
});
