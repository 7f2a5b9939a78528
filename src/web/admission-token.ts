import { createHmac, timingSafeEqual } from 'node:crypto';

/** What an admission token says: this buyer may buy at this event until `expiresAt` (ms). */
export interface AdmissionClaims {
  eventId: string;
  canonicalBuyerId: string;
  placeId: string;
  expiresAt: number;
}

/**
 * Signs and verifies admission tokens with HMAC-SHA256, so that every web server verifies one without a
 * database read. The key is derived from the admin token (kept in the data folder or ONSALE_ADMIN_TOKEN,
 * shared by every process of a deployment already): changing the admin token voids every admission.
 * A token is `base64url(JSON claims).base64url(MAC)`.
 */
export class AdmissionSigner {
  readonly #key: Buffer;

  constructor(adminToken: string) {
    this.#key = createHmac('sha256', adminToken).update('onsale admission token key v1').digest();
  }

  sign(claims: AdmissionClaims): string {
    const payload = Buffer.from(
      JSON.stringify([claims.eventId, claims.canonicalBuyerId, claims.placeId, claims.expiresAt]),
    ).toString('base64url');
    return `${payload}.${this.#mac(payload).toString('base64url')}`;
  }

  /** The claims of a token this server signed, not expired at `now`; null for anything else. */
  verify(token: string, now = Date.now()): AdmissionClaims | null {
    const dot = token.indexOf('.');
    if (dot <= 0 || token.length > 1024) return null;
    const payload = token.slice(0, dot);
    const mac = Buffer.from(token.slice(dot + 1), 'base64url');
    const expected = this.#mac(payload);
    if (mac.length !== expected.length || !timingSafeEqual(mac, expected)) return null;
    let fields: unknown;
    try {
      fields = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    } catch {
      return null;
    }
    if (!Array.isArray(fields) || fields.length !== 4) return null;
    const [eventId, canonicalBuyerId, placeId, expiresAt] = fields as unknown[];
    if (typeof eventId !== 'string' || typeof canonicalBuyerId !== 'string') return null;
    if (typeof placeId !== 'string' || typeof expiresAt !== 'number') return null;
    if (expiresAt <= now) return null;
    return { eventId, canonicalBuyerId, placeId, expiresAt };
  }

  #mac(payload: string): Buffer {
    return createHmac('sha256', this.#key).update(payload).digest();
  }
}
