import type { Logger } from 'pino';
import {
  placeView,
  refreshAfterSeconds,
  type Line,
  type Place,
  type PlaceState,
} from '../domain/waiting-room.js';
import type { JoinRequest, JoinResult, WaitingRoom } from '../ports/waiting-room.js';
import type { AdmissionSigner } from './admission-token.js';
import { GroupCommit } from './group-commit.js';
import { countRoomJoin } from '../metrics/metrics.js';

/** A line's counters are read again after this: below SHOWN_AFTER_MS, so every server shows one head. */
const LINE_CACHE_MS = 400;
/** Reads of places are written to the database in one batch this often (they decide who expired). */
const READS_FLUSH_MS = 2_000;
/** Places kept in memory; past this the cache starts over (each place then costs one read again). */
const MAX_CACHED_PLACES = 500_000;

/** A line's counters as read at `at`; `settled` once the read has answered (undefined until then). */
interface CachedLine {
  at: number;
  value: Promise<Line | null>;
  settled?: Line | null;
}

export interface PlaceAnswer {
  placeId: string;
  eventId: string;
  buyerId: string;
  state: PlaceState;
  position: number | null;
  aheadOfYou: number | null;
  etaSeconds: number | null;
  admission: { token: string; expiresAt: string } | null;
  refreshAfterSeconds: number;
}

/**
 * The web server's view of the waiting room, built for the hot path of a rush: a place is read from the
 * database once per process (and again only when its line has reached it), and the line's counters once
 * per LINE_CACHE_MS for all its readers, so a refresh costs no database round trip. Joins of concurrent
 * requests go to the database in one transaction (group commit).
 */
export class RoomReader {
  readonly #room: WaitingRoom;
  readonly #signer: AdmissionSigner;
  readonly #logger: Logger;
  readonly #lines = new Map<string, CachedLine>();
  readonly #places = new Map<string, Place>();
  #reads = new Map<string, number>();
  readonly #joins: GroupCommit<JoinRequest, JoinResult>;
  readonly #flusher: NodeJS.Timeout;

  constructor(room: WaitingRoom, signer: AdmissionSigner, logger: Logger) {
    this.#room = room;
    this.#signer = signer;
    this.#logger = logger;
    this.#joins = new GroupCommit((batch) => room.join(batch), 500);
    this.#flusher = setInterval(() => void this.flushReads(), READS_FLUSH_MS);
    this.#flusher.unref();
  }

  /** Takes (or finds) the buyer's place; durable when it resolves. */
  async join(request: JoinRequest): Promise<{ answer: PlaceAnswer; created: boolean }> {
    const { place, created } = await this.#joins.submit(request);
    countRoomJoin(created);
    this.#remember(place);
    // A new place is told the estimate its join recorded (from the line as the join found it), the one its
    // wait is scored against.
    const told = created ? place.etaAtJoin : undefined;
    return { answer: await this.#answer(place, Date.parse(request.joinedAt), told), created };
  }

  /** The place as its holder sees it; null when there is no such place. */
  async read(placeId: string, now = Date.now()): Promise<PlaceAnswer | null> {
    let place = this.#places.get(placeId) ?? null;
    if (!place) {
      place = await this.#room.getPlace(placeId);
      if (!place) return null;
      this.#remember(place);
    }
    this.#reads.set(placeId, now);
    return this.#answer(place, now);
  }

  /**
   * The place as read() would answer it, when that takes no database read: the place and its line's fresh
   * counters are in memory and the line has not reached the place. Undefined otherwise (then call read()).
   * The read is not noted: noteRead() does that once the request is let through.
   */
  cachedAnswer(placeId: string, now = Date.now()): PlaceAnswer | undefined {
    const place = this.#places.get(placeId);
    if (!place) return undefined;
    const cached = this.#lines.get(place.eventId);
    if (!cached || now - cached.at >= LINE_CACHE_MS) return undefined;
    const line = cached.settled;
    if (!line || this.#stale(place, line, now)) return undefined;
    return this.#view(place, line, now, cached.at);
  }

  /** A read of a place answered from cachedAnswer(): written back with the next batch, as read() does. */
  noteRead(placeId: string, now = Date.now()): void {
    this.#reads.set(placeId, now);
  }

  /** The line's counters, at most LINE_CACHE_MS old, one query however many read at once. */
  line(eventId: string, now = Date.now()): Promise<Line | null> {
    const cached = this.#lines.get(eventId);
    if (cached && now - cached.at < LINE_CACHE_MS) return cached.value;
    const value = this.#room.getLine(eventId);
    const entry: CachedLine = { at: now, value };
    value.then(
      (line) => (entry.settled = line),
      () => this.#lines.delete(eventId),
    );
    this.#lines.set(eventId, entry);
    return value;
  }

  async #answer(cachedPlace: Place, now: number, etaAtJoin?: number | null): Promise<PlaceAnswer> {
    let place = cachedPlace;
    let line = await this.line(place.eventId, now);
    if (!line) {
      // Read before this place's line existed: read it again now.
      this.#lines.delete(place.eventId);
      line = await this.line(place.eventId, now);
    }
    if (line && this.#stale(place, line, now)) {
      place = (await this.#room.getPlace(place.placeId)) ?? place;
      this.#remember(place);
    }
    return this.#view(place, line, now, this.#lines.get(place.eventId)?.at ?? now, etaAtJoin);
  }

  /** `lineReadAt`: when the line's counters were read; `etaAtJoin`: the estimate a new place is told. */
  #view(
    place: Place,
    line: Line | null,
    now: number,
    lineReadAt: number,
    etaAtJoin?: number | null,
  ): PlaceAnswer {
    const view = line
      ? placeView(place, line, now, lineReadAt)
      : { state: 'prequeue' as const, position: null, aheadOfYou: null, etaSeconds: null };
    if (view.state === 'waiting' && etaAtJoin !== undefined) view.etaSeconds = etaAtJoin;
    const admission =
      view.state === 'admitted' && place.admissionExpiresAt
        ? {
            token: this.#signer.sign({
              eventId: place.eventId,
              canonicalBuyerId: place.canonicalBuyerId,
              placeId: place.placeId,
              expiresAt: Date.parse(place.admissionExpiresAt),
            }),
            expiresAt: place.admissionExpiresAt,
          }
        : null;
    return {
      placeId: place.placeId,
      eventId: place.eventId,
      buyerId: place.buyerId,
      ...view,
      admission,
      refreshAfterSeconds: refreshAfterSeconds(view, line, now),
    };
  }

  /** Whether the line has moved past what this process knows of the place (numbered, decided, used). */
  #stale(place: Place, line: Line, now: number): boolean {
    if (place.lineNumber === null) return line.opened;
    if (place.outcome === null) return place.lineNumber <= line.head;
    if (place.outcome === 'admitted' && !place.used) {
      return Date.parse(place.admissionExpiresAt ?? '') <= now;
    }
    return false;
  }

  #remember(place: Place): void {
    if (this.#places.size >= MAX_CACHED_PLACES) this.#places.clear();
    this.#places.set(place.placeId, place);
  }

  /** A purchase made with the admission of a place this process holds. */
  forget(placeId: string): void {
    this.#places.delete(placeId);
  }

  /** Writes the reads seen since the last flush; a failure keeps them for the next one. */
  async flushReads(): Promise<void> {
    if (this.#reads.size === 0) return;
    const reads = this.#reads;
    this.#reads = new Map();
    try {
      await this.#room.noteReads(reads);
    } catch (error) {
      this.#logger.warn({ err: error }, 'could not record waiting-room reads; will retry');
      for (const [id, at] of reads) if ((this.#reads.get(id) ?? 0) < at) this.#reads.set(id, at);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#flusher);
    await this.#joins.drain();
    await this.flushReads();
  }
}
