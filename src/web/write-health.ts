/**
 * Whether this server's last write to the queue failed, for /readyz: a database that answers SELECT 1 may
 * still refuse every write (disk full, locked by another process). A failure counts for FAILURE_COUNTS_MS
 * only, unless a write succeeds first: a server taken out of rotation gets no purchase to write, so it is
 * shown ready again after that, and the next failed write takes it out again.
 */
export class WriteHealth {
  static readonly FAILURE_COUNTS_MS = 5_000;
  #failedAt: number | null = null;
  #reason = '';

  succeeded(): void {
    this.#failedAt = null;
  }

  failed(error: unknown): void {
    this.#failedAt = Date.now();
    this.#reason = error instanceof Error ? error.message : String(error);
  }

  /** Why the last write failed, if it did recently and none succeeded since; else null. */
  problem(now = Date.now()): string | null {
    if (this.#failedAt === null || now - this.#failedAt > WriteHealth.FAILURE_COUNTS_MS) return null;
    return this.#reason;
  }
}
