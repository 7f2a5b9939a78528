import { describe, expect, it } from 'vitest';
import { CHALLENGE_SECONDS, leadingZeroBits, solves } from '../src/domain/proof-of-work.js';
import { ChallengeSigner } from '../src/web/pow-challenge.js';
import { sha256, solve } from './helpers/pow.js';

describe('proof of work: the rule', () => {
  it('counts leading zero bits', () => {
    expect(leadingZeroBits(new Uint8Array([0xff]))).toBe(0);
    expect(leadingZeroBits(new Uint8Array([0x01, 0xff]))).toBe(7);
    expect(leadingZeroBits(new Uint8Array([0x00, 0x20]))).toBe(10);
    expect(leadingZeroBits(new Uint8Array([0, 0]))).toBe(16);
  });

  it('accepts a solution only when its digest starts with enough zero bits, and only a short counter', () => {
    const solution = solve('abc', 12);
    expect(leadingZeroBits(sha256(`abc:${solution}`))).toBeGreaterThanOrEqual(12);
    expect(solves('abc', solution, 12, sha256)).toBe(true);
    // Another challenge with the same solution almost never has 12 zero bits (1 in 4096).
    expect(solves('abd', solution, 12, sha256)).toBe(leadingZeroBits(sha256(`abd:${solution}`)) >= 12);
    const failing = ['0', '1', '2', '3', '4', '5'].find((s) => leadingZeroBits(sha256(`abc:${s}`)) < 12)!;
    expect(solves('abc', failing, 12, sha256)).toBe(false);
    expect(solves('abc', 'NOT-BASE36', 0, sha256)).toBe(false);
    expect(solves('abc', '', 0, sha256)).toBe(false);
  });
});

describe('proof of work: challenges', () => {
  const signer = new ChallengeSigner('x'.repeat(40));
  const now = Date.parse('2030-01-01T12:00:00Z');
  const join = { eventId: 'ev1', canonicalBuyerId: 'ann@example.com', difficulty: 10, now };

  it('accepts the right solution once, for its event and buyer, before it expires', () => {
    const { challenge, difficulty, expiresAt } = signer.issue('ev1', 'ann@example.com', 10, now);
    expect(difficulty).toBe(10);
    expect(Date.parse(expiresAt)).toBe(now + CHALLENGE_SECONDS * 1000);
    const solution = solve(challenge, 10);
    const proof = { challenge, solution };
    expect(signer.check({ ...proof }, { ...join, canonicalBuyerId: 'bob@example.com' })).toMatch(
      /another buyer/,
    );
    expect(signer.check(proof, { ...join, eventId: 'ev2' })).toMatch(/another event/);
    expect(signer.check(proof, { ...join, now: now + CHALLENGE_SECONDS * 1000 })).toMatch(/expired/);
    expect(signer.check(proof, { ...join, difficulty: 11 })).toMatch(/more work/);
    expect(signer.check(proof, join)).toBeNull();
    expect(signer.check(proof, join)).toMatch(/used already/);
  });

  it('refuses a wrong solution, a missing proof, and forged or altered challenges', () => {
    const { challenge } = signer.issue('ev1', 'ann@example.com', 10, now);
    const right = solve(challenge, 10);
    const wrong = ['0', '1', '2', '3', '4', '5'].find(
      (s) => s !== right && leadingZeroBits(sha256(`${challenge}:${s}`)) < 10,
    )!;
    expect(signer.check({ challenge, solution: wrong }, join)).toMatch(/does not solve/);
    expect(signer.check(undefined, join)).toMatch(/asks for a proof of work/);
    // Signed by another key (another deployment's admin token).
    const foreign = new ChallengeSigner('y'.repeat(40)).issue('ev1', 'ann@example.com', 0, now).challenge;
    expect(signer.check({ challenge: foreign, solution: '0' }, join)).toMatch(/not handed out/);
    // The claims changed (an easier difficulty), the signature kept.
    const [payload, mac] = challenge.split('.') as [string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as unknown[];
    claims[2] = 0;
    const altered = `${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${mac}`;
    expect(signer.check({ challenge: altered, solution: '0' }, join)).toMatch(/not handed out/);
    expect(signer.check({ challenge: 'garbage', solution: '0' }, join)).toMatch(/not handed out/);
    // The right solution still works: the refusals above did not use the challenge.
    expect(signer.check({ challenge, solution: right }, join)).toBeNull();
  });
});
