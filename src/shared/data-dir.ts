import { mkdirSync } from 'node:fs';
import { ConfigError } from './config-error.js';

/**
 * Creates the data folder (the embedded database, the admin token) readable by its owner only, or throws
 * ConfigError naming it and the setting when it cannot be: a read-only disk, a parent that is a file.
 */
export function ensureDataDir(dir: string, setting = 'ONSALE_DATA_DIR (--data-dir)'): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new ConfigError(
      `cannot create the folder ${dir} (${reason}): ${setting} must name a writable folder`,
    );
  }
}
