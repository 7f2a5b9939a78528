import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { SHOP_KINDS } from '../bench/shops/shops.js';
import { simulate } from '../src/simulate/run.js';
import { ADMIN_TOKEN, freePort, waitForReady } from './helpers/processes.js';
import { exclusion, freshPostgresDatabase, included } from './helpers/services.js';

const SHOP_SERVER = resolve(import.meta.dirname, '../build/bench/shops/server.js');

/**
 * The bench's baseline shops must be correct for the comparison to mean anything: under a concurrent crowd,
 * each sells exactly its capacity, never a ticket more, each ticket once.
 */
describe.skipIf(!included('postgres'))(`the baseline shops of the bench${exclusion('postgres')}`, () => {
  for (const kind of SHOP_KINDS) {
    it(`${kind} sells exactly its capacity under a concurrent crowd`, async () => {
      const db = await freshPostgresDatabase();
      const port = await freePort();
      const child = spawn(process.execPath, [SHOP_SERVER, kind, String(port), db.url, ADMIN_TOKEN, '2'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      const exited = new Promise((r) => child.once('exit', r));
      try {
        const url = `http://127.0.0.1:${port}`;
        await waitForReady(`${url}/healthz`, undefined, 60_000).catch((error: unknown) => {
          throw new Error(`${String(error)}\n${output}`);
        });
        const report = await simulate({
          url,
          adminToken: ADMIN_TOKEN,
          buyers: 300,
          repeat: 0,
          arrival: 'burst',
          durationSec: 0,
          ticketTypes: 2,
          tickets: 100,
          maxPerBuyer: 4,
          maxQuantity: 2,
          connections: 48,
          followers: 4,
          follow: 'poll',
          settleSec: 10,
          retries: 0,
          seed: 3,
        });
        expect(report.totals.gaveUp, JSON.stringify(report.refusals)).toBe(0);
        // Every answer was final at once: confirmed with its tickets, or refused for stock.
        expect(report.totals.confirmed + report.totals.rejected).toBe(report.totals.requests);
        expect(report.totals.ticketsSold).toBe(100);
        const kinds = report.invariants.violations.map((v) => v.invariant);
        expect(kinds).not.toContain('no_oversell');
        expect(kinds).not.toContain('no_double_effect');
        expect(kinds).not.toContain('nothing_lost');
        // The database agrees: 100 tickets sold, each code once.
        const client = new pg.Client({ connectionString: db.url });
        await client.connect();
        const { rows } = await client.query<{ n: string; codes: string }>(
          'SELECT count(*) AS n, count(DISTINCT code) AS codes FROM tickets WHERE purchase_id IS NOT NULL',
        );
        await client.end();
        expect(rows[0]).toEqual({ n: '100', codes: '100' });
      } finally {
        child.kill('SIGTERM');
        await exited;
        await db.drop();
      }
    }, 300_000);
  }
});
