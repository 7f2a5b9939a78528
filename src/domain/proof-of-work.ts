/**
 * The proof of work asked of a buyer joining a waiting room whose event sets `powDifficulty`: find a
 * `solution` such that SHA-256 of `<challenge>:<solution>` starts with `difficulty` zero bits. Each bit
 * doubles the expected work (2^difficulty hashes), so one machine cannot take thousands of places cheaply,
 * while a person's browser solves one in about a second. Pure: the caller passes the digest function.
 */

/** The difficulty of a room asking for no proof of work. */
export const NO_PROOF = 0;
/** The hardest difficulty an organizer may set: 2^30 hashes is minutes of a browser's time. */
export const MAX_DIFFICULTY = 30;
/** About a second of a browser's WebCrypto on a laptop (see docs/waiting-room.md). */
export const SUGGESTED_DIFFICULTY = 16;
/** How long a challenge may be used after it was handed out. */
export const CHALLENGE_SECONDS = 120;

/** A solution is a short counter in base 36, as the page counts. */
const SOLUTION = /^[0-9a-z]{1,16}$/;

/** The zero bits a digest starts with. */
export function leadingZeroBits(digest: Uint8Array): number {
  let bits = 0;
  for (const byte of digest) {
    if (byte === 0) {
      bits += 8;
      continue;
    }
    return bits + Math.clz32(byte) - 24;
  }
  return bits;
}

/** Whether `solution` solves `challenge` at `difficulty`, with `sha256` the digest of a UTF-8 text. */
export function solves(
  challenge: string,
  solution: string,
  difficulty: number,
  sha256: (text: string) => Uint8Array,
): boolean {
  if (!SOLUTION.test(solution)) return false;
  return leadingZeroBits(sha256(`${challenge}:${solution}`)) >= difficulty;
}

/** What a challenge says: for this event and buyer, at this difficulty, until `expiresAt` (ms). */
export interface ChallengeClaims {
  eventId: string;
  canonicalBuyerId: string;
  difficulty: number;
  expiresAt: number;
}

/**
 * Why a challenge whose signature holds does not let this buyer join, or null when it does: it must be
 * for this event and buyer, not expired, and at least as hard as the room asks now.
 */
export function challengeProblem(
  claims: ChallengeClaims,
  join: { eventId: string; canonicalBuyerId: string; difficulty: number; now: number },
): string | null {
  if (claims.eventId !== join.eventId) return 'the challenge is for another event';
  if (claims.canonicalBuyerId !== join.canonicalBuyerId) return 'the challenge is for another buyer';
  if (claims.expiresAt <= join.now) return 'the challenge has expired; ask for a new one';
  if (claims.difficulty < join.difficulty) return 'the room asks for more work now; ask for a new challenge';
  return null;
}
