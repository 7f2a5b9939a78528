import type { Pool } from 'undici';
import { requests } from '../client/index.js';
import { playRole, poolSender, politely, roleOf, type CheckoutMix, type Role } from './checkout.js';
import type { FinalPurchase } from './invariants.js';

/** Follows a purchase until `until` says (default: a final status); what was last seen (null: never found). */
export type Follow = (id: string, until?: (p: FinalPurchase) => boolean) => Promise<FinalPurchase | null>;

const FINAL = new Set(['confirmed', 'rejected', 'expired', 'cancelled']);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** What the simulator saw of one purchase at checkout, for the report. */
export interface Trail {
  role: Role;
  /** Seen waitlisted, and seen held (or ended in a way only a hold ends: paid, expired). */
  waitlisted: boolean;
  held: boolean;
  declinedShown: boolean;
  approved3ds: boolean;
  /** When the simulator first saw it final (clock()), null if never. */
  finalAt: number | null;
}

/** Purchases are found final this often while their holds run out. */
const PARKED_POLL_MS = 500;

/**
 * Following with a buyer mix: each accepted purchase is followed until it is held (then its buyer plays the
 * role the mix gives it) or final. A buyer who abandons does not wait for the hold to run out: the purchase
 * is parked and read again once every other purchase was followed (settleParked), so that abandoned holds
 * do not hold the followers up.
 */
export function followAtCheckout(opts: {
  mix: CheckoutMix;
  pool: Pool;
  url: string;
  follow: Follow;
  /** The simulator's clock (play.ts), that the report's times are on. */
  clock: () => number;
}) {
  const { clock } = opts;
  const origin = new URL(opts.url).origin;
  const base = new URL(opts.url).pathname.replace(/\/$/, '');
  const send = politely(poolSender(opts.pool, base), 50);
  const trails = new Map<string, Trail>();
  const parked = new Map<string, (final: FinalPurchase | null) => void>();

  const note = (trail: Trail, p: FinalPurchase) => {
    if (p.status === 'waitlisted') trail.waitlisted = true;
    if (p.status === 'held' || p.status === 'confirmed' || p.status === 'expired') trail.held = true;
    if (FINAL.has(p.status) && trail.finalAt === null) trail.finalAt = clock();
  };

  /** Follows `id` to its end, playing its role once held; `settle` gets it final (or as last seen). */
  async function follow(id: string, settle: (final: FinalPurchase | null) => void): Promise<void> {
    const trail: Trail = {
      role: roleOf(id, opts.mix),
      waitlisted: false,
      held: false,
      declinedShown: false,
      approved3ds: false,
      finalAt: null,
    };
    trails.set(id, trail);
    const seen = await opts.follow(id, (p) => {
      note(trail, p);
      return FINAL.has(p.status) || p.status === 'held';
    });
    if (seen?.status !== 'held') return settle(seen);
    const outcome = await playRole({ send, origin }, id, trail.role);
    trail.declinedShown = outcome.declinedShown;
    trail.approved3ds = outcome.approved3ds;
    if (outcome.purchase) note(trail, outcome.purchase);
    if (trail.role === 'abandon') {
      parked.set(id, settle);
      return;
    }
    if (outcome.purchase && FINAL.has(outcome.purchase.status)) return settle(outcome.purchase);
    // 3-D Secure finishes by the provider's webhook; a failed payment leaves it held until it expires.
    const final = await opts.follow(id, (p) => {
      note(trail, p);
      return FINAL.has(p.status);
    });
    settle(final);
  }

  /** Reads the parked purchases again until each is final or the deadline passes. */
  async function settleParked(deadline: () => number): Promise<void> {
    while (parked.size > 0) {
      const ids = [...parked.keys()];
      let next = 0;
      const lane = async () => {
        while (next < ids.length) {
          const id = ids[next++]!;
          const answer = await send(requests.getPurchase(id));
          const p = answer.status === 200 ? (answer.body as FinalPurchase) : null;
          if (p) note(trails.get(id)!, p);
          if ((p && FINAL.has(p.status)) || clock() > deadline()) {
            parked.get(id)!(p);
            parked.delete(id);
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(32, ids.length) }, lane));
      if (parked.size > 0) await sleep(PARKED_POLL_MS);
    }
  }

  return { follow, settleParked, trails };
}
