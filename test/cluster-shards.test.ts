import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { SimulationReport } from '../src/simulate/run.js';
import { startCluster, type Cluster } from './helpers/cluster.js';
import {
  startPrivatePostgres,
  startPrivateReplica,
  type PrivatePostgres,
  type PrivateReplica,
} from './helpers/private-postgres.js';
import { ADMIN_TOKEN, LOOPBACK_EXEMPT, runCli, tempDir } from './helpers/processes.js';
import { samples } from './helpers/prometheus.js';
import { exclusion, included } from './helpers/services.js';

/**
 * `onsale cluster` (HAProxy in front of two web servers, workers under the autoscaler) on two shards with a
 * streaming replica, under `onsale simulate` following its purchases by SSE: every invariant holds, and the
 * web servers read from the replica.
 */
describe.skipIf(!included('postgres'))(
  `onsale cluster on shards with a replica${exclusion('postgres')}`,
  () => {
    let primary: PrivatePostgres | undefined;
    let replica: PrivateReplica | undefined;
    let cluster: Cluster | undefined;
    const reports = tempDir('onsale-cluster-shards-');

    afterAll(async () => {
      await cluster?.stop();
      replica?.remove();
      primary?.remove();
      reports.remove();
    });

    it('keeps every invariant under the simulator, reading from the replica', async () => {
      primary = await startPrivatePostgres();
      const shards = [await primary.createDatabase('shard_a'), await primary.createDatabase('shard_b')];
      replica = await startPrivateReplica(primary);
      const replicas = ['shard_a', 'shard_b'].map((db) => replica!.url(db));
      cluster = await startCluster({
        ...LOOPBACK_EXEMPT,
        ONSALE_DATABASE_URL: shards.join(','),
        ONSALE_DATABASE_REPLICA_URL: replicas.join(','),
        ONSALE_WEB: '2',
        ONSALE_WORKERS_MIN: '1',
        ONSALE_WORKERS_MAX: '2',
      });

      const json = join(reports.path, 'report.json');
      const run = runCli(
        [
          'simulate',
          '--url',
          cluster.baseUrl,
          '--buyers',
          '800',
          '--tickets',
          '300',
          '--duration',
          '3',
          '--follow',
          'sse',
          '--report-json',
          json,
          '--report-html',
          join(reports.path, 'report.html'),
        ],
        { ONSALE_ADMIN_TOKEN: ADMIN_TOKEN },
      );
      const { code } = await run.exited;
      expect(code, run.output()).toBe(0);
      const report = JSON.parse(readFileSync(json, 'utf8')) as SimulationReport;
      expect(report.invariants.ok).toBe(true);
      expect(report.totals.notFinal).toBe(0);
      expect(report.totals.ticketsSold).toBe(300);

      // The replica served the web servers' reads (each counts its own).
      let fromReplica = 0;
      for (const server of cluster.servers) {
        const res = await fetch(`http://${server}/metrics`, {
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        });
        fromReplica += samples(await res.text()).get('onsale_storage_reads_total{target="replica"}') ?? 0;
      }
      expect(fromReplica).toBeGreaterThan(0);
    }, 600_000);
  },
);
