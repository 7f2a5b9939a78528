import type { ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';

/** A child that ran this long before it died was not crash-looping: its backoff starts over. */
export const STABLE_RUN_MS = 60_000;
/** The longest wait before a child that keeps crashing is started again. */
export const MAX_RESTART_DELAY_MS = 30_000;

/**
 * How long to wait before starting again a child that died after running `ranMs`, given its crashes so far
 * (updated): 250 ms, doubling with each crash in a row up to 30 s; a child that ran `stableMs` or more
 * starts the count over. Counting by how long the child ran, not by a window since the first crash, keeps
 * a child that crashes for minutes at 30 s instead of starting again at 250 ms each minute.
 */
export function restartDelay(crashes: { count: number }, ranMs: number, stableMs = STABLE_RUN_MS): number {
  if (ranMs >= stableMs) crashes.count = 0;
  crashes.count += 1;
  return Math.min(MAX_RESTART_DELAY_MS, 250 * 2 ** Math.min(crashes.count - 1, 7));
}

interface Slot {
  name: string;
  spawn: () => ChildProcess;
  child: ChildProcess | null;
  exited: Promise<void>;
  /** Stopped on purpose (retired, or being replaced): its exit is not a crash. */
  planned: boolean;
  crashes: { count: number };
  startedAt: number;
}

/**
 * Keeps named child processes running: one that dies is started again, after a delay that grows while it
 * keeps crashing (a bad database, a full disk), up to 30 s. Children are stopped with SIGTERM, which each
 * onsale role answers by finishing its work and exiting within 10 s.
 */
export class Supervisor {
  readonly #logger: Logger;
  readonly #slots = new Map<string, Slot>();
  /** Every child process alive now, with its name: those retiring too, until they exit. */
  readonly #alive = new Map<ChildProcess, string>();
  readonly #onChange: () => void;
  readonly #stableMs: number;
  #stopping = false;

  /**
   * `onChange` is called each time a child starts or exits; `stableMs`: how long a child must run for its
   * next crash to count as the first again.
   */
  constructor(logger: Logger, onChange: () => void = () => {}, stableMs = STABLE_RUN_MS) {
    this.#logger = logger;
    this.#onChange = onChange;
    this.#stableMs = stableMs;
  }

  /** Starts a child under `name` and keeps it running. */
  run(name: string, spawn: () => ChildProcess): void {
    const slot: Slot = {
      name,
      spawn,
      child: null,
      exited: Promise.resolve(),
      planned: false,
      crashes: { count: 0 },
      startedAt: Date.now(),
    };
    this.#slots.set(name, slot);
    this.#start(slot);
  }

  names(prefix = ''): string[] {
    return [...this.#slots.keys()].filter((n) => n.startsWith(prefix));
  }

  /** How many child processes whose name starts with `prefix` are alive now. */
  alive(prefix: string): number {
    return [...this.#alive.values()].filter((n) => n.startsWith(prefix)).length;
  }

  pid(name: string): number | undefined {
    return this.#slots.get(name)?.child?.pid;
  }

  /** Stops the child for good; resolves once it has exited. */
  async retire(name: string): Promise<void> {
    const slot = this.#slots.get(name);
    if (!slot) return;
    this.#slots.delete(name);
    slot.planned = true;
    slot.child?.kill('SIGTERM');
    await slot.exited;
  }

  /** Stops the child and starts a new one at once (no backoff); resolves when the new one is spawned. */
  async restart(name: string): Promise<void> {
    const slot = this.#slots.get(name);
    if (!slot || this.#stopping) return;
    slot.planned = true;
    slot.child?.kill('SIGTERM');
    await slot.exited;
    slot.planned = false;
    if (!this.#stopping) this.#start(slot);
  }

  /**
   * Stops every child with SIGTERM, those named in `last` only after the others have exited (the load
   * balancer outlives the servers it sends to); SIGKILL for any other still running after `deadlineMs`.
   * Resolves true if all stopped in time.
   */
  async stopAll(last: readonly string[], deadlineMs: number): Promise<boolean> {
    this.#stopping = true;
    const slots = [...this.#slots.values()];
    const stop = (group: Slot[]) => {
      for (const s of group) s.child?.kill('SIGTERM');
      return Promise.all(group.map((s) => s.exited));
    };
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), deadlineMs)));
    const done = (async () => {
      await stop(slots.filter((s) => !last.includes(s.name)));
      await stop(slots.filter((s) => last.includes(s.name)));
      return true as const;
    })();
    const inTime = await Promise.race([done, timedOut]);
    clearTimeout(timer);
    // Late: SIGKILL, except for those stopped last (the balancer's wrapper), which pass SIGTERM on to
    // what they run instead of leaving it behind.
    if (!inTime) for (const s of slots) s.child?.kill(last.includes(s.name) ? 'SIGTERM' : 'SIGKILL');
    return inTime;
  }

  #start(slot: Slot): void {
    const child = slot.spawn();
    slot.child = child;
    slot.startedAt = Date.now();
    this.#alive.set(child, slot.name);
    this.#onChange();
    slot.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        slot.child = null;
        this.#alive.delete(child);
        this.#onChange();
        resolve();
        if (this.#stopping || slot.planned || this.#slots.get(slot.name) !== slot) return;
        const delay = restartDelay(slot.crashes, Date.now() - slot.startedAt, this.#stableMs);
        this.#logger.warn(
          { child: slot.name, pid: child.pid, code, signal, restartInMs: delay },
          'child died; restarting',
        );
        setTimeout(() => {
          if (!this.#stopping && !slot.planned && this.#slots.get(slot.name) === slot) this.#start(slot);
        }, delay).unref();
      });
    });
    child.on('error', (error) => this.#logger.error({ child: slot.name, err: error }, 'child failed'));
  }
}
