import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { expect, it } from 'vitest';
import type { SoakReport } from '../bench/soak/soak.js';
import { runScript, tempDir } from './helpers/processes.js';
import { describeEach, exclusion } from './helpers/services.js';

/**
 * A short chaos soak (`npm run soak -- --minutes 1`) on two engine sets: `onsale start` then `onsale
 * cluster`, processes SIGKILLed and paused, the private PostgreSQL and Redis restarted or the embedded
 * disk filled, while the simulator sells. The long ones (10 minutes) are docs/reliability.md's; the
 * third set, postgres+rabbitmq, runs only there: its private broker alone took 20–49 s to start on a loaded
 * machine, and a third soak would add two to three minutes to a file that already takes nearly four.
 */
const SOAK = resolve(import.meta.dirname, '../build/bench/soak/cli.js');

describeEach(
  [
    { name: 'embedded', excluded: '' },
    { name: 'postgres+redis', excluded: exclusion('postgres', 'redis') },
  ],
  'chaos soak, one minute, $name',
  ({ name }) => {
    it('survives every fault injected, keeps every invariant, answers no 500, and exits 0', async () => {
      expect(existsSync(SOAK), `${SOAK} is missing: npm run build:bench`).toBe(true);
      const dir = tempDir('onsale-soak-test-');
      try {
        const reportPath = join(dir.path, 'report.json');
        const soak = runScript(SOAK, ['--minutes', '1', '--engines', name, '--report-json', reportPath]);
        const exit = await soak.exited;
        const report = JSON.parse(readFileSync(reportPath, 'utf8')) as SoakReport;
        expect(report.problems, soak.output()).toEqual([]);
        expect(exit.code, soak.output()).toBe(0);
        expect(report.ok).toBe(true);
        // Faults were injected, under both topologies, and onsale came back after each.
        expect(report.faults.length).toBeGreaterThan(0);
        expect(report.faults.every((f) => f.recoveredSec !== null)).toBe(true);
        expect(report.faults.some((f) => f.kind === 'kill-supervisor')).toBe(true);
        expect(new Set(report.rounds.map((r) => r.topology))).toEqual(new Set(report.topologies));
        // Sales happened and each kept the invariants with every accepted purchase final.
        expect(report.rounds.length).toBeGreaterThan(0);
        for (const round of report.rounds) {
          expect(round.accepted).toBeGreaterThan(0);
          expect(round.invariantsOk, JSON.stringify(round.violations)).toBe(true);
          expect(round.notFinal).toBe(0);
        }
        expect(report.serverErrorsLogged).toBe(0);
        expect(report.memory.length).toBeGreaterThan(0);
        // Reasons are given for what could not be injected here: RabbitMQ is the third engine set's.
        expect(report.skipped['restart-rabbitmq']).toMatch(/postgres\+rabbitmq/);
      } finally {
        dir.remove();
      }
    }, 900_000);
  },
);
