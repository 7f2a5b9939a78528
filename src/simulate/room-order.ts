/**
 * The order a waiting room must admit in, checked from outside: the pre-queue (in its shuffled order, which
 * no client can see) before anyone who joined after the opening, and those in arrival order. A buyer who was
 * admitted shows when: its admission's expiresAt less the room's sessionSeconds, the server's own clock, the
 * same for everyone admitted by one step of the line (so ties are allowed).
 */

/** One place as the simulator saw it. Times are milliseconds on the simulator's clock, except admittedAt. */
export interface PlaceRecord {
  buyerId: string;
  joinSentAt: number;
  joinAnsweredAt: number;
  /**
   * The place joined the lottery (the join's answer said `prequeue`), or not (the join was first sent after
   * the opening); null when the simulator cannot tell: a join sent before the opening but answered after
   * it, which an earlier attempt (its answer lost, then retried) may have made in the pre-queue.
   */
  prequeue: boolean | null;
  /**
   * What became of the place as its buyer last read it: admitted, sold_out, expired; `abandoned` when the
   * buyer stopped reading (its turn may still have come, unseen); `unfinished` when the run ended first.
   */
  outcome: 'admitted' | 'sold_out' | 'expired' | 'abandoned' | 'unfinished' | 'gave_up';
  /** Server time of the admission (ms), when admitted. */
  admittedAt: number | null;
}

export interface OrderViolation {
  check: 'admission_order' | 'position_never_grows';
  detail: string;
}

/**
 * How late a place was decided, for the order: its admission time, never (Infinity) when it was told
 * sold_out, which a place ahead of an admitted one cannot be; null when the simulator cannot tell (it left,
 * expired, or the run ended first).
 */
function decidedAt(r: PlaceRecord): number | null {
  if (r.outcome === 'admitted') return r.admittedAt;
  if (r.outcome === 'sold_out') return Infinity;
  return null;
}

/**
 * The violations of the admission order among `records`: an admitted place with a place ahead of it (a
 * pre-queue place, or a place whose join was answered before this one's was sent) that was admitted later or
 * told sold_out. At most `limit` are described. O(n log n).
 */
export function checkAdmissionOrder(records: readonly PlaceRecord[], limit = 10): OrderViolation[] {
  const violations: OrderViolation[] = [];
  const admitted = records.filter((r) => r.outcome === 'admitted' && r.admittedAt !== null);
  const describe = (ahead: PlaceRecord, behind: PlaceRecord, why: string) => {
    if (violations.length < limit) {
      const when =
        ahead.outcome === 'sold_out'
          ? 'was told sold_out'
          : `was admitted ${(ahead.admittedAt! - behind.admittedAt!).toFixed(0)} ms later`;
      violations.push({
        check: 'admission_order',
        detail: `${ahead.buyerId} ${why} ${behind.buyerId}, yet ${when}`,
      });
    }
  };

  // The pre-queue comes before everyone who joined after the opening.
  const lastOfLottery = latest(records.filter((r) => r.prequeue === true));
  for (const behind of admitted) {
    if (behind.prequeue !== false || !lastOfLottery) continue;
    if (decidedAt(lastOfLottery)! > behind.admittedAt!)
      describe(lastOfLottery, behind, 'won a place in the opening lottery, ahead of');
  }

  // After the opening: a join answered before another was sent is ahead of it.
  const inLine = records
    .filter((r) => r.prequeue === false)
    .sort((a, b) => a.joinAnsweredAt - b.joinAnsweredAt);
  // worst[i]: of inLine[0..i], the place decided latest (null: none decided).
  const worst: Array<PlaceRecord | null> = [];
  for (const r of inLine) {
    const before = worst[worst.length - 1] ?? null;
    const at = decidedAt(r);
    worst.push(at !== null && (before === null || at > decidedAt(before)!) ? r : before);
  }
  for (const behind of admitted) {
    if (behind.prequeue !== false) continue;
    // The places whose join was answered before this one's was sent: a prefix of inLine.
    let lo = 0;
    let hi = inLine.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (inLine[mid]!.joinAnsweredAt < behind.joinSentAt) lo = mid + 1;
      else hi = mid;
    }
    const ahead = lo > 0 ? worst[lo - 1] : null;
    if (ahead && decidedAt(ahead)! > behind.admittedAt!)
      describe(ahead, behind, 'joined (its join answered before the other was sent) ahead of');
  }
  return violations;
}

function latest(records: readonly PlaceRecord[]): PlaceRecord | null {
  let found: PlaceRecord | null = null;
  for (const r of records) {
    const at = decidedAt(r);
    if (at !== null && (found === null || at > decidedAt(found)!)) found = r;
  }
  return found;
}
