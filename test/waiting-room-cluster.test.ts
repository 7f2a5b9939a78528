import { afterEach, expect, it } from 'vitest';
import { startCluster, type Cluster } from './helpers/cluster.js';
import { ADMIN, JSON_TYPE, send } from './helpers/http.js';
import { LOOPBACK_EXEMPT, until } from './helpers/processes.js';
import { freshPostgresDatabase } from './helpers/services.js';

/**
 * The waiting room under `onsale cluster` (3 web servers behind HAProxy, PostgreSQL): one line for all
 * servers, through a web server and the worker SIGKILLed while buyers join.
 */
let cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});

async function cluster(env: Record<string, string>): Promise<Cluster> {
  const db = await freshPostgresDatabase();
  cleanups.push(db.drop);
  const c = await startCluster({ ONSALE_DATABASE_URL: db.url, ...LOOPBACK_EXEMPT, ...env });
  cleanups.push(c.stop);
  return c;
}

/** Joins until an answer comes: a client retries a join cut by a dying server, and gets one place. */
async function joinUntilAnswered(baseUrl: string, eventId: string, buyerId: string): Promise<any> {
  for (let attempt = 0; ; attempt++) {
    try {
      const answer = await send(baseUrl, 'POST', `/api/events/${eventId}/queue`, {
        headers: JSON_TYPE,
        body: JSON.stringify({ buyerId }),
      });
      if (answer.status === 201 || answer.status === 200) return answer.body;
      if (answer.status < 500 || attempt > 50)
        throw new Error(`join ${buyerId}: ${answer.status} ${answer.text}`);
    } catch (error) {
      if (attempt > 50) throw error;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

it('keeps one line for every web server: no place lost or doubled, no one admitted twice, one position everywhere', async () => {
  const c = await cluster({ ONSALE_WEB: '3', ONSALE_WORKERS_MIN: '1' });
  await until(() => c.pidsOf('onsale-worker').length === 1);
  const created = await send(c.baseUrl, 'POST', '/api/events', {
    headers: ADMIN,
    body: JSON.stringify({
      name: 'Room cluster night',
      salesOpenAt: new Date(Date.now() + 6_000).toISOString(),
      ticketTypes: [{ name: 'GA', priceCents: 1000, capacity: 10_000, maxPerBuyer: 1 }],
      waitingRoom: { maxActiveBuyers: 50 },
    }),
  });
  expect(created.status, created.text).toBe(201);
  const eventId = created.body.id as string;
  const buyers = Array.from({ length: 600 }, (_, i) => `buyer-${i}@example.com`);
  const places = new Map<string, any>();
  let next = 0;
  let killed = false;
  await Promise.all(
    Array.from({ length: 12 }, async () => {
      while (next < buyers.length) {
        const buyer = buyers[next++]!;
        places.set(buyer, await joinUntilAnswered(c.baseUrl, eventId, buyer));
        if (places.size === 250 && !killed) {
          killed = true;
          for (const pid of [c.pidsOf('onsale-web')[1]!, c.pidsOf('onsale-worker')[0]!])
            process.kill(pid, 'SIGKILL');
        }
      }
    }),
  );
  expect(killed).toBe(true);
  // Every buyer has one place; joining again (any server) gives it back.
  expect(new Set([...places.values()].map((p) => p.placeId)).size).toBe(600);
  await until(() => c.pidsOf('onsale-web').length === 3 && c.pidsOf('onsale-worker').length === 1, 60_000);
  for (const buyer of buyers.slice(0, 60)) {
    const again = await joinUntilAnswered(c.baseUrl, eventId, buyer);
    expect(again.placeId).toBe(places.get(buyer).placeId);
  }

  // The opening: 50 admitted (nobody buys, so the line then stands still), 550 waiting at 1..550.
  const readAll = async (server: string) =>
    Promise.all(
      buyers.map(
        async (b) => (await send(`http://${server}`, 'GET', `/api/queue/${places.get(b).placeId}`)).body,
      ),
    );
  await until(async () => {
    const seen = await readAll(c.servers[0]!);
    return (
      seen.filter((p) => p.state === 'admitted').length === 50 && seen.every((p) => p.state !== 'prequeue')
    );
  }, 60_000);
  // Past the moment every server shows the last move.
  await new Promise((r) => setTimeout(r, 1_500));
  const views = await Promise.all(c.servers.map(readAll));
  for (const view of views.slice(1)) {
    expect(view.map((p) => [p.state, p.position])).toEqual(views[0]!.map((p) => [p.state, p.position]));
  }
  const view = views[0]!;
  expect(view.filter((p) => p.state === 'admitted')).toHaveLength(50);
  const positions = view.filter((p) => p.state === 'waiting').map((p) => p.position as number);
  expect([...positions].sort((a, b) => a - b)).toEqual(Array.from({ length: 550 }, (_, i) => i + 1));

  // The admitted buy; their slots free and exactly the next 50 come in; every position falls by 50.
  const admitted = buyers.filter((_, i) => view[i]!.state === 'admitted');
  const typeId = created.body.ticketTypes[0].id as string;
  for (const buyer of admitted) {
    const token = view[buyers.indexOf(buyer)]!.admission.token;
    const bought = await send(c.baseUrl, 'POST', `/api/events/${eventId}/purchases`, {
      headers: { ...JSON_TYPE, 'onsale-admission': token },
      body: JSON.stringify({ buyerId: buyer, items: [{ ticketTypeId: typeId, quantity: 1 }] }),
    });
    expect(bought.status, bought.text).toBe(202);
  }
  await until(
    async () => (await readAll(c.servers[2]!)).filter((p) => p.state === 'admitted').length === 100,
    60_000,
  );
  await new Promise((r) => setTimeout(r, 1_500));
  const after = await readAll(c.servers[1]!);
  buyers.forEach((_, i) => {
    const before = view[i]!;
    const now = after[i]!;
    if (before.state === 'admitted') expect(now.state).toBe('admitted');
    else if (before.position <= 50) expect(now.state).toBe('admitted');
    else expect(now).toMatchObject({ state: 'waiting', position: before.position - 50 });
  });
  const line = await send(c.baseUrl, 'GET', `/api/events/${eventId}/queue`, { headers: ADMIN });
  expect(line.body).toMatchObject({ admitted: 100, waiting: 500, expired: 0 });
}, 240_000);
