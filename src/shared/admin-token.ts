import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from './config-error.js';
import { ensureDataDir } from './data-dir.js';

/** Shorter tokens can be guessed; a generated one is 43 characters (32 random bytes). */
export const ADMIN_TOKEN_MIN_LENGTH = 32;

export interface AdminToken {
  token: string;
  /** True when this call created it: the caller prints it, once, to a terminal. */
  created: boolean;
  path: string | null;
}

/**
 * The admin token: ONSALE_ADMIN_TOKEN if set, else the one kept in the data folder, else a new one written
 * there (mode 0600). The file is created exclusively, so processes starting together agree on one token.
 * Throws ConfigError when the token is shorter than ADMIN_TOKEN_MIN_LENGTH or the folder cannot be written.
 */
export function resolveAdminToken(dataDir: string, env: NodeJS.ProcessEnv): AdminToken {
  const fromEnv = env.ONSALE_ADMIN_TOKEN?.trim();
  if (fromEnv) return { token: longEnough(fromEnv, 'ONSALE_ADMIN_TOKEN'), created: false, path: null };
  const path = join(dataDir, 'admin-token');
  ensureDataDir(dataDir);
  const token = randomBytes(32).toString('base64url');
  try {
    writeFileSync(path, `${token}\n`, { flag: 'wx', mode: 0o600 });
    return { token, created: true, path };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw cannotWrite(path, error);
    const stored = readFileSync(path, 'utf8').trim();
    if (!stored) throw new ConfigError(`${path} is empty: delete it to have a new admin token made`);
    return { token: longEnough(stored, path), created: false, path };
  }
}

function longEnough(token: string, source: string): string {
  if (token.length < ADMIN_TOKEN_MIN_LENGTH) {
    throw new ConfigError(
      `${source}: the admin token must be at least ${ADMIN_TOKEN_MIN_LENGTH} characters (it has ${token.length}); ` +
        `make one with: openssl rand -base64 32`,
    );
  }
  return token;
}

function cannotWrite(path: string, error: unknown): ConfigError {
  const reason = (error as NodeJS.ErrnoException).code ?? String(error);
  return new ConfigError(
    `cannot write the admin token to ${path} (${reason}): ONSALE_DATA_DIR (--data-dir) must be a writable folder, or set ONSALE_ADMIN_TOKEN`,
  );
}

/**
 * What a banner says about the admin token: the token itself only when it was just made and the output is
 * a terminal (a person reads it once); on a pipe or a log file, where it would be kept, only the file's path.
 */
export function adminTokenLine(admin: AdminToken, toTerminal: boolean): string | null {
  if (!admin.path) return null;
  if (admin.created && toTerminal) return `admin token (shown once; kept in ${admin.path}): ${admin.token}`;
  return `admin token: in ${admin.path}`;
}
