import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { createEvent, describe, median, warmThenMeasure, type AcceptPlan } from './accept.js';
import { cleanEnv, freePort, spawnNode, tempDir, waitForHttp, type BenchProcess } from './processes.js';
import type { WrkResult } from './wrk.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));

/** Accepted purchases/s through HAProxy with 1, 2 and 3 web servers, and the balancer's own cost. */
interface ClusterFigures {
  /** Median 202/s through the balancer, by number of web servers. */
  throughLb: Record<number, WrkResult>;
  /** With one web server: straight to it (its own port), and through the balancer, in the same cluster. */
  direct: WrkResult;
  hop: WrkResult;
}

export const CLUSTER_WEB = [1, 2, 3] as const;

/**
 * Runs `onsale cluster` (HAProxy, the embedded engine, one worker: the autoscaler held at one so that the
 * worker count does not change between runs) with 1, 2 and 3 web servers and loads it with wrk through the
 * balancer. With one web server it also loads that server straight, alternating the order per round, which
 * gives the cost of the balancer hop on the same processes.
 */
export async function measureCluster(
  plan: AcceptPlan,
  progress: (line: string) => void,
): Promise<ClusterFigures> {
  const through: Record<number, WrkResult[]> = {};
  const direct: WrkResult[] = [];
  const hop: WrkResult[] = [];
  for (let r = 1; r <= plan.rounds; r++) {
    for (const web of CLUSTER_WEB) {
      await withCluster(web, async ({ lbUrl, serverUrl, target }) => {
        const label = `cluster ${r}/${plan.rounds}, ${web} web`;
        const sides = web !== 1 ? ['lb'] : r % 2 === 1 ? ['direct', 'lb'] : ['lb', 'direct'];
        for (const side of sides) {
          const run = await warmThenMeasure(plan, side === 'lb' ? lbUrl : serverUrl, target);
          progress(
            `${label}: ${side === 'lb' ? 'through HAProxy' : 'straight to the server'}: ${describe(run)}`,
          );
          if (side === 'direct') direct.push(run);
          else (through[web] ??= []).push(run);
          if (side === 'lb' && web === 1) hop.push(run);
        }
      });
    }
  }
  const byRate = (x: WrkResult) => x.acceptedPerSec;
  return {
    throughLb: Object.fromEntries(CLUSTER_WEB.map((w) => [w, median(through[w]!, byRate)])),
    direct: median(direct, byRate),
    hop: median(hop, byRate),
  };
}

async function withCluster(
  web: number,
  measure: (c: {
    lbUrl: string;
    serverUrl: string;
    target: { eventId: string; ticketTypeId: string };
  }) => Promise<void>,
): Promise<void> {
  const dir = tempDir();
  const port = await freePort();
  const adminToken = randomBytes(32).toString('base64url');
  const env = cleanEnv({
    ONSALE_DATA_DIR: dir.path,
    PORT: String(port),
    ONSALE_ADMIN_TOKEN: adminToken,
    ONSALE_WEB: String(web),
    ONSALE_WORKERS_MIN: '1',
    ONSALE_WORKERS_MAX: '1',
    LOG_LEVEL: 'warn',
  });
  const cluster: BenchProcess = spawnNode(CLI, ['cluster'], env);
  try {
    const lbUrl = `http://127.0.0.1:${port}`;
    await waitForHttp(`${lbUrl}/readyz`, cluster);
    const started = Date.now();
    let server: string | undefined;
    while (!server && Date.now() - started < 30_000) {
      server = /web-1 (127\.0\.0\.1:\d+)/.exec(cluster.output())?.[1];
      if (!server) await new Promise((r) => setTimeout(r, 100));
    }
    if (!server) throw new Error(`onsale cluster did not print its web servers:\n${cluster.output()}`);
    const admin = { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' };
    const target = await createEvent(lbUrl, admin);
    await measure({ lbUrl, serverUrl: `http://${server}`, target });
  } finally {
    await cluster.stop();
    dir.remove();
  }
}
