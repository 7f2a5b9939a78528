import { join } from 'node:path';
import { SqliteQueue } from '../../src/adapters/sqlite/queue.js';
import { SqliteStorage } from '../../src/adapters/sqlite/storage.js';
import type { Queue } from '../../src/ports/queue.js';
import type { Storage } from '../../src/ports/storage.js';
import { tempDir } from './processes.js';

/**
 * Every adapter of each port, opened on a real, fresh database. The contract suites run once per entry.
 * `reopen` opens a second connection to the same database (another process would see the same).
 */
export interface AdapterFactory<T> {
  name: string;
  open: () => Promise<{ adapter: T; reopen: () => T; cleanup: () => Promise<void> }>;
}

function sqlite<T extends { close(): Promise<void> }>(make: (url: string) => T): AdapterFactory<T>['open'] {
  return async () => {
    const dir = tempDir('onsale-contract-');
    const url = `sqlite:${join(dir.path, 'onsale.db')}`;
    const opened: T[] = [];
    const open = () => {
      const a = make(url);
      opened.push(a);
      return a;
    };
    return {
      adapter: open(),
      reopen: open,
      cleanup: async () => {
        for (const a of opened) await a.close().catch(() => undefined);
        dir.remove();
      },
    };
  };
}

export const storageAdapters: Array<AdapterFactory<Storage>> = [
  { name: 'sqlite', open: sqlite((url) => new SqliteStorage(url)) },
];

export const queueAdapters: Array<AdapterFactory<Queue>> = [
  { name: 'sqlite', open: sqlite((url) => new SqliteQueue(url)) },
];
