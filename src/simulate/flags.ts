import type { Arrival } from './crowd.js';

/**
 * The flags of `onsale simulate` once parsed and checked (command.ts), as the command's action hands them
 * to the simulator (report.ts). Apart from both so that the command, which loads the simulator only when
 * it runs, and the simulator do not import each other.
 */
export interface SimulateFlags {
  url: string;
  adminToken?: string;
  event?: string;
  buyers: number;
  repeat: number;
  arrival: Arrival;
  duration: number;
  ticketTypes: number;
  tickets?: number;
  maxPerBuyer: number;
  maxQuantity: number;
  connections: number;
  followers: number;
  follow: 'poll' | 'sse';
  settle: number;
  retries: number;
  seed: number;
  processes: number;
  /** The crowd joins the event's waiting room first (waiting-room.ts); the flags below shape the room. */
  waitingRoom?: boolean;
  maxActiveBuyers: number;
  maxAdmittedPerMinute?: number;
  prequeue: number;
  sessionSeconds: number;
  abandonPlaceRate: number;
  holdSeconds?: number;
  priceCents?: number;
  payRate?: number;
  declineRate?: number;
  threeDsRate?: number;
  cancelRate?: number;
  abandonRate?: number;
  reportJson?: string;
  reportHtml?: string;
}
