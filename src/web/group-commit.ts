/**
 * Group commit: requests that arrive while the event loop is busy share one durable write. The first
 * request schedules a flush with setImmediate, so everything parsed in the same turn of the loop joins it
 * and no request waits on a timer. While a flush is in flight, new requests gather for the next one.
 * Measured on the embedded queue: one fsync per batch rather than per purchase is what lets the accept path
 * keep up with the HTTP layer (docs/benchmarks.md).
 */
export class GroupCommit<Req, Res> {
  readonly #write: (requests: Req[]) => Promise<Res[]>;
  readonly #maxBatch: number;
  #pending: Array<{ request: Req; resolve: (r: Res) => void; reject: (e: unknown) => void }> = [];
  #scheduled = false;
  #inFlight: Promise<void> | null = null;

  constructor(write: (requests: Req[]) => Promise<Res[]>, maxBatch = 2000) {
    this.#write = write;
    this.#maxBatch = maxBatch;
  }

  submit(request: Req): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      this.#pending.push({ request, resolve, reject });
      this.#schedule();
    });
  }

  /** Resolves once everything submitted so far is written (or failed). */
  async drain(): Promise<void> {
    while (this.#pending.length > 0 || this.#inFlight || this.#scheduled) {
      await (this.#inFlight ?? new Promise((r) => setImmediate(r)));
    }
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#inFlight = this.#flush().finally(() => {
        this.#inFlight = null;
        if (this.#pending.length > 0) this.#schedule();
      });
    });
  }

  async #flush(): Promise<void> {
    const batch = this.#pending.splice(0, this.#maxBatch);
    try {
      const results = await this.#write(batch.map((p) => p.request));
      batch.forEach((p, i) => p.resolve(results[i]!));
    } catch (error) {
      for (const p of batch) p.reject(error);
    }
  }
}
