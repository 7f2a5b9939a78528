import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './processes.js';

/**
 * A PostgreSQL server of the test's own (initdb into a temp folder, on a free port), for fault tests that
 * stop and restart the database. The shared server on 5432 is never touched.
 */
export interface PrivatePostgres {
  port: number;
  /** A URL for `database` on this server. */
  url: (database: string) => string;
  createDatabase: (name: string) => Promise<string>;
  /** `pg_ctl stop -m <mode>`: returns once the server is down. */
  stop: (mode?: 'fast' | 'immediate') => void;
  /** `pg_ctl start`: returns once the server accepts connections. */
  start: () => void;
  /** Stops the server (if up) and removes its folder. */
  remove: () => void;
  /** The server's log, for failure messages. */
  log: () => string;
}

/**
 * initdb and postgres refuse to run as root. Tests run as root on the CI machine (and in the development
 * sandbox), so there the server runs as the `postgres` system user (which the PostgreSQL package creates),
 * through runuser, in a folder that user owns. As any other user it runs as that user.
 */
function runner(dir: string): (command: string, args: string[]) => string {
  if (process.getuid?.() !== 0) {
    return (command, args) => execFileSync(pgBinary(command), args, { encoding: 'utf8', stdio: 'pipe' });
  }
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }));
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }));
  chownSync(dir, uid, gid);
  return (command, args) =>
    execFileSync('runuser', ['-u', 'postgres', '--', pgBinary(command), ...args], {
      encoding: 'utf8',
      stdio: 'pipe',
      cwd: dir,
    });
}

/** initdb and pg_ctl: from PATH, else from Debian's versioned folder (which the package does not put on PATH). */
function pgBinary(name: string): string {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, 'bin', name)))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions[0]) return join(root, versions[0], 'bin', name);
  throw new Error(`${name} not found on PATH nor in ${root}/*/bin: install PostgreSQL (see .ci/run)`);
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  return startServer((run, data) =>
    run('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync']),
  );
}

/** A streaming replica of a private server: a second postmaster, as a primary's replica would run. */
export interface PrivateReplica extends PrivatePostgres {
  /** Restarts the replica applying the primary's changes `ms` late (recovery_min_apply_delay; 0: at once). */
  restartWithApplyDelay: (ms: number) => void;
}

/**
 * A streaming replica of `primary`: `pg_basebackup -R` (which writes standby.signal and the connection to
 * the primary) into a temp folder, then a postmaster of its own on a free port. initdb's trust lines
 * (`host replication all 127.0.0.1/32 trust`) and PostgreSQL's defaults (wal_level replica, 10 WAL senders)
 * already allow it.
 */
export async function startPrivateReplica(primary: PrivatePostgres): Promise<PrivateReplica> {
  let extra = '';
  const server = await startServer(
    (run, data) =>
      run('pg_basebackup', [
        '-D',
        data,
        '-h',
        '127.0.0.1',
        '-p',
        String(primary.port),
        '-U',
        'postgres',
        '-R',
        '-X',
        'stream',
        // A spread checkpoint on the primary would make the backup wait minutes for nothing.
        '--checkpoint=fast',
      ]),
    () => extra,
  );
  return {
    ...server,
    restartWithApplyDelay: (ms) => {
      try {
        server.stop('fast');
      } catch {
        // already stopped
      }
      extra = ms > 0 ? ` -c recovery_min_apply_delay=${ms}` : '';
      server.start();
    },
  };
}

async function startServer(
  create: (run: (command: string, args: string[]) => string, data: string) => void,
  extraOptions: () => string = () => '',
): Promise<PrivatePostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'onsale-pg-'));
  const data = join(dir, 'data');
  const logFile = join(dir, 'server.log');
  const run = runner(dir);
  const port = await freePort();
  // fsync on (the default, said out loud): a fault test must not pass thanks to a cheaper durability.
  // The socket goes in the private folder, never in the shared server's /var/run/postgresql.
  const options = `-p ${port} -c listen_addresses=127.0.0.1 -k ${dir} -c fsync=on -c synchronous_commit=on`;
  create(run, data);
  let up = false;
  const self: PrivatePostgres = {
    port,
    url: (database) => `postgres://postgres@127.0.0.1:${port}/${database}`,
    createDatabase: async (name) => {
      const admin = new pg.Client({ connectionString: self.url('postgres') });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE ${name}`);
      } finally {
        await admin.end();
      }
      return self.url(name);
    },
    start: () => {
      run('pg_ctl', ['-D', data, '-l', logFile, '-o', options + extraOptions(), '-w', '-t', '60', 'start']);
      up = true;
    },
    stop: (mode = 'fast') => {
      run('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '60', 'stop']);
      up = false;
    },
    remove: () => {
      if (up) {
        try {
          self.stop('immediate');
        } catch {
          // already gone
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
  };
  try {
    self.start();
  } catch (error) {
    const log = self.log();
    self.remove();
    throw new Error(`private PostgreSQL did not start:\n${log}`, { cause: error });
  }
  return self;
}
