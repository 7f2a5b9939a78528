import type { Logger } from 'pino';
import type { Storage } from '../ports/storage.js';
import type { WaitingRoom } from '../ports/waiting-room.js';
import { FRESH_MS } from './shared-state.js';

/** Rooms of this many most recent events are shown, so that the number of series stays bounded. */
const ROOM_EVENTS = 10;
const STATES = ['prequeue', 'waiting', 'admitted', 'expired', 'sold_out'] as const;

interface RoomReading {
  event: string;
  places: Record<(typeof STATES)[number], number>;
  active: number;
}

/**
 * Gauges of the waiting rooms' lines, shared by every process like the queue's depth, so read once at
 * scrape time from the lines' counters (no count over places): places per state, and active buyers (admitted
 * and holding a slot). Every state of every shown room is exported, at 0 until it has places.
 */
export function roomStateMetrics(storage: Storage, room: WaitingRoom, logger: Logger): () => Promise<string> {
  let last: { at: number; reading: Promise<RoomReading[] | null> } | null = null;

  function reading(): Promise<RoomReading[] | null> {
    if (last && Date.now() - last.at < FRESH_MS) return last.reading;
    const next = read(storage, room).catch((error: unknown) => {
      logger.warn({ err: error }, 'metrics: cannot read the waiting rooms');
      return null;
    });
    last = { at: Date.now(), reading: next };
    return next;
  }

  return async () => {
    const rooms = await reading();
    if (!rooms || rooms.length === 0) return '';
    const places = [
      '# HELP onsale_room_places Places in each waiting room by state',
      '# TYPE onsale_room_places gauge',
    ];
    const active = [
      '# HELP onsale_room_active_buyers Admitted buyers holding a slot (purchase not final, admission not expired)',
      '# TYPE onsale_room_active_buyers gauge',
    ];
    for (const r of rooms) {
      for (const state of STATES)
        places.push(`onsale_room_places{event="${label(r.event)}",state="${state}"} ${r.places[state]}`);
      active.push(`onsale_room_active_buyers{event="${label(r.event)}"} ${r.active}`);
    }
    return `${places.join('\n')}\n${active.join('\n')}\n`;
  };
}

function label(value: string): string {
  return value.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n');
}

async function read(storage: Storage, room: WaitingRoom): Promise<RoomReading[]> {
  const events = [...(await storage.listEvents())]
    .sort((a, b) => (a.salesOpenAt < b.salesOpenAt ? 1 : a.salesOpenAt > b.salesOpenAt ? -1 : 0))
    .slice(0, ROOM_EVENTS);
  const readings: RoomReading[] = [];
  for (const summary of events) {
    const event = await storage.getEvent(summary.id);
    if (!event?.waitingRoom) continue;
    const line = await room.getLine(event.id);
    const waiting = line && line.opened ? line.tail - line.head : 0;
    readings.push({
      event: event.id,
      places: {
        prequeue: line && !line.opened ? line.prequeued : 0,
        waiting: line?.soldOut ? 0 : waiting,
        admitted: line?.admitted ?? 0,
        expired: line?.expired ?? 0,
        sold_out: line?.soldOut ? waiting : 0,
      },
      active: line?.active ?? 0,
    });
  }
  return readings;
}
