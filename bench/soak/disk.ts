import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A small disk of the soak's own for the embedded engine's data folder, so that filling it hurts no one
 * else: an ext4 file system in a file, loop-mounted (what a real disk does on ENOSPC), else a tmpfs of the
 * same size when loop devices are refused (a container without them), else none: the disk fault is then
 * skipped, with the reason.
 */
export interface SmallDisk {
  /** Where the data folder goes. */
  path: string;
  kind: 'loop-ext4' | 'tmpfs' | 'none';
  /** Why the disk fault cannot run here (kind none). */
  unavailable?: string;
  /** Writes a filler file until the disk refuses (ENOSPC); returns the MiB written. */
  fill: () => number;
  /** Removes the filler file. */
  free: () => void;
  remove: () => void;
}

export function makeSmallDisk(sizeMiB: number): SmallDisk {
  const root = mkdtempSync(join(tmpdir(), 'onsale-soak-disk-'));
  const mount = join(root, 'mnt');
  const image = join(root, 'disk.img');
  const filler = join(mount, 'filler');
  execFileSync('mkdir', ['-p', mount]);
  const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { stdio: 'pipe', encoding: 'utf8' });
  let kind: SmallDisk['kind'] = 'none';
  const reasons: string[] = [];
  try {
    run('truncate', ['-s', `${sizeMiB}M`, image]);
    // -m 0: no blocks reserved for root, which onsale runs as here: the disk is full for it too.
    run('mkfs.ext4', ['-q', '-m', '0', image]);
    run('mount', ['-o', 'loop', image, mount]);
    kind = 'loop-ext4';
  } catch (error) {
    reasons.push(`loop mount: ${(error as Error).message.split('\n')[0]}`);
    try {
      run('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m`, 'tmpfs', mount]);
      kind = 'tmpfs';
    } catch (error2) {
      reasons.push(`tmpfs: ${(error2 as Error).message.split('\n')[0]}`);
    }
  }
  const path = join(mount, 'data');
  execFileSync('mkdir', ['-p', path]);
  return {
    path,
    kind,
    ...(kind === 'none' ? { unavailable: `no disk of its own (${reasons.join('; ')})` } : {}),
    fill: () => {
      if (kind === 'none') return 0;
      const chunk = Buffer.alloc(1 << 20, 0x5a);
      const fd = openSync(filler, 'w');
      let mib = 0;
      try {
        for (;;) {
          writeSync(fd, chunk);
          mib++;
        }
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
        // The last partial MiB: fill the blocks that are left, byte runs down to 4 KiB.
        for (let size = 1 << 19; size >= 4096; size >>= 1) {
          try {
            for (;;) writeSync(fd, chunk, 0, size);
          } catch {
            // next smaller
          }
        }
      } finally {
        closeSync(fd);
      }
      return mib;
    },
    free: () => {
      try {
        unlinkSync(filler);
      } catch {
        // not filled
      }
    },
    remove: () => {
      if (kind !== 'none') {
        try {
          run('umount', ['-l', mount]);
        } catch {
          // already gone
        }
      }
      rmSync(root, { recursive: true, force: true });
    },
  };
}
