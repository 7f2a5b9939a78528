import { describe, expect, it } from 'vitest';
import { groupBy } from '../src/shared/group-by.js';

describe('groupBy', () => {
  it('keeps the groups in the order of their first item and each group in the items order', () => {
    const grouped = groupBy(['b1', 'a1', 'b2', 'c1', 'a2', 'b3'], (s) => s[0]!);
    expect([...grouped]).toEqual([
      ['b', ['b1', 'b2', 'b3']],
      ['a', ['a1', 'a2']],
      ['c', ['c1']],
    ]);
  });

  it('takes keys of any type as a Map compares them, and any iterable', () => {
    const events = ['e2', 'e1', 'e2', 'e2', 'e1'];
    // Positions grouped by a numeric key, as the sharded queue groups a batch by shard.
    const byShard = groupBy(events.keys(), (i) => (events[i] === 'e1' ? 1 : 2));
    expect(byShard.get(2)).toEqual([0, 2, 3]);
    expect(byShard.get(1)).toEqual([1, 4]);
    expect(groupBy([1, '1'], (x) => x).size).toBe(2);
    expect(groupBy([], (x: string) => x).size).toBe(0);
  });
});
