import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface AdminToken {
  token: string;
  /** True when this call created it: the caller prints it, once. */
  created: boolean;
  path: string | null;
}

/**
 * The admin token: ONSALE_ADMIN_TOKEN if set, else the one kept in the data folder, else a new one written
 * there (mode 0600). The file is created exclusively, so processes starting together agree on one token.
 */
export function resolveAdminToken(dataDir: string, env: NodeJS.ProcessEnv): AdminToken {
  const fromEnv = env.ONSALE_ADMIN_TOKEN?.trim();
  if (fromEnv) return { token: fromEnv, created: false, path: null };
  const path = join(dataDir, 'admin-token');
  mkdirSync(dataDir, { recursive: true });
  const token = randomBytes(24).toString('base64url');
  try {
    writeFileSync(path, `${token}\n`, { flag: 'wx', mode: 0o600 });
    return { token, created: true, path };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const stored = readFileSync(path, 'utf8').trim();
    if (!stored)
      throw new Error(`${path} is empty: delete it to have a new admin token made`, { cause: error });
    return { token: stored, created: false, path };
  }
}
