import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { restartDelay, Supervisor } from '../src/processes/supervisor.js';
import { tempDir, until } from './helpers/processes.js';

/**
 * The supervisor of `onsale cluster` (and the backoff `onsale start` shares): a child that keeps crashing is
 * started again after 250 ms, doubling up to 30 s, and one that ran long enough starts the count over;
 * stopAll stops the balancer last and SIGKILLs whatever is still running at the deadline. Real child
 * processes; what they did is read from files they write.
 */

function capturedLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

/** A node child running `code`, with F the path of a file it may append to. */
const node = (code: string, file: string) =>
  spawn(process.execPath, ['-e', code], { env: { F: file }, stdio: 'ignore' });

const lines = (file: string) =>
  existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];

const supervisors: Supervisor[] = [];
const dirs: Array<{ remove: () => void }> = [];
afterEach(async () => {
  for (const s of supervisors.splice(0)) await s.stopAll([], 5_000);
  for (const d of dirs.splice(0)) d.remove();
});

describe('crash-loop backoff', () => {
  it('doubles from 250 ms to 30 s while a child keeps crashing, and stays there (no reset by the clock)', () => {
    const crashes = { count: 0 };
    // Each child died at once (ran 50 ms): twelve crashes in a row, however long they take in all.
    const delays = Array.from({ length: 12 }, () => restartDelay(crashes, 50));
    expect(delays).toEqual([250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000, 30000]);
    // One that ran a minute before it died is not crash-looping: the count starts over.
    expect(restartDelay(crashes, 60_000)).toBe(250);
    expect(restartDelay(crashes, 50)).toBe(500);
  });

  it('waits longer before each restart of a crashing child, and starts over after a stable run', async () => {
    const dir = tempDir('onsale-supervisor-');
    dirs.push(dir);
    const starts = join(dir.path, 'starts');
    const { logger, lines: logged } = capturedLogger();
    // A stable run is 3 s here (60 s in production), so that the test need not wait a minute.
    const supervisor = new Supervisor(logger, () => {}, 3_000);
    supervisors.push(supervisor);
    // Start 6 runs for 4 s (a stable run) before crashing; every other start crashes at once.
    supervisor.run('flaky', () =>
      node(
        `const fs = require('fs'); fs.appendFileSync(process.env.F, Date.now() + '\\n');
         const n = fs.readFileSync(process.env.F, 'utf8').split('\\n').filter(Boolean).length;
         if (n === 6) setTimeout(() => process.exit(3), 4000); else process.exit(3);`,
        starts,
      ),
    );
    await until(() => lines(starts).length >= 8, 60_000);
    const restarts = logged.filter((l) => l.msg === 'child died; restarting').map((l) => l.restartInMs);
    expect(restarts.slice(0, 7)).toEqual([250, 500, 1000, 2000, 4000, 250, 500]);
    // Each restart came no sooner than its delay (a lower bound holds on a loaded machine too).
    const at = lines(starts).map(Number);
    for (let i = 0; i < 5; i++) expect(at[i + 1]! - at[i]!).toBeGreaterThanOrEqual(restarts[i] as number);
    expect(logged.filter((l) => l.msg === 'child died; restarting').every((l) => l.child === 'flaky')).toBe(
      true,
    );
  });
});

describe('stopAll', () => {
  it('stops the others first, the balancer last, and resolves true when all stopped in time', async () => {
    const dir = tempDir('onsale-supervisor-');
    dirs.push(dir);
    const events = join(dir.path, 'events');
    const { logger } = capturedLogger();
    const supervisor = new Supervisor(logger);
    supervisors.push(supervisor);
    // A web server that takes a second to drain, and a balancer that notes when it is told to stop.
    const stopsAfter = (name: string, ms: number) =>
      node(
        `const fs = require('fs');
         process.on('SIGTERM', () => { fs.appendFileSync(process.env.F, 'sigterm ${name}\\n');
           setTimeout(() => { fs.appendFileSync(process.env.F, 'exit ${name}\\n'); process.exit(0); }, ${ms}); });
         fs.appendFileSync(process.env.F, 'started ${name}\\n');
         setInterval(() => {}, 1000);`,
        events,
      );
    supervisor.run('web-1', () => stopsAfter('web-1', 1000));
    supervisor.run('lb', () => stopsAfter('lb', 0));
    await until(() => lines(events).length === 2, 20_000);
    expect(await supervisor.stopAll(['lb'], 20_000)).toBe(true);
    const seen = lines(events);
    expect(seen.indexOf('sigterm lb')).toBeGreaterThan(seen.indexOf('exit web-1'));
    expect(seen).toContain('exit lb');
    expect(supervisor.alive('')).toBe(0);
  });

  it('SIGKILLs a child still running at the deadline, passes SIGTERM to the balancer, and resolves false', async () => {
    const dir = tempDir('onsale-supervisor-');
    dirs.push(dir);
    const events = join(dir.path, 'events');
    const { logger } = capturedLogger();
    const supervisor = new Supervisor(logger);
    supervisors.push(supervisor);
    const stubborn = node(
      `process.on('SIGTERM', () => require('fs').appendFileSync(process.env.F, 'ignored sigterm\\n'));
       require('fs').appendFileSync(process.env.F, 'started stubborn\\n');
       setInterval(() => {}, 1000);`,
      events,
    );
    const stubbornExit = new Promise<NodeJS.Signals | null>((r) => stubborn.once('exit', (_c, s) => r(s)));
    supervisor.run('worker-1', () => stubborn);
    supervisor.run('lb', () =>
      node(
        `process.on('SIGTERM', () => { require('fs').appendFileSync(process.env.F, 'sigterm lb\\n'); process.exit(0); });
         require('fs').appendFileSync(process.env.F, 'started lb\\n');
         setInterval(() => {}, 1000);`,
        events,
      ),
    );
    await until(() => lines(events).length === 2, 20_000);
    expect(await supervisor.stopAll(['lb'], 2_000)).toBe(false);
    expect(await stubbornExit).toBe('SIGKILL');
    expect(lines(events)).toContain('ignored sigterm');
    await until(() => lines(events).includes('sigterm lb'), 10_000);
    await until(() => supervisor.alive('') === 0, 10_000);
  });
});
