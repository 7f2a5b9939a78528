import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  CHALLENGE_SECONDS,
  challengeProblem,
  solves,
  type ChallengeClaims,
} from '../domain/proof-of-work.js';

/** A challenge as handed to a buyer: what to solve, how hard, until when. */
export interface Challenge {
  challenge: string;
  difficulty: number;
  expiresAt: string;
}

/** Challenges remembered as used, per process: past this many the oldest are forgotten early. */
const MAX_USED = 200_000;

const sha256 = (text: string): Uint8Array => createHash('sha256').update(text).digest();

/**
 * Hands out and checks the proof-of-work challenges of waiting rooms, with no database read: a challenge is
 * `base64url(JSON [eventId, canonical buyer id, difficulty, expiresAt, nonce]).base64url(HMAC-SHA256)`,
 * keyed like admission tokens (from the admin token, with a label of its own), so every web server checks
 * what any of them signed. A challenge is accepted once per process; a replay on another web server can
 * only give its buyer back the place they already have.
 */
export class ChallengeSigner {
  readonly #key: Buffer;
  readonly #used = new Map<string, number>();

  constructor(adminToken: string) {
    this.#key = createHmac('sha256', adminToken).update('onsale proof-of-work challenge key v1').digest();
  }

  issue(eventId: string, canonicalBuyerId: string, difficulty: number, now = Date.now()): Challenge {
    const expiresAt = now + CHALLENGE_SECONDS * 1000;
    const nonce = randomBytes(12).toString('base64url');
    const payload = Buffer.from(
      JSON.stringify([eventId, canonicalBuyerId, difficulty, expiresAt, nonce]),
    ).toString('base64url');
    return {
      challenge: `${payload}.${this.#mac(payload).toString('base64url')}`,
      difficulty,
      expiresAt: new Date(expiresAt).toISOString(),
    };
  }

  /**
   * Why `proof` does not let this buyer join now, or null when it does (and the challenge is then used).
   * `difficulty` is what the room asks now.
   */
  check(
    proof: { challenge: string; solution: string } | undefined,
    join: { eventId: string; canonicalBuyerId: string; difficulty: number; now?: number },
  ): string | null {
    if (!proof) return 'this waiting room asks for a proof of work: ask for a challenge and solve it';
    const now = join.now ?? Date.now();
    const claims = this.#claims(proof.challenge);
    if (!claims) return 'the challenge was not handed out by this site';
    const problem = challengeProblem(claims, { ...join, now });
    if (problem) return problem;
    if (!solves(proof.challenge, proof.solution, claims.difficulty, sha256)) {
      return 'the solution does not solve the challenge';
    }
    this.#sweep(now);
    if (this.#used.has(proof.challenge)) return 'the challenge was used already; ask for a new one';
    this.#used.set(proof.challenge, claims.expiresAt);
    return null;
  }

  #claims(challenge: string): ChallengeClaims | null {
    const dot = challenge.indexOf('.');
    if (dot <= 0 || challenge.length > 1024) return null;
    const payload = challenge.slice(0, dot);
    const mac = Buffer.from(challenge.slice(dot + 1), 'base64url');
    const expected = this.#mac(payload);
    if (mac.length !== expected.length || !timingSafeEqual(mac, expected)) return null;
    const fields = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as unknown[];
    const [eventId, canonicalBuyerId, difficulty, expiresAt] = fields;
    if (typeof eventId !== 'string' || typeof canonicalBuyerId !== 'string') return null;
    if (typeof difficulty !== 'number' || typeof expiresAt !== 'number') return null;
    return { eventId, canonicalBuyerId, difficulty, expiresAt };
  }

  /** Forgets challenges past their expiry (they are refused as expired from then on anyway). */
  #sweep(now: number): void {
    if (this.#used.size < MAX_USED && this.#used.size % 1000 !== 999) return;
    for (const [challenge, expiresAt] of this.#used) {
      if (expiresAt <= now || this.#used.size >= MAX_USED) this.#used.delete(challenge);
    }
  }

  #mac(payload: string): Buffer {
    return createHmac('sha256', this.#key).update(payload).digest();
  }
}
