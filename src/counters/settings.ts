/**
 * @module counters/settings — what `create` records about a counter and a namespace claim, and a
 * short-lived cache of them so keyed writes do not read the store every time.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { storeUnavailable } from '../errors.js';
import type { Store } from '../store/interface.js';

/** The settings of a created counter. Counters made by increments or `set` have none. */
export interface CounterSettings {
  /** When it was created, ms since the epoch. */
  readonly created: number;
  /** Keyless clients may set it (CountAPI's `enable_reset`). */
  readonly enableReset: boolean;
  /** Keyless increments may add any amount from `lowerBound` to `upperBound`. */
  readonly lowerBound: number;
  readonly upperBound: number;
  /** SHA-256 (hex) of the counter's admin key; the key itself is shown once and never kept. */
  readonly keyHash: string;
}

/** A claimed namespace: the hash of its namespace key. */
export interface NamespaceClaim {
  readonly created: number;
  readonly keyHash: string;
}

/** What keyless clients may do to a counter that was never created: add exactly 1. */
export const HIT_ONLY = { enableReset: false, lowerBound: 1, upperBound: 1 } as const;

/** A new secret key (admin or namespace): 32 random bytes, URL-safe. */
export function newKey(): string {
  return `tk_${randomBytes(32).toString('base64url')}`;
}

export function hashKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** True when `key` hashes to `hash` (constant time). */
export function keyMatches(key: string, hash: string): boolean {
  const given = Buffer.from(hashKey(key), 'hex');
  const expected = Buffer.from(hash, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export function encodeSettings(s: CounterSettings): string {
  return JSON.stringify({
    v: 1,
    created: s.created,
    reset: s.enableReset,
    lb: s.lowerBound,
    ub: s.upperBound,
    key: s.keyHash,
  });
}

export function decodeSettings(raw: string | null): CounterSettings | null {
  if (raw === null) return null;
  const o = JSON.parse(raw) as {
    created: number;
    reset: boolean;
    lb: number;
    ub: number;
    key: string;
  };
  return {
    created: o.created,
    enableReset: o.reset,
    lowerBound: o.lb,
    upperBound: o.ub,
    keyHash: o.key,
  };
}

/** How long a cached settings or namespace read is trusted, in ms. */
const CACHE_MS = 5000;
/** Cached entries at most; the oldest go first. */
const CACHE_MAX = 10_000;

/**
 * Reads settings and namespace claims through a cache of a few seconds. Settings never change
 * after `create` (only `delete` removes them), so the one stale case is a counter deleted or
 * created on another instance within the last few seconds; this instance's own creates and
 * deletes update the cache at once.
 */
export class SettingsCache {
  private readonly counters = new Map<string, { at: number; value: CounterSettings | null }>();
  private readonly namespaces = new Map<string, { at: number; value: NamespaceClaim | null }>();

  constructor(private readonly store: Store) {}

  async counter(name: string): Promise<CounterSettings | null> {
    const hit = this.counters.get(name);
    if (hit !== undefined && performance.now() - hit.at < CACHE_MS) return hit.value;
    const info = await this.store.describe(name).catch((err: unknown) => {
      throw storeUnavailable(err);
    });
    const value = decodeSettings(info?.meta ?? null);
    remember(this.counters, name, value);
    return value;
  }

  async namespace(namespace: string): Promise<NamespaceClaim | null> {
    const hit = this.namespaces.get(namespace);
    if (hit !== undefined && performance.now() - hit.at < CACHE_MS) return hit.value;
    const raw = await this.store.namespaceRecord(namespace).catch((err: unknown) => {
      throw storeUnavailable(err);
    });
    const value = raw === undefined ? null : (JSON.parse(raw) as NamespaceClaim);
    remember(this.namespaces, namespace, value);
    return value;
  }

  /** This instance created, claimed or deleted something: its next read is fresh. */
  forget(name: string): void {
    this.counters.delete(name);
  }

  forgetNamespace(namespace: string): void {
    this.namespaces.delete(namespace);
  }
}

function remember<T>(map: Map<string, { at: number; value: T }>, key: string, value: T): void {
  if (map.size >= CACHE_MAX) {
    const oldest = map.keys().next();
    if (oldest.done !== true) map.delete(oldest.value);
  }
  map.delete(key);
  map.set(key, { at: performance.now(), value });
}
