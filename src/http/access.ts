/**
 * @module http/access — who may write a counter: the server-wide admin token, the counter's own
 * admin key, its namespace's key, or (within limits) anyone.
 *
 * The hot case (a keyless +1) is decided without I/O or a promise; any other case reads the
 * counter's settings or its namespace claim through the settings cache.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { keyMatches, type SettingsCache } from '../counters/settings.js';
import { splitName } from '../domain.js';
import { TallyError } from '../errors.js';

/**
 * What keyless clients may write. `hits`: add 1 (or what a created counter's update bounds
 * allow), no batches, no other writes. `open`: increments of any amount and batches.
 */
export type PublicWrites = 'hits' | 'open';

/** TALLY_PUBLIC_WRITES: `auto` is `open` on a loopback-only server, `hits` otherwise. */
export function publicWritesFor(setting: 'auto' | PublicWrites, host: string): PublicWrites {
  if (setting !== 'auto') return setting;
  return isLoopback(host) ? 'open' : 'hits';
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/** The key a request presents: `Authorization: Bearer …`, else undefined. */
export function bearerOf(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (typeof header !== 'string' || !header.startsWith('Bearer ')) return undefined;
  const key = header.slice(7).trim();
  return key === '' ? undefined : key;
}

export class Access {
  private readonly admin: Buffer | undefined;

  constructor(
    adminToken: string | undefined,
    private readonly settings: SettingsCache,
    readonly publicWrites: PublicWrites,
  ) {
    // Digests: equal lengths for timingSafeEqual, and no leak of the token's length.
    this.admin = adminToken === undefined ? undefined : digest(adminToken);
  }

  /** True when `key` is the server-wide admin token. */
  isAdmin(key: string | undefined): boolean {
    return (
      key !== undefined && this.admin !== undefined && timingSafeEqual(digest(key), this.admin)
    );
  }

  /**
   * Throws unless `key` (undefined: none given) may add `by` to counter `name`. Returns nothing
   * for a keyless +1 (no promise on the hot path), else a promise.
   */
  increment(key: string | undefined, name: string, by: number): Promise<void> | undefined {
    if (key === undefined) {
      if (by === 1 || this.publicWrites === 'open') return undefined;
      return this.settings.counter(name).then((s) => {
        if (s === null || by < s.lowerBound || by > s.upperBound)
          throw new TallyError('KEY_REQUIRED');
      });
    }
    return this.owner(key, name);
  }

  /** Throws unless `key` may send a batch of increments to all of `names`. */
  async batch(key: string | undefined, names: Iterable<string>): Promise<void> {
    if (key === undefined) {
      if (this.publicWrites === 'open') return;
      throw new TallyError('KEY_REQUIRED', 'Batches need a key (or TALLY_PUBLIC_WRITES=open)');
    }
    if (this.isAdmin(key)) return;
    for (const name of new Set(names)) await this.owner(key, name);
  }

  /**
   * Throws unless `key` may set, reset or delete `name`: the admin token, the counter's key or
   * its namespace's key. `resettable`: a keyless set is allowed on a counter created with
   * `enable_reset`. Counters without settings in an unclaimed namespace answer as they always
   * did: ADMIN_DISABLED without an admin token, UNAUTHORIZED with one.
   */
  async owner(key: string | undefined, name: string, resettable = false): Promise<void> {
    if (this.isAdmin(key)) return;
    const settings = await this.settings.counter(name);
    if (key === undefined && resettable && settings?.enableReset === true) return;
    if (key !== undefined && settings !== null && keyMatches(key, settings.keyHash)) return;
    const claim = await this.settings.namespace(splitName(name).namespace);
    if (key !== undefined && claim !== null && keyMatches(key, claim.keyHash)) return;
    if (settings === null && claim === null) {
      if (this.admin === undefined && key === undefined) throw new TallyError('ADMIN_DISABLED');
      throw new TallyError('UNAUTHORIZED');
    }
    throw new TallyError(key === undefined ? 'KEY_REQUIRED' : 'FORBIDDEN');
  }

  /** Throws unless `key` may create counters in `namespace`: anyone, unless it is claimed. */
  async create(key: string | undefined, namespace: string): Promise<void> {
    if (this.isAdmin(key)) return;
    const claim = await this.settings.namespace(namespace);
    if (claim === null) return;
    if (key === undefined) throw new TallyError('KEY_REQUIRED');
    if (!keyMatches(key, claim.keyHash)) throw new TallyError('FORBIDDEN');
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}
