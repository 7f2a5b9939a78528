/**
 * The documentation stays true to the code: every setting read in src/ is in docs/operations.md (and nothing
 * there that src/ does not read), every command and flag of the CLI is there, every route of the OpenAPI
 * document and every error code is in docs/api.md, every relative link of README.md and docs/*.md resolves
 * inside the repository, and the README keeps the two commands CI runs.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { SETTINGS } from '../src/config.js';
import { ERROR_CODES } from '../src/web/errors.js';
import { OPENAPI_PATH } from '../src/web/openapi.js';
import { withInProcessApp } from './helpers/in-process-app.js';
import { runCli } from './helpers/processes.js';

const ROOT = resolve(import.meta.dirname, '..');
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');
const operations = read('docs/operations.md');
const api = read('docs/api.md');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sourceFiles(path) : path.endsWith('.ts') ? [path] : [];
  });
}

describe('docs/operations.md', () => {
  it('names every ONSALE_* variable that src/ reads, and none that it does not', () => {
    const inSource = new Set(
      sourceFiles(join(ROOT, 'src')).flatMap(
        (f) => readFileSync(f, 'utf8').match(/\bONSALE_[A-Z0-9_]+\b/g) ?? [],
      ),
    );
    const inDoc = new Set(operations.match(/\bONSALE_[A-Z0-9_]+\b/g) ?? []);
    expect(
      [...inSource].filter((v) => !inDoc.has(v)).sort(),
      'settings read in src/ but missing from docs/operations.md (add them to its Settings table, and their meaning to docs/configuration.md)',
    ).toEqual([]);
    expect(
      [...inDoc].filter((v) => !inSource.has(v)).sort(),
      'settings in docs/operations.md that src/ does not read',
    ).toEqual([]);
  });

  it('names every setting of src/config.ts with its flag, in operations.md and configuration.md', () => {
    const configuration = read('docs/configuration.md');
    const missing = SETTINGS.flatMap((s) => {
      const flag = `--${s.key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
      return [
        ...(operations.includes(`\`${s.env}\``) ? [] : [`operations.md: ${s.env}`]),
        ...(operations.includes(`\`${flag}\``) ? [] : [`operations.md: ${flag}`]),
        ...(configuration.includes(`\`${s.env}\``) ? [] : [`configuration.md: ${s.env}`]),
      ];
    });
    expect(missing, 'settings of src/config.ts missing from the docs').toEqual([]);
  });

  it('names every command and every flag of the CLI', async () => {
    const help = async (args: string[]) => {
      const proc = runCli([...args, '--help']);
      await proc.exited;
      return proc.output();
    };
    const commandsOf = (text: string) =>
      [...(text.split(/^Commands:$/m)[1] ?? '').matchAll(/^ {2}([a-z][a-z-]*)/gm)]
        .map((m) => m[1]!)
        .filter((c) => c !== 'help');
    const flagsOf = (text: string) =>
      [...(text.split(/^Options:$/m)[1] ?? '').split(/^Commands:$/m)[0]!.matchAll(/--[a-z][a-z-]*/g)]
        .map((m) => m[0])
        .filter((f) => f !== '--help');
    const missing: string[] = [];
    const visit = async (path: string[]) => {
      const text = await help(path);
      const sub = commandsOf(text);
      if (path.length > 0 && !operations.includes(`onsale ${path.join(' ')}`))
        missing.push(`command onsale ${path.join(' ')}`);
      for (const flag of flagsOf(text)) {
        if (!operations.includes(`\`${flag}`)) missing.push(`flag ${flag} of onsale ${path.join(' ')}`);
      }
      for (const command of sub) await visit([...path, command]);
    };
    await visit([]);
    expect(missing, 'commands and flags missing from docs/operations.md').toEqual([]);
  }, 120_000);
});

describe('docs/api.md', () => {
  let paths: Record<string, Record<string, unknown>>;

  beforeAll(async () => {
    paths = await withInProcessApp(async (app) => (await app.inject({ url: OPENAPI_PATH })).json().paths);
  });

  it('describes every route of the OpenAPI document', () => {
    const missing = Object.entries(paths).flatMap(([path, item]) =>
      Object.keys(item)
        .map((method) => `${method.toUpperCase()} ${path.replace(/\{([^}]+)\}/g, ':$1')}`)
        .filter((route) => !api.includes(route)),
    );
    expect(missing, 'routes missing from docs/api.md (write them as `METHOD /path/:param`)').toEqual([]);
  });

  it('names every error code of src/web/errors.ts with its status', () => {
    const missing = Object.entries(ERROR_CODES)
      .filter(([code, { status }]) => !new RegExp(`^\\| ${status} .*\`${code}\``, 'm').test(api))
      .map(([code, { status }]) => `${status} ${code}`);
    expect(
      missing,
      "error codes missing from the Errors table of docs/api.md (a row '| status | … | `code` |')",
    ).toEqual([]);
  });
});

describe('README.md and docs/', () => {
  const files = [
    'README.md',
    ...readdirSync(join(ROOT, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `docs/${f}`),
  ];

  it('link only to files that exist in the repository', () => {
    const broken: string[] = [];
    for (const file of files) {
      const text = read(file);
      const targets = [
        ...[...text.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!),
        ...[...text.matchAll(/\bsrc="([^"]+)"/g)].map((m) => m[1]!),
      ];
      for (const target of targets) {
        if (/^[a-z]+:/i.test(target) || target.startsWith('#')) continue;
        const path = resolve(dirname(join(ROOT, file)), target.split('#')[0]!);
        const inside = !relative(ROOT, path).startsWith('..');
        if (!inside || !existsSync(path)) broken.push(`${file}: ${target}`);
      }
    }
    expect(broken, 'relative links that do not resolve to a file of the repository').toEqual([]);
  });

  it('keep the two commands of the README that a newcomer and CI run', () => {
    const readme = read('README.md');
    expect(readme).toContain('```sh\nnpm install && npm start\n```');
    expect(readme).toContain('```sh\nnpm test\n```');
    expect(readme.split('\n').length, 'the README is a front page: details go to docs/').toBeLessThan(150);
  });
});
