/** @module http/auth — admin bearer token check, constant time, closed when unset. */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { TallyError } from '../errors.js';

/** Returns a check that throws ADMIN_DISABLED (no token configured) or UNAUTHORIZED. */
export function adminGuard(token: string | undefined): (request: FastifyRequest) => void {
  // Compare digests: equal lengths for timingSafeEqual, and no leak of the token's length.
  const expected = token === undefined ? undefined : digest(token);
  return (request) => {
    if (expected === undefined) throw new TallyError('ADMIN_DISABLED');
    const header = request.headers.authorization;
    const given =
      typeof header === 'string' && header.startsWith('Bearer ') ? header.slice(7).trim() : '';
    if (!timingSafeEqual(digest(given), expected)) throw new TallyError('UNAUTHORIZED');
  };
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}
