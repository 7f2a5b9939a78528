import { PostgresDatabase } from '../postgres/database.js';

/** The primary's WAL position now (every commit acknowledged so far is at or before it). Returns lsn. */
const PRIMARY_POSITION = 'SELECT pg_current_wal_lsn()::text AS lsn';
/** How far a streaming replica has replayed the primary's WAL (null on a server that is not a replica). */
const REPLAYED_POSITION = 'SELECT pg_last_wal_replay_lsn()::text AS lsn';

/** Positions of the primary older than this are not kept: a replica further behind is unusable anyway. */
const KEEP_SAMPLES_MS = 10_000;

/**
 * How fresh a streaming replica is, measured rather than assumed. Every `intervalMs` it reads the
 * primary's WAL position (noting when it asked) and how far the replica has replayed. Once the replica
 * has replayed past a position the primary reported at time T, everything committed before T is visible
 * on the replica: T is how fresh its data is. A read may go to the replica while now − T is under
 * `maxLagMs`, judged at the moment of the read, so a replica that stops (or whose checks stop answering)
 * falls out of use by itself within `maxLagMs`, and comes back as soon as it replays past a recent
 * position again.
 *
 * An LSN comparison rather than `now() − pg_last_xact_replay_timestamp()`: on a primary with no writes
 * the latter grows without end though the replica is fully caught up, and it needs the two clocks to agree.
 */
export class ReplicaFreshness {
  readonly #primary: PostgresDatabase;
  readonly #replica: PostgresDatabase;
  readonly #intervalMs: number;
  readonly #maxLagMs: number;
  /** Positions of the primary, oldest first, with the wall-clock time at which each was asked for. */
  #samples: Array<{ at: number; lsn: bigint }> = [];
  #freshAsOf: number | null = null;
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;

  constructor(primaryUrl: string, replicaUrl: string, options: { intervalMs: number; maxLagMs: number }) {
    // One connection each, failing at once: a check that cannot run is itself the answer (not fresh).
    this.#primary = new PostgresDatabase(withPoolSize(primaryUrl, 1), {}, { retry: false });
    this.#replica = new PostgresDatabase(withPoolSize(replicaUrl, 1), {}, { retry: false });
    this.#intervalMs = options.intervalMs;
    this.#maxLagMs = options.maxLagMs;
  }

  start(): void {
    const tick = async () => {
      await this.check();
      if (this.#stopped) return;
      this.#timer = setTimeout(tick, this.#intervalMs);
      this.#timer.unref();
    };
    void tick();
  }

  /** Whether a read now may go to the replica. */
  usable(now = Date.now()): boolean {
    return this.#freshAsOf !== null && now - this.#freshAsOf < this.#maxLagMs;
  }

  /** How old the replica's data may be, in ms (null: unknown, it does not answer). */
  lagMs(now = Date.now()): number | null {
    return this.#freshAsOf === null ? null : Math.max(0, now - this.#freshAsOf);
  }

  /** A read on the replica failed: no more reads there until a check finds it fresh again. */
  failed(): void {
    this.#freshAsOf = null;
  }

  /** One measurement (also run by start() every intervalMs). Never throws. */
  async check(): Promise<void> {
    const at = Date.now();
    const [primary, replica] = await Promise.allSettled([
      this.#primary.query<{ lsn: string }>(PRIMARY_POSITION),
      this.#replica.query<{ lsn: string | null }>(REPLAYED_POSITION),
    ]);
    if (primary.status === 'fulfilled') {
      this.#samples.push({ at, lsn: lsnValue(primary.value.rows[0]!.lsn) });
    }
    this.#samples = this.#samples.filter((s) => at - s.at < KEEP_SAMPLES_MS);
    const replayed = replica.status === 'fulfilled' ? replica.value.rows[0]?.lsn : null;
    if (!replayed) {
      // Down, or not a replica at all: reads stay on the primary.
      this.#freshAsOf = null;
      return;
    }
    const position = lsnValue(replayed);
    let freshest: number | null = null;
    for (const sample of this.#samples) if (sample.lsn <= position) freshest = sample.at;
    if (freshest !== null) this.#freshAsOf = Math.max(this.#freshAsOf ?? 0, freshest);
  }

  async close(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await Promise.all([this.#primary.close(), this.#replica.close()]);
  }
}

/** A WAL position "16/B374D848" as a number that compares as positions do. */
function lsnValue(text: string): bigint {
  const [high, low] = text.split('/');
  return (BigInt(`0x${high}`) << 32n) + BigInt(`0x${low}`);
}

function withPoolSize(url: string, size: number): string {
  const parsed = new URL(url);
  parsed.searchParams.set('max', String(size));
  return parsed.toString();
}
