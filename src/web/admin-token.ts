import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { OnsaleError } from '../domain/errors.js';

/**
 * An onRequest hook that refuses with 401 any request without `Authorization: Bearer <admin token>`. It runs
 * before the body is read or anything is validated, so that without the token the answer never describes
 * the input. The digests make the comparison take the same time whatever was sent.
 */
export function requireAdminToken(adminToken: string): (request: FastifyRequest) => Promise<void> {
  const tokenDigest = createHash('sha256').update(adminToken).digest();
  return async (request) => {
    const header = request.headers.authorization ?? '';
    const match = /^Bearer (.+)$/.exec(header);
    const given = createHash('sha256')
      .update(match?.[1] ?? '')
      .digest();
    if (!match || !timingSafeEqual(given, tokenDigest)) {
      throw new OnsaleError('unauthorized', 'this endpoint needs Authorization: Bearer <admin token>');
    }
  };
}
