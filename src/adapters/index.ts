import type { Queue } from '../ports/queue.js';
import type { Storage } from '../ports/storage.js';
import { SqliteQueue } from './sqlite/queue.js';
import { SqliteStorage } from './sqlite/storage.js';

/** The database engines and queue engines this build can use, by URL scheme. */
export const STORAGE_SCHEMES = ['sqlite:'] as const;
export const QUEUE_SCHEMES = ['sqlite:'] as const;

export function openStorage(url: string): Storage {
  if (url.startsWith('sqlite:')) return new SqliteStorage(url);
  throw new Error(`unsupported database URL "${url}"`);
}

export function openQueue(url: string): Queue {
  if (url.startsWith('sqlite:')) return new SqliteQueue(url);
  throw new Error(`unsupported queue URL "${url}"`);
}
