import { createHash } from 'node:crypto';
import { solves } from '../../src/domain/proof-of-work.js';

export const sha256 = (text: string): Uint8Array => createHash('sha256').update(text).digest();

/** The page's search (public/buyer.js), in Node: the first base-36 counter that solves the challenge. */
export function solve(challenge: string, difficulty: number): string {
  for (let n = 0; ; n++) {
    if (solves(challenge, n.toString(36), difficulty, sha256)) return n.toString(36);
  }
}
