import { renameSync, writeFileSync } from 'node:fs';

/**
 * Writes `text` to `path` so that a reader sees the old content or the new, never half of it: a temporary
 * file in the same folder, then a rename over the old one.
 */
export function writeFileAtomically(path: string, text: string): void {
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, text);
  renameSync(temporary, path);
}
