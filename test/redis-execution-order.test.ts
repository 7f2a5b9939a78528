import { describe, expect, it } from 'vitest';
import { ExecutionOrder } from '../src/adapters/redis/execution-order.js';

/** Resolves the writes of one process in the order Redis ran them, whatever order their replies came in. */
describe('ExecutionOrder', () => {
  it('releases a reply that came early only after the writes Redis ran before it', async () => {
    const order = new ExecutionOrder();
    const [a, b, c] = [order.sent(), order.sent(), order.sent()];
    const done: string[] = [];
    // Redis ran b (stamp 2) before a (stamp 3); their replies come a first, then c, then b.
    const pa = order.answered(a, 3).then(() => done.push('a'));
    const pc = order.answered(c, 5).then(() => done.push('c'));
    await new Promise((r) => setTimeout(r, 10));
    expect(done).toEqual([]);
    const pb = order.answered(b, 2).then(() => done.push('b'));
    await Promise.all([pa, pb, pc]);
    expect(done).toEqual(['b', 'a', 'c']);
  });

  it('never holds a write back for one sent after its reply came, nor for one that failed', async () => {
    const order = new ExecutionOrder();
    const first = order.sent();
    const failing = order.sent();
    const released = order.answered(first, 1);
    const later = order.sent(); // sent after first's reply: Redis runs it after first
    order.failed(failing);
    await released;
    const done: string[] = [];
    await order.answered(later, 2).then(() => done.push('later'));
    expect(done).toEqual(['later']);
  });
});
