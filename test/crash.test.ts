import { afterAll, describe, expect, it } from 'vitest';
import { observe, sendCrowd } from '../src/simulate/crowd.js';
import { checkInvariants, type SentPurchase } from '../src/simulate/invariants.js';
import { createEvent, waitDrained } from './helpers/api.js';
import { makeCrowd } from './helpers/crowd.js';
import {
  ADMIN_TOKEN,
  runCli,
  startOnsale,
  waitForReady,
  type Onsale,
  type RunningProcess,
  alive,
  childrenOf,
  until,
  LOOPBACK_EXEMPT,
} from './helpers/processes.js';

/**
 * "Kill any process at any time: no accepted purchase vanishes, none is applied twice, no ticket is
 * oversold." SIGKILL hits a worker and a web server during a flood (the supervisor restarts them), then
 * every process of the machine at once; onsale is started again on the same data folder.
 */
describe('crashes during a flood', () => {
  let onsale: Onsale | undefined;
  let restarted: RunningProcess | undefined;

  afterAll(async () => {
    await restarted?.stop();
    await onsale?.stop();
  });

  it('loses nothing that was answered 202 and doubles nothing', async () => {
    onsale = await startOnsale({
      mode: 'start',
      env: { ONSALE_WEB: '2', ONSALE_WORKERS_MIN: '2', ONSALE_WORKERS_MAX: '2', ...LOOPBACK_EXEMPT },
    });
    const { baseUrl } = onsale;
    const supervisor = onsale.processes[0]!.child.pid!;
    const event = await createEvent(baseUrl, {
      ticketTypes: [
        { name: 'GA', priceCents: 5000, capacity: 1500, maxPerBuyer: 4 },
        { name: 'VIP', priceCents: 9000, capacity: 300, maxPerBuyer: 2 },
      ],
    });
    const crowd = makeCrowd({ count: 9000, buyers: 4000, types: event.ticketTypes, seed: 7 });
    const sent: SentPurchase[] = [];

    // Phase 1: a worker and a web server die mid-flood; the supervisor brings them back.
    let killed: Array<{ pid: number; title: string }> = [];
    await sendCrowd({
      baseUrl,
      eventId: event.id,
      intents: crowd.slice(0, 4000),
      concurrency: 48,
      onAnswer: (record) => {
        sent.push(record);
        if (sent.length === 1500) {
          const children = childrenOf(supervisor);
          killed = [
            children.find((c) => c.title === 'onsale-worker')!,
            children.find((c) => c.title === 'onsale-web')!,
          ];
          for (const c of killed) process.kill(c.pid, 'SIGKILL');
        }
      },
    });
    expect(killed).toHaveLength(2);
    expect(killed.every((c) => c && !alive(c.pid))).toBe(true);
    await until(() => {
      const titles = childrenOf(supervisor).map((c) => c.title);
      return (
        titles.filter((t) => t === 'onsale-worker').length === 2 &&
        titles.filter((t) => t === 'onsale-web').length === 2
      );
    });

    // Phase 2: everything dies at once, mid-flood, with purchases queued and batches in flight.
    const everyone = [supervisor, ...childrenOf(supervisor).map((c) => c.pid)];
    await sendCrowd({
      baseUrl,
      eventId: event.id,
      intents: crowd.slice(4000, 7000),
      concurrency: 48,
      onAnswer: (record) => {
        sent.push(record);
        if (sent.length === 5500) for (const pid of everyone) process.kill(pid, 'SIGKILL');
      },
    });
    expect(everyone.length).toBeGreaterThan(1);
    await until(() => everyone.every((pid) => !alive(pid)));
    const refusedWhileDown = sent.slice(5500).filter((r) => r.status === 0).length;
    expect(refusedWhileDown).toBeGreaterThan(0);

    // Phase 3: onsale starts again on the same data folder and takes the rest of the crowd.
    restarted = runCli(['start'], {
      ...onsale.env,
      ONSALE_WEB: '2',
      ONSALE_WORKERS_MIN: '2',
      ONSALE_WORKERS_MAX: '2',
    });
    await waitForReady(`${baseUrl}/readyz`, restarted);
    sent.push(
      ...(await sendCrowd({ baseUrl, eventId: event.id, intents: crowd.slice(7000), concurrency: 48 })),
    );

    await waitDrained(baseUrl, event.id);
    const seen = await observe({ baseUrl, eventId: event.id, adminToken: ADMIN_TOKEN, sent });
    expect(sent.filter((r) => r.status === 202).length).toBeGreaterThan(7000);
    expect(checkInvariants({ sent, purchases: seen.purchases, stock: seen.stock })).toEqual([]);
    for (const t of seen.stock) expect(t.sold).toBe(t.capacity);
  });
});
