import type { WaitingRoomSettings } from '../domain/types.js';
import type { Line, Place } from '../domain/waiting-room.js';

/** What the organizer may change during a sale. */
export interface RoomLimits {
  maxActiveBuyers?: number;
  maxAdmittedPerMinute?: number | null;
  powDifficulty?: number;
}

/** A buyer asking for a place in an event's line. */
export interface JoinRequest {
  eventId: string;
  /** As typed: what the place shows. */
  buyerId: string;
  /** One place per canonical id (src/domain/buyer.ts), shared by tabs and devices. */
  canonicalBuyerId: string;
  /** The event's room and opening, copied into the line when its first place is taken. */
  room: WaitingRoomSettings;
  salesOpenAt: string;
  joinedAt: string;
}

export interface JoinResult {
  place: Place;
  /** False when the buyer already had this place. */
  created: boolean;
}

/** A purchase accepted with a place's admission. */
export interface AdmittedPurchase {
  placeId: string;
  purchaseId: string;
}

/** An admitted buyer still holding a slot: what the ticker checks to free it. */
export interface ActiveAdmission {
  placeId: string;
  admissionExpiresAt: string;
  purchaseIds: string[];
}

/** What one step of the ticker decided outside the line: slots to free and whether stock is left. */
export interface AdvanceStep {
  now: number;
  /** Admitted places whose purchase is final or whose admission expired. */
  release: readonly string[];
  soldOut: boolean;
}

/** What one step did: the line after it, and for each buyer admitted, the wait seen and the one told. */
export interface AdvanceResult {
  line: Line;
  admitted: Array<{ waitedSeconds: number; etaAtJoin: number | null }>;
  expired: number;
}

/**
 * The waiting room's line per event, kept in the configured database so that every web server sees one
 * line and a restart loses no place. Joins are durable when join() resolves. The line moves only through
 * advance(), which each adapter serializes per event (a row lock or the write lock), so any number of
 * processes may run the ticker at once.
 */
export interface WaitingRoom {
  /** Creates or upgrades the room's tables (its own migration component, `room`). */
  migrate(): Promise<void>;

  /** Takes places for a batch of requests in one transaction, in order; a buyer with a place gets it back. */
  join(requests: readonly JoinRequest[]): Promise<JoinResult[]>;
  getPlace(placeId: string): Promise<Place | null>;
  /** The line's counters; null when nobody has joined it yet. */
  getLine(eventId: string): Promise<Line | null>;

  /** Records when places were last read (ms), batched by the web server: an unread place expires. */
  noteReads(reads: ReadonlyMap<string, number>): Promise<void>;
  /**
   * Records purchases accepted with places' admissions (a batch, in one transaction), so that their final
   * status frees the slots; recording one twice changes nothing.
   */
  notePurchases(purchases: readonly AdmittedPurchase[]): Promise<void>;
  /** Changes the limits of a line during the sale; null when nobody has joined it yet. */
  setLimits(eventId: string, limits: RoomLimits): Promise<Line | null>;

  /** Events whose line may still move: not sold out, or with admitted buyers holding slots. */
  movingLines(): Promise<string[]>;
  activeAdmissions(eventId: string): Promise<ActiveAdmission[]>;
  /**
   * One step of the line, atomically: frees `release`, records sold out, runs the opening lottery when
   * salesOpenAt has passed, then admits from the front within admissionBudget, skipping abandoned places
   * as expired. Returns the line after the step.
   */
  advance(eventId: string, step: AdvanceStep): Promise<AdvanceResult | null>;

  close(): Promise<void>;
}
