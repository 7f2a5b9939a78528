/**
 * Makes the writes of one process resolve in the order Redis executed them.
 *
 * Why: each RedisQueue has its own connection, and when replies to two writes on two connections arrive
 * together, Node may read the later one first. A caller that records "my write completed" as its promise
 * resolves would then see acceptance order differ from the queue's order. SQLite's synchronous writes give
 * this order for free, and the queue contract pins it down ("keeps acceptance order under concurrent
 * writers"). Each write reports a stamp, a counter Redis increments as it runs the writes; a write that
 * replied is released once every write that was still unanswered when its reply came has answered, in
 * stamp order. A write sent after that reply ran later in Redis, so it never holds an earlier one back.
 * With one write in flight (a web server's group commit sends one at a time) nothing ever waits.
 */
export class ExecutionOrder {
  readonly #unanswered = new Set<Slot>();
  #answered: Slot[] = [];

  /** Call as the write is sent; returns the slot to pass to answered() or failed(). */
  sent(): Slot {
    const slot: Slot = { stamp: 0, waitsFor: new Set(), release: () => undefined };
    this.#unanswered.add(slot);
    return slot;
  }

  /** The write replied, having run at `stamp`: resolves when every write Redis ran before it has resolved. */
  answered(slot: Slot, stamp: number): Promise<void> {
    this.#unanswered.delete(slot);
    slot.stamp = stamp;
    slot.waitsFor = new Set(this.#unanswered);
    const released = new Promise<void>((resolve) => (slot.release = resolve));
    this.#answered.push(slot);
    this.#answered.sort((a, b) => a.stamp - b.stamp);
    // Later, not now: the caller must be awaiting `released` before any write is released, or a write
    // released in this same flush would resume before it.
    queueMicrotask(() => this.#flush());
    return released;
  }

  /** The write failed (it may or may not have run): it holds nothing back. */
  failed(slot: Slot): void {
    this.#unanswered.delete(slot);
    queueMicrotask(() => this.#flush());
  }

  #flush(): void {
    while (this.#answered.length > 0) {
      const first = this.#answered[0]!;
      for (const other of first.waitsFor) if (!this.#unanswered.has(other)) first.waitsFor.delete(other);
      if (first.waitsFor.size > 0) return;
      this.#answered.shift();
      first.release();
    }
  }
}

interface Slot {
  stamp: number;
  waitsFor: Set<Slot>;
  release: () => void;
}

const orders = new Map<string, ExecutionOrder>();

/** The one ExecutionOrder of this process for a queue (a Redis URL and key prefix). */
export function executionOrderOf(queue: string): ExecutionOrder {
  let order = orders.get(queue);
  if (!order) {
    order = new ExecutionOrder();
    orders.set(queue, order);
  }
  return order;
}
