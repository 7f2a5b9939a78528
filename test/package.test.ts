import { execFile, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, tempDir, waitForReady } from './helpers/processes.js';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..');
const NATIVE_ADDON = 'better-sqlite3/build/Release/better_sqlite3.node';

const dir = tempDir('onsale-package-');
afterAll(() => dir.remove());

/** npm with the user's environment, less what an outer `npm test` set for its own run. */
function npm(args: string[], cwd: string) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('npm_')));
  return run('npm', args, { cwd, env, maxBuffer: 64 * 2 ** 20 });
}

function version(packageDir: string): string {
  return (JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')) as { version: string }).version;
}

describe('the npm package', () => {
  it('holds the built product only, installs, and runs `onsale start` from its bin', async () => {
    // The package is what `npm run build` made (npm test builds first): packed without `prepare`, so that
    // no build rewrites dist/ under the other test files.
    if (!existsSync(join(ROOT, 'dist/cli.js')))
      throw new Error('dist/cli.js is missing: run `npm run build` first');
    const packed = await npm(['pack', '--ignore-scripts', '--json', '--pack-destination', dir.path], ROOT);
    const [pack] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    const files = pack!.files.map((f) => f.path);
    expect(files).toContain('dist/cli.js');
    expect(files).toContain('README.md');
    expect(files).toContain('LICENSE');
    expect(files).toContain('dist/adapters/sqlite/migrations/storage/0001_init.sql');
    expect(files).toContain('dist/web/pages/public/style.css');
    // The alert rules ship beside dist/, where `onsale cluster` finds them (../../deploy from its module)
    // and where an operator points Prometheus at: node_modules/onsale/deploy/prometheus/alerts.yml.
    expect(files).toContain('deploy/prometheus/alerts.yml');
    expect(files).toContain('deploy/prometheus/alerts.test.yml');
    const shipped = [
      'package.json',
      'README.md',
      'LICENSE',
      'deploy/prometheus/alerts.yml',
      'deploy/prometheus/alerts.test.yml',
    ];
    expect(files.filter((f) => !(f.startsWith('dist/') || shipped.includes(f)))).toEqual([]);
    expect(files).toContain('dist/client/index.js');
    // The client's declarations are the only TypeScript shipped.
    expect(files.filter((f) => f.endsWith('.map') || f.endsWith('.ts') || f.includes('bench'))).toEqual([
      'dist/client/index.d.ts',
    ]);

    // Installed from the warm cache. Install scripts are off: better-sqlite3's would compile SQLite from
    // source (minutes on two cores); its addon is the one built for this checkout, the same version.
    const app = join(dir.path, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), '{ "name": "app", "private": true }\n');
    await npm(
      [
        'install',
        join(dir.path, pack!.filename),
        '--prefer-offline',
        '--no-audit',
        '--no-fund',
        '--ignore-scripts',
      ],
      app,
    );
    const installed = join(app, 'node_modules');
    // Where docs/operations.md says they are, and where `onsale cluster` resolves them from dist/.
    expect(readFileSync(join(installed, 'onsale/deploy/prometheus/alerts.yml'), 'utf8')).toContain(
      'alert: OnsaleQueueTooOld',
    );
    expect(version(join(installed, 'better-sqlite3'))).toBe(
      version(join(ROOT, 'node_modules/better-sqlite3')),
    );
    mkdirSync(dirname(join(installed, NATIVE_ADDON)), { recursive: true });
    copyFileSync(join(ROOT, 'node_modules', NATIVE_ADDON), join(installed, NATIVE_ADDON));

    const dataDir = tempDir('onsale-package-data-');
    const port = await freePort();
    const onsale = spawn(join(installed, '.bin/onsale'), ['start'], {
      cwd: app,
      env: {
        PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`,
        HOME: process.env.HOME ?? '/tmp',
        LOG_LEVEL: 'warn',
        ONSALE_DATA_DIR: dataDir.path,
        ONSALE_WEB: '1',
        PORT: String(port),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    onsale.stdout.on('data', (d: Buffer) => (output += d.toString()));
    onsale.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
      onsale.once('exit', (code, signal) => r({ code, signal })),
    );
    try {
      const baseUrl = `http://127.0.0.1:${port}`;
      await waitForReady(`${baseUrl}/readyz`, {
        child: onsale,
        output: () => output,
        exited,
        stop: async () => exited,
      });
      expect((await fetch(`${baseUrl}/healthz`)).status).toBe(200);
      const { events } = (await (await fetch(`${baseUrl}/api/events`)).json()) as {
        events: Array<{ name: string }>;
      };
      expect(events.map((e) => e.name)).toEqual(['DJ Night (demo)']);

      // onsale/client, imported by an integrator's program from the installed package, reads the same.
      const program = [
        "import { OnsaleClient } from 'onsale/client';",
        'const onsale = new OnsaleClient({ baseUrl: process.argv[1] });',
        'const { events } = await onsale.listEvents();',
        'const event = await onsale.getEvent(events[0].id);',
        'console.log(JSON.stringify([event.name, event.ticketTypes.length > 0]));',
      ].join('\n');
      const read = await run(process.execPath, ['--input-type=module', '-e', program, baseUrl], { cwd: app });
      expect(JSON.parse(read.stdout)).toEqual(['DJ Night (demo)', true]);
      // And its types, as TypeScript resolves them through the package's "exports".
      writeFileSync(
        join(app, 'check.mts'),
        [
          "import { OnsaleClient, OnsaleApiError, type Purchase } from 'onsale/client';",
          "const onsale = new OnsaleClient({ baseUrl: 'http://127.0.0.1:3000' });",
          "export const purchase: Promise<Purchase> = onsale.getPurchase('id');",
          'export const code = (e: OnsaleApiError): string => e.code;',
          '// @ts-expect-error: a purchase needs its items',
          "void onsale.purchase('event', { buyerId: 'ada' });",
        ].join('\n'),
      );
      writeFileSync(
        join(app, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            strict: true,
            noEmit: true,
            module: 'nodenext',
            moduleResolution: 'nodenext',
            target: 'es2022',
            lib: ['es2023', 'dom', 'dom.asynciterable'],
            types: [],
          },
          files: ['check.mts'],
        }),
      );
      await run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', app], { cwd: app });
      onsale.kill('SIGTERM');
      expect(await exited, output).toEqual({ code: 0, signal: null });
    } finally {
      onsale.kill('SIGKILL');
      dataDir.remove();
    }
  }, 300_000);
});
