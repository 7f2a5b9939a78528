import type { Logger } from 'pino';
import { FINAL_STATUSES } from '../domain/types.js';
import { nothingLeft } from '../domain/waiting-room.js';
import { observeRoomStep } from '../metrics/metrics.js';
import type { Storage } from '../ports/storage.js';
import type { WaitingRoom } from '../ports/waiting-room.js';

/** How often the lines move: admissions follow freed slots within this. */
const TICK_MS = 250;

interface TickerDeps {
  storage: Storage;
  room: WaitingRoom;
  logger: Logger;
  tickMs?: number;
}

/**
 * Moves every waiting room's line: frees the slots of admitted buyers whose purchase reached a final
 * status (read with Storage.getStatuses, whatever made it final) or whose admission expired, tells the line
 * when nothing is left to admit anyone to, then lets the room admit from the front. Every worker runs one:
 * each step is one transaction that locks its line, so steps of several processes take turns and none is
 * lost when a process dies (the next step of any worker does the work).
 */
export function startRoomTicker({ storage, room, logger, tickMs = TICK_MS }: TickerDeps): {
  stop(): Promise<void>;
} {
  let stopped = false;
  let failing = false;
  const running = (async () => {
    while (!stopped) {
      try {
        for (const eventId of await room.movingLines()) {
          if (stopped) break;
          await tickLine(storage, room, eventId, Date.now());
        }
        if (failing) logger.info('waiting-room ticker recovered');
        failing = false;
      } catch (error) {
        if (!failing) logger.warn({ err: error }, 'waiting-room ticker failed; retrying');
        failing = true;
      }
      await new Promise((resolve) => setTimeout(resolve, tickMs));
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await running;
    },
  };
}

/** One step of one line (exported for tests). */
export async function tickLine(storage: Storage, room: WaitingRoom, eventId: string, now: number) {
  const active = await room.activeAdmissions(eventId);
  const statuses = await storage.getStatuses(active.flatMap((a) => a.purchaseIds));
  const release = active
    .filter(
      (a) =>
        Date.parse(a.admissionExpiresAt) <= now ||
        a.purchaseIds.some((id) => {
          const status = statuses.get(id)?.status;
          return status !== undefined && FINAL_STATUSES.has(status);
        }),
    )
    .map((a) => a.placeId);
  const stats = await storage.getStats(eventId);
  const soldOut = stats !== null && nothingLeft(stats.ticketTypes);
  const result = await room.advance(eventId, { now, release, soldOut });
  if (result) observeRoomStep(result.admitted, result.expired);
  return result;
}
