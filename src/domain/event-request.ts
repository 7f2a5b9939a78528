import { OnsaleError } from './errors.js';
import { unstorableText } from './text.js';
import type { BuyerIdKind } from './buyer.js';
import type { NewEvent, NewTicketType } from './types.js';
import { roomToCreate, type WaitingRoomRequest } from './waiting-room.js';

/** The shortest hold an event may have: time enough for a buyer to type a card number. */
export const MIN_HOLD_SECONDS = 30;

/** An admin's request to create an event, as the web server validated its shape. */
interface EventRequest {
  name: string;
  salesOpenAt?: string;
  holdSeconds: number;
  buyerIdKind?: BuyerIdKind;
  ticketTypes: NewTicketType[];
  waitingRoom?: WaitingRoomRequest;
}

/**
 * The event a request creates when it arrives at `now`: sales open at the time given (normalised to
 * ISO-8601 UTC) or at once. Returns the error that refuses the request instead when it cannot be met.
 */
export function eventToCreate(request: EventRequest, now: Date): NewEvent | OnsaleError {
  if (request.holdSeconds > 0 && request.holdSeconds < MIN_HOLD_SECONDS) {
    return new OnsaleError(
      'invalid_request',
      `holdSeconds must be 0 (no holds) or ${MIN_HOLD_SECONDS}..86400`,
    );
  }
  let salesOpenAt = now.toISOString();
  if (request.salesOpenAt !== undefined) {
    const at = new Date(request.salesOpenAt);
    if (Number.isNaN(at.getTime())) {
      return new OnsaleError('invalid_request', 'salesOpenAt must be an ISO-8601 date and time');
    }
    salesOpenAt = at.toISOString();
  }
  const refusal = unstorableText(request.name, ...request.ticketTypes.map((t) => t.name));
  if (refusal) return refusal;
  const waitingRoom =
    request.waitingRoom === undefined
      ? null
      : roomToCreate(request.waitingRoom, salesOpenAt, now.toISOString());
  if (waitingRoom instanceof OnsaleError) return waitingRoom;
  return {
    name: request.name,
    salesOpenAt,
    holdSeconds: request.holdSeconds,
    buyerIdKind: request.buyerIdKind ?? 'any',
    ticketTypes: request.ticketTypes,
    waitingRoom,
  };
}
