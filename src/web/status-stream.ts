import { FINAL_STATUSES, type Purchase, type PurchaseStatus } from '../domain/types.js';
import type { Storage } from '../ports/storage.js';

type Listener = (purchase: Purchase) => void;

/** How often open status streams look for changes: one query for all of them, whatever their number. */
const POLL_MS = 100;

/**
 * Tells server-sent-event streams when their purchase changes. Workers write status to storage from other
 * processes, so this process polls storage for the statuses of every watched purchase in one query, and
 * reads a purchase in full only when its status or update time moved.
 */
export class StatusWatcher {
  readonly #storage: Storage;
  readonly #watched = new Map<string, { seen: string; listeners: Set<Listener> }>();
  #timer: NodeJS.Timeout | null = null;
  #polling = false;

  constructor(storage: Storage) {
    this.#storage = storage;
  }

  /** Calls `listener` at each change after `current`; returns the function that stops watching. */
  watch(current: Purchase, listener: Listener): () => void {
    let entry = this.#watched.get(current.purchaseId);
    if (!entry) {
      entry = { seen: fingerprint(current.status, current.updatedAt), listeners: new Set() };
      this.#watched.set(current.purchaseId, entry);
    }
    entry.listeners.add(listener);
    this.#timer ??= setInterval(() => void this.#poll(), POLL_MS);
    return () => {
      entry.listeners.delete(listener);
      if (entry.listeners.size === 0) this.#watched.delete(current.purchaseId);
      this.#stopIfIdle();
    };
  }

  close(): void {
    this.#watched.clear();
    this.#stopIfIdle();
  }

  #stopIfIdle(): void {
    if (this.#watched.size === 0 && this.#timer) {
      clearInterval(this.#timer);
      this.#timer = null;
    }
  }

  async #poll(): Promise<void> {
    if (this.#polling || this.#watched.size === 0) return;
    this.#polling = true;
    try {
      const statuses = await this.#storage.getStatuses([...this.#watched.keys()]);
      for (const [purchaseId, { status, updatedAt }] of statuses) {
        const entry = this.#watched.get(purchaseId);
        const now = fingerprint(status, updatedAt);
        if (!entry || entry.seen === now) continue;
        // Marked seen only once read: a read that fails (storage restarting) is tried again at the next
        // poll, else the change would never reach its streams.
        const purchase = await this.#storage.getPurchase(purchaseId);
        if (!purchase) continue;
        entry.seen = fingerprint(purchase.status, purchase.updatedAt);
        for (const listener of [...entry.listeners]) listener(purchase);
        if (FINAL_STATUSES.has(purchase.status)) this.#watched.delete(purchaseId);
      }
    } catch {
      // Storage unavailable for a moment: streams stay open and the next poll tries again.
    } finally {
      this.#polling = false;
      this.#stopIfIdle();
    }
  }
}

function fingerprint(status: PurchaseStatus, updatedAt: string): string {
  return `${status}@${updatedAt}`;
}
