/**
 * @module http/access — who may write a counter: the server-wide admin token, the counter's own
 * admin key, its namespace's key, or (within limits) anyone.
 *
 * The hot case (a keyless +1) is decided without I/O or a promise; any other case reads the
 * counter's settings or its namespace claim through the settings cache.
 */
import type { FastifyRequest } from 'fastify';
import {
  type CounterSettings,
  hashKey,
  keyMatches,
  type SettingsCache,
} from '../counters/settings.js';
import { splitName } from '../domain.js';
import { TallyError } from '../errors.js';

/**
 * What keyless clients may write. `hits`: add 1 (or what a created counter's update bounds
 * allow), no batches, no other writes. `open`: increments of any amount and batches.
 */
export type PublicWrites = 'hits' | 'open';

/**
 * TALLY_PUBLIC_WRITES: `auto` is `open` on a private server (loopback only, no trusted proxy),
 * `hits` otherwise.
 */
export function publicWritesFor(
  setting: 'auto' | PublicWrites,
  host: string,
  trustProxy: unknown,
): PublicWrites {
  if (setting !== 'auto') return setting;
  return isPrivate(host, trustProxy) ? 'open' : 'hits';
}

/**
 * True for a server only its own machine reaches: bound to loopback, and not behind a proxy it
 * trusts (a reverse proxy on the same host brings the internet to a loopback address, and
 * TALLY_TRUST_PROXY says one is there).
 */
export function isPrivate(host: string, trustProxy: unknown): boolean {
  const loopback =
    host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
  return loopback && trustProxy === false;
}

/** The key a request presents: `Authorization: Bearer …`, else undefined. */
export function bearerOf(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (typeof header !== 'string' || !header.startsWith('Bearer ')) return undefined;
  const key = header.slice(7).trim();
  return key === '' ? undefined : key;
}

export class Access {
  /** SHA-256 of TALLY_ADMIN_TOKEN, compared like every other key (constant time). */
  private readonly admin: string | undefined;

  constructor(
    adminToken: string | undefined,
    private readonly settings: SettingsCache,
    readonly publicWrites: PublicWrites,
  ) {
    this.admin = adminToken === undefined ? undefined : hashKey(adminToken);
  }

  /** True when `key` is the server-wide admin token. */
  isAdmin(key: string | undefined): boolean {
    return key !== undefined && this.admin !== undefined && keyMatches(key, this.admin);
  }

  /**
   * Throws unless the request may add `by` to counter `name`: as the holder of `key`, or as
   * anyone (a key that covers nothing leaves the request what a keyless one may do). Returns
   * nothing for a keyless +1 (no promise on the hot path), else a promise of whether the key
   * proved ownership (false: allowed as anyone, so the public rate limit applies).
   */
  increment(key: string | undefined, name: string, by: number): Promise<boolean> | undefined {
    if (key === undefined) {
      if (by === 1 || this.publicWrites === 'open') return undefined;
      return this.publicly(name, by).then((ok) => {
        if (!ok) throw new TallyError('KEY_REQUIRED');
        return false;
      });
    }
    return this.owner(key, name).then(
      () => true,
      async (err: unknown) => {
        if (!(err instanceof TallyError) || err.status >= 500) throw err;
        if (await this.publicly(name, by)) return false;
        throw err;
      },
    );
  }

  /** True when anyone may add `by` to `name`: 1, within a created counter's bounds, or open. */
  private async publicly(name: string, by: number): Promise<boolean> {
    if (by === 1 || this.publicWrites === 'open') return true;
    const s = await this.settings.counter(name);
    return s !== null && by >= s.lowerBound && by <= s.upperBound;
  }

  /**
   * Throws unless the request may send a batch of increments to all of `names`; resolves with
   * whether the key proved ownership (false: allowed as anyone, under the public rate limit).
   */
  async batch(key: string | undefined, names: Iterable<string>): Promise<boolean> {
    if (key !== undefined) {
      try {
        if (this.isAdmin(key)) return true;
        for (const name of new Set(names)) await this.owner(key, name);
        return true;
      } catch (err) {
        if (!(err instanceof TallyError) || err.status >= 500 || this.publicWrites !== 'open') {
          throw err;
        }
        return false;
      }
    }
    if (this.publicWrites === 'open') return false;
    throw new TallyError('KEY_REQUIRED', 'Batches need a key (or TALLY_PUBLIC_WRITES=open)');
  }

  /**
   * Throws unless `key` may set, reset or delete `name`: the admin token, the counter's key or
   * its namespace's key. `resettable`: a set is allowed to anyone on a counter created with
   * `enable_reset`. Counters without settings in an unclaimed namespace answer as they always
   * did: ADMIN_DISABLED without an admin token, UNAUTHORIZED with one.
   */
  async owner(key: string | undefined, name: string, resettable = false): Promise<void> {
    if (this.isAdmin(key)) return;
    const { covered, settings, keyed } = await this.keysOf(key, name);
    if (covered) return;
    // What anyone may do, whether the request has no key or one that covers nothing.
    if (resettable && settings?.enableReset === true) return;
    if (!keyed) {
      if (this.admin === undefined && key === undefined) throw new TallyError('ADMIN_DISABLED');
      throw new TallyError('UNAUTHORIZED');
    }
    throw new TallyError(key === undefined ? 'KEY_REQUIRED' : 'FORBIDDEN');
  }

  /**
   * How `key` stands to the keys of counter `name` (its own admin key and its namespace's key;
   * the server-wide token is the caller's to check): `covered` when it matches one, `keyed` when
   * the counter has either at all, and the counter's settings.
   */
  async keysOf(
    key: string | undefined,
    name: string,
  ): Promise<{ covered: boolean; keyed: boolean; settings: CounterSettings | null }> {
    const settings = await this.settings.counter(name);
    if (key !== undefined && settings !== null && keyMatches(key, settings.keyHash)) {
      return { covered: true, keyed: true, settings };
    }
    const claim = await this.settings.namespace(splitName(name).namespace);
    const covered = key !== undefined && claim !== null && keyMatches(key, claim.keyHash);
    return { covered, keyed: settings !== null || claim !== null, settings };
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
