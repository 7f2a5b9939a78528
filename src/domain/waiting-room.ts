import { OnsaleError } from './errors.js';
import type { WaitingRoomSettings } from './types.js';

/**
 * The waiting room's decisions: what a room request creates, the opening lottery, who is admitted next, and
 * what a place shows. Pure: the adapters keep the line, the web servers read it, the ticker moves it.
 */

export const ROOM_DEFAULTS = {
  maxActiveBuyers: 500,
  maxAdmittedPerMinute: null,
  sessionSeconds: 600,
  powDifficulty: 0,
};

/** A place whose turn comes after it was not read for this long is skipped as expired. */
export const ABANDONED_AFTER_MS = 5 * 60_000;

/** How often a waiting page is told to read its place again near the front, or while no wait is estimated. */
export const REFRESH_AFTER_SECONDS = 5;
/** How long a page far back in a long line (or long before the opening) is told to wait before reading again. */
export const MAX_REFRESH_AFTER_SECONDS = 30;

/** The window over which the line's speed is measured for the estimate, and the admission rate bounded. */
export const RATE_WINDOW_MS = 60_000;

export interface WaitingRoomRequest {
  opensAt?: string;
  maxActiveBuyers?: number;
  maxAdmittedPerMinute?: number | null;
  sessionSeconds?: number;
  powDifficulty?: number;
}

/**
 * The settings a room request makes for an event whose sales open at `salesOpenAt`: opensAt (default: now,
 * `nowIso`) normalised to ISO-8601 UTC and not after salesOpenAt, the limits defaulted.
 */
export function roomToCreate(
  request: WaitingRoomRequest,
  salesOpenAt: string,
  nowIso: string,
): WaitingRoomSettings | OnsaleError {
  let opensAt = nowIso < salesOpenAt ? nowIso : salesOpenAt;
  if (request.opensAt !== undefined) {
    const at = new Date(request.opensAt);
    if (Number.isNaN(at.getTime())) {
      return new OnsaleError('invalid_request', 'waitingRoom.opensAt must be an ISO-8601 date and time');
    }
    opensAt = at.toISOString();
    if (opensAt > salesOpenAt) {
      return new OnsaleError('invalid_request', 'waitingRoom.opensAt must not be after salesOpenAt');
    }
  }
  return {
    opensAt,
    maxActiveBuyers: request.maxActiveBuyers ?? ROOM_DEFAULTS.maxActiveBuyers,
    maxAdmittedPerMinute: request.maxAdmittedPerMinute ?? ROOM_DEFAULTS.maxAdmittedPerMinute,
    sessionSeconds: request.sessionSeconds ?? ROOM_DEFAULTS.sessionSeconds,
    powDifficulty: request.powDifficulty ?? ROOM_DEFAULTS.powDifficulty,
  };
}

/**
 * Fisher–Yates: every order of `items` equally likely, given a `randomBelow(n)` uniform on 0..n-1 (the
 * adapters pass crypto.randomInt). Shuffles in place and returns the array.
 */
export function shuffle<T>(items: T[], randomBelow: (n: number) => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = randomBelow(i + 1);
    const picked = items[j] as T;
    items[j] = items[i] as T;
    items[i] = picked;
  }
  return items;
}

/** One buyer's place in an event's line. */
export interface Place {
  placeId: string;
  eventId: string;
  /** As typed when joining. */
  buyerId: string;
  canonicalBuyerId: string;
  joinedAt: string;
  /** 1-based rank in the line; null while in the pre-queue (before the opening lottery). */
  lineNumber: number | null;
  /** Decided when its turn came, in line order; null while waiting. */
  outcome: 'admitted' | 'expired' | null;
  admittedAt: string | null;
  admissionExpiresAt: string | null;
  /** A purchase was accepted with its admission. */
  used: boolean;
  /** The estimated wait (s) given when the place was taken; null in the pre-queue or while no speed is measured. */
  etaAtJoin: number | null;
}

/** The counters of an event's line, from which every waiting place's position follows. */
export interface Line {
  eventId: string;
  salesOpenAt: string;
  /** The lottery has run: places have line numbers from here on. */
  opened: boolean;
  /** Places taken before the opening (the lottery's size once opened). */
  prequeued: number;
  /** Line numbers given so far. */
  tail: number;
  /** Line numbers decided (admitted or expired), in order: the front of the line is head + 1. */
  head: number;
  /** Admitted buyers still holding a slot (purchase not final, admission not expired). */
  active: number;
  admitted: number;
  expired: number;
  /** Nothing is left to admit anyone to (nothing available or held). */
  soldOut: boolean;
  maxActiveBuyers: number;
  maxAdmittedPerMinute: number | null;
  sessionSeconds: number;
  /** The proof of work asked to join, in leading zero bits (0: none); the organizer may change it. */
  powDifficulty: number;
  /** [time ms, head, admitted] after each move, the last RATE_WINDOW_MS and the one before: the speed. */
  progress: Array<[number, number, number]>;
}

export type PlaceState = 'prequeue' | 'waiting' | 'admitted' | 'sold_out' | 'expired';

export interface PlaceView {
  state: PlaceState;
  position: number | null;
  aheadOfYou: number | null;
  etaSeconds: number | null;
}

/**
 * A move of the line is shown this long after the ticker made it: every web server reads the line at most
 * LINE_CACHE_MS (< this) after a move, so all of them show the same head at the same moment, and a buyer
 * whose refreshes land on different servers never sees their position grow.
 */
export const SHOWN_AFTER_MS = 1_000;

/** The head every web server shows at `now`: the line's head as it was SHOWN_AFTER_MS ago. */
export function shownHead(line: Line, now: number): number {
  return sampleAt(line.progress, now - SHOWN_AFTER_MS)?.[1] ?? 0;
}

/**
 * What a place shows, from the place and its line's counters alone (no read of other places): position is
 * the line number less the shown head, so it never grows while head only grows. `lineReadAt`: when the
 * counters were read (a web server keeps them for a moment), the end of the speed's measure.
 */
export function placeView(place: Place, line: Line, now: number, lineReadAt = now): PlaceView {
  const none = { position: null, aheadOfYou: null, etaSeconds: null };
  if (place.outcome === 'admitted') {
    const expired = !place.used && Date.parse(place.admissionExpiresAt ?? '') <= now;
    return { state: expired ? 'expired' : 'admitted', ...none };
  }
  if (place.outcome === 'expired') return { state: 'expired', ...none };
  if (line.soldOut) return { state: 'sold_out', ...none };
  if (place.lineNumber === null) return { state: 'prequeue', ...none };
  // A place at or behind head whose outcome this process has not read yet: at the front, not yet shown.
  const position = Math.max(1, place.lineNumber - shownHead(line, now));
  return {
    state: 'waiting',
    position,
    aheadOfYou: position - 1,
    etaSeconds: etaSeconds(position, line, Math.min(now, lineReadAt)),
  };
}

/**
 * When the page showing a place should read it again: a quarter of the time still to wait (the estimate, or
 * the time to the opening in the pre-queue), within REFRESH_AFTER_SECONDS..MAX_REFRESH_AFTER_SECONDS, and
 * never more than half the admission's session (a buyer admitted just after a read keeps at least half of
 * it, whatever the estimate said). The reads of people far back are most of a rush's requests (200,000
 * people reading every 5 s ask 40,000 reads a second) and tell them little; near the front, and whenever
 * nothing is estimated, the page reads often.
 */
export function refreshAfterSeconds(view: PlaceView, line: Line | null, now: number): number {
  let waitSeconds: number | null = null;
  if (view.state === 'waiting') waitSeconds = view.etaSeconds;
  else if (view.state === 'prequeue' && line) waitSeconds = (Date.parse(line.salesOpenAt) - now) / 1000;
  if (waitSeconds === null || !(waitSeconds > 0)) return REFRESH_AFTER_SECONDS;
  const most = Math.min(MAX_REFRESH_AFTER_SECONDS, Math.floor((line?.sessionSeconds ?? Infinity) / 2));
  return Math.max(REFRESH_AFTER_SECONDS, Math.min(most, Math.round(waitSeconds / 4)));
}

/**
 * The estimated wait of the place at `position`: positions over the line's measured speed (headSpeed) up
 * to `now`, which must not be later than when the line's counters were read: moves made since are not in
 * them, and counting the time without them would slow the speed down. Null while no speed is measured.
 */
export function etaSeconds(position: number, line: Line, now: number): number | null {
  const speed = headSpeed(line, now);
  if (speed === null) return null;
  return Math.round(position / speed);
}

/**
 * Positions per second the line's head moved during the last RATE_WINDOW_MS, counted from no earlier than
 * the sales' opening (before it the line cannot move, so a long pre-queue would otherwise slow the speed
 * down) nor the line's first sample. While the window holds the opening, its speed counts from the first
 * slot freed after the opening's fill: the fill admits every free slot at once, which says nothing of how
 * fast slots are freed, and the places behind it wait for slots to free. Null when less than a second is
 * measured, when the head has not moved, and until a slot freed after the fill. A line that stops moving
 * slows down as its window goes on.
 */
export function headSpeed(line: Line, now: number): number | null {
  const progress = line.progress;
  const first = progress[0];
  if (!first) return null;
  const start = Math.max(now - RATE_WINDOW_MS, Date.parse(line.salesOpenAt), first[0]);
  // The window's base: the last sample before it starts (a step made at its very start is inside it).
  let base = 0;
  while (base + 1 < progress.length && progress[base + 1]![0] < start) base += 1;
  // From a standstill, the base is the first slot freed after the opening's fill: the wait for it is
  // that of the buyers admitted by the fill, not the line's pace.
  if (progress[base]![1] === 0) {
    while (base < progress.length && progress[base]![1] === 0) base += 1;
    const fill = progress[base]?.[1];
    while (base < progress.length && progress[base]![1] === fill) base += 1;
    if (base === progress.length) return null;
  }
  const from = progress[base]!;
  const last = progress[progress.length - 1]!;
  const seconds = (now - Math.max(start, from[0])) / 1000;
  if (seconds < 1 || last[1] === from[1]) return null;
  return (last[1] - from[1]) / seconds;
}

/** The latest sample at or before `at`. */
function sampleAt(progress: Line['progress'], at: number): [number, number, number] | undefined {
  let found: [number, number, number] | undefined;
  for (const sample of progress) {
    if (sample[0] <= at) found = sample;
    else break;
  }
  return found;
}

/** The samples kept after a move at `now`: this one, those of the window, and the last one before it. */
export function withProgress(
  progress: Line['progress'],
  now: number,
  head: number,
  admitted: number,
): Line['progress'] {
  // In time order, even for a step whose time was read before the last sample's (it waited for the line).
  const at = Math.max(now, progress[progress.length - 1]?.[0] ?? now);
  const next = [...progress, [at, head, admitted] as [number, number, number]];
  const before = next.filter((s) => s[0] <= now - RATE_WINDOW_MS);
  const inside = next.filter((s) => s[0] > now - RATE_WINDOW_MS);
  return before.length > 0 ? [before[before.length - 1]!, ...inside] : inside;
}

/**
 * How many buyers may be admitted now: free slots under maxActiveBuyers, and, when set, what is left of
 * maxAdmittedPerMinute over the last minute (counted exactly from the progress samples, one per move).
 */
export function admissionBudget(line: Line, now: number): number {
  if (line.soldOut || !line.opened) return 0;
  let budget = line.maxActiveBuyers - line.active;
  if (line.maxAdmittedPerMinute !== null) {
    const base = sampleAt(line.progress, now - RATE_WINDOW_MS);
    const lastMinute = line.admitted - (base ? base[2] : 0);
    budget = Math.min(budget, line.maxAdmittedPerMinute - lastMinute);
  }
  return Math.max(0, budget);
}

/** A place at the front of the line, as the step that decides it reads it. */
export interface FrontPlace {
  id: string;
  last_read_at: number;
  joined_at: string;
  eta_at_join: number | null;
}

/** What one step of the line decided at its front, in line order. */
export interface FrontDecisions {
  admit: string[];
  expire: string[];
  /** The wait each admitted place saw, beside the one it was told when it joined. */
  admitted: Array<{ waitedSeconds: number; etaAtJoin: number | null }>;
}

export function noDecisions(): FrontDecisions {
  return { admit: [], expire: [], admitted: [] };
}

/**
 * One step's walk along a chunk of the front (`front`: the places after line.head, in line order): each
 * is skipped as expired when abandoned, else admitted, while `budget` lasts. Moves line.head and the
 * line's counters, adds to `decided`, and returns the budget left; the adapter reads the next chunk while
 * some is left and the line has places.
 */
export function decideFront(
  line: Line,
  front: readonly FrontPlace[],
  budget: number,
  now: number,
  decided: FrontDecisions,
): number {
  for (const place of front) {
    if (budget === 0) break;
    line.head += 1;
    if (abandoned(place.last_read_at, now)) {
      decided.expire.push(place.id);
      line.expired += 1;
    } else {
      decided.admit.push(place.id);
      decided.admitted.push({
        waitedSeconds: (now - Date.parse(place.joined_at)) / 1000,
        etaAtJoin: place.eta_at_join,
      });
      line.admitted += 1;
      line.active += 1;
      budget -= 1;
    }
  }
  return budget;
}

/** The estimated wait told to the place that takes line number `lineNumber` now. */
export function joinEstimate(lineNumber: number, line: Line, now: number): number | null {
  return etaSeconds(Math.max(1, lineNumber - shownHead(line, now)), line, now);
}

/** Whether a place whose turn has come is skipped: nobody read it for ABANDONED_AFTER_MS. */
export function abandoned(lastReadAt: number, now: number): boolean {
  return now - lastReadAt > ABANDONED_AFTER_MS;
}

/** Whether the event has nothing left to admit anyone to: every ticket type with none available or held. */
export function nothingLeft(stock: ReadonlyArray<{ available: number; held: number }>): boolean {
  return stock.every((t) => t.available <= 0 && t.held <= 0);
}
