import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { createEvent, purchase, waitFinal } from './helpers/api.js';
import { startCluster, type Cluster } from './helpers/cluster.js';
import { alive, childrenOf, LOOPBACK_EXEMPT, until } from './helpers/processes.js';

/**
 * The load balancer dying under `onsale cluster`. What should happen, and is tested here: the supervisor
 * starts the balancer again (through its wrapper, onsale-lb, with the crash backoff), buyers are served
 * again once it listens, and no balancer is ever left behind, not even one whose wrapper was SIGKILLed
 * (it would keep serving the port with an old configuration, and outlive the cluster).
 */

let cluster: Cluster | null = null;
afterEach(async () => {
  await cluster?.stop();
  cluster = null;
});

/** Balancer processes (any parent) whose command line names this cluster's data folder. */
function balancersOf(dataDir: string): number[] {
  const out = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  return out
    .split('\n')
    .filter((line) => line.includes('haproxy') && line.includes(dataDir))
    .map((line) => Number(line.trim().split(/\s+/)[0]));
}

async function buysOne(c: Cluster, event: Awaited<ReturnType<typeof createEvent>>, buyer: string) {
  // Until the balancer listens again, a purchase may find the port closed: retry as a client would.
  let answer: Awaited<ReturnType<typeof purchase>> | null = null;
  await until(async () => {
    try {
      answer = await purchase(c.baseUrl, event.id, {
        buyerId: buyer,
        items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
      });
      return answer.status === 202;
    } catch {
      return false;
    }
  }, 60_000);
  const final = await waitFinal(c.baseUrl, answer!.body.purchaseId, 60_000);
  expect(final.status).toBe('confirmed');
}

describe('the load balancer dying under onsale cluster', () => {
  it('is started again, whether its wrapper or HAProxy itself is SIGKILLed, and never left behind', async () => {
    cluster = await startCluster({
      ONSALE_WEB: '1',
      ONSALE_WORKERS_MIN: '1',
      ONSALE_WORKERS_MAX: '1',
      ONSALE_LB: 'haproxy',
      ...LOOPBACK_EXEMPT,
    });
    const c = cluster;
    const event = await createEvent(c.baseUrl);
    await buysOne(c, event, 'before@example.com');

    // 1. The wrapper SIGKILLed: HAProxy, its child, must go too, and a new pair take the port.
    const [wrapper] = c.pidsOf('onsale-lb');
    expect(wrapper).toBeDefined();
    const [haproxy] = childrenOf(wrapper!).map((p) => p.pid);
    expect(haproxy).toBeDefined();
    process.kill(wrapper!, 'SIGKILL');
    await until(() => c.pidsOf('onsale-lb').some((p) => p !== wrapper), 60_000);
    await until(() => !alive(haproxy!), 30_000);
    await until(() => balancersOf(c.dataDir).length === 1, 30_000);
    await buysOne(c, event, 'after-wrapper@example.com');

    // 2. HAProxy itself SIGKILLed: the wrapper exits with it, and the supervisor starts both again.
    const [wrapper2] = c.pidsOf('onsale-lb');
    const [haproxy2] = balancersOf(c.dataDir);
    process.kill(haproxy2!, 'SIGKILL');
    await until(() => !alive(wrapper2!), 30_000);
    await until(() => balancersOf(c.dataDir).some((p) => p !== haproxy2), 60_000);
    await buysOne(c, event, 'after-haproxy@example.com');
    expect(c.process.output()).toMatch(/"child":"lb".*child died; restarting/);

    // 3. Stopped: nothing of it left running.
    const exit = await c.stop();
    cluster = null;
    expect(exit.code).toBe(0);
    expect(balancersOf(c.dataDir)).toEqual([]);
  });
});
