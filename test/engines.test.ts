/**
 * Every package that ships with onsale runs on the Node versions onsale supports: a dependency that
 * declares a newer Node (cookie 2 wants Node 22, pulled in by fastify) is pinned back with an npm
 * `overrides` entry. Reads the installed production tree, as `npm ls` reports it.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..');
// npm's own range checker, present wherever npm installed the tree.
const semver = createRequire(import.meta.url)('semver') as {
  satisfies(version: string, range: string): boolean;
  minVersion(range: string): { version: string } | null;
};

interface Listed {
  path?: string;
  dependencies?: Record<string, Listed>;
}

function packageJson(dir: string): { name: string; version: string; engines?: { node?: string } } {
  return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as never;
}

function installedPaths(tree: Listed, into = new Set<string>()): Set<string> {
  for (const dep of Object.values(tree.dependencies ?? {})) {
    if (dep.path && !into.has(dep.path)) {
      into.add(dep.path);
      installedPaths(dep, into);
    }
  }
  return into;
}

describe('engines', () => {
  it('every production dependency supports the running Node and the oldest Node onsale supports', async () => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('npm_')));
    const listed = await run('npm', ['ls', '--omit=dev', '--all', '--long', '--json'], {
      cwd: ROOT,
      env,
      maxBuffer: 64 * 2 ** 20,
    });
    const paths = installedPaths(JSON.parse(listed.stdout) as Listed);
    expect(paths.size).toBeGreaterThan(10);
    const oldest = semver.minVersion(packageJson(ROOT).engines!.node!)!.version;
    const unsupported: string[] = [];
    for (const path of paths) {
      const pkg = packageJson(path);
      const range = pkg.engines?.node;
      if (range === undefined) continue;
      for (const node of [process.version, oldest]) {
        if (!semver.satisfies(node, range))
          unsupported.push(`${pkg.name}@${pkg.version} wants node ${range}, not ${node}`);
      }
    }
    expect(unsupported).toEqual([]);
  });
});
