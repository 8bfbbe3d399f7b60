/** @module http/idempotency — Idempotency-Key handling: a retried request is counted once. */
import { isTallyError, storeUnavailable, TallyError } from '../errors.js';
import type { Store } from '../store/interface.js';

/** An answer to replay for a duplicate request. */
export interface SavedAnswer {
  readonly status: number;
  readonly body: unknown;
}

/** Options for {@link IdempotencyKeys}. */
export interface IdempotencyOptions {
  /** How long a completed key is remembered, in ms. @default 86400000 (24 h) */
  readonly ttlMs?: number;
  /**
   * How long a claim lasts before its answer is saved, in ms. If this process dies mid-request,
   * a retry after the lease is processed afresh. @default 60000
   */
  readonly leaseMs?: number;
  /**
   * Most live keys in the store; a new key past it is IDEMPOTENCY_KEYS_FULL (records cost store
   * memory, docs/redis.md). @default 100000
   */
  readonly maxKeys?: number;
}

const KEY_RE = /^[\x20-\x7e]{1,255}$/;

/** Validates the header: 1-255 printable ASCII characters. */
export function parseIdempotencyKey(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (typeof header !== 'string' || !KEY_RE.test(header)) {
    throw new TallyError(
      'INVALID_HEADER',
      'Idempotency-Key must be 1-255 printable ASCII characters, sent once',
    );
  }
  return header;
}

/**
 * Claims keys in the store, so a retry landing on another instance that shares the store is
 * recognised too.
 */
export class IdempotencyKeys {
  private readonly ttlMs: number;
  private readonly leaseMs: number;
  private readonly maxKeys: number;

  constructor(
    private readonly store: Pick<Store, 'claimKey' | 'completeKey' | 'releaseKey'>,
    options: IdempotencyOptions = {},
  ) {
    this.ttlMs = options.ttlMs ?? 24 * 60 * 60 * 1000;
    this.leaseMs = options.leaseMs ?? 60_000;
    this.maxKeys = options.maxKeys ?? 100_000;
  }

  /**
   * Runs `work` once per key. A duplicate gets the first answer back (`replayed: true`); a key
   * reused for a different request is IDEMPOTENCY_KEY_REUSED; one still running is
   * IDEMPOTENCY_IN_PROGRESS. If `work` fails before the increment is accepted, the claim is
   * dropped so a retry can succeed. If it fails with NOT_CONFIRMED, the increment is held and
   * will be applied once, so the key keeps it: `accepted()` is saved as the answer a retry gets.
   */
  async run(
    key: string,
    fingerprint: string,
    work: () => Promise<SavedAnswer>,
    accepted: () => SavedAnswer,
  ): Promise<SavedAnswer & { replayed: boolean }> {
    const claim = await this.call(() =>
      this.store.claimKey(key, fingerprint, this.leaseMs, this.maxKeys),
    );
    if (claim.full) {
      throw new TallyError('IDEMPOTENCY_KEYS_FULL', undefined, { retryAfterS: 60 });
    }
    if (!claim.fresh) {
      if (claim.fingerprint !== fingerprint) throw new TallyError('IDEMPOTENCY_KEY_REUSED');
      if (claim.result === null)
        throw new TallyError('IDEMPOTENCY_IN_PROGRESS', undefined, { retryAfterS: 1 });
      const saved = JSON.parse(claim.result) as SavedAnswer;
      return { ...saved, replayed: true };
    }
    let answer: SavedAnswer;
    try {
      answer = await work();
    } catch (err) {
      if (isTallyError(err) && err.code === 'NOT_CONFIRMED') {
        await this.save(key, accepted());
      } else {
        await this.store.releaseKey(key).catch(() => undefined);
      }
      throw err;
    }
    await this.save(key, answer);
    return { ...answer, replayed: false };
  }

  /** The increment is accepted; failing to save the answer only shortens the window to the lease. */
  private async save(key: string, answer: SavedAnswer): Promise<void> {
    await this.store.completeKey(key, JSON.stringify(answer), this.ttlMs).catch(() => undefined);
  }

  private async call<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      throw storeUnavailable(err, 'Idempotency keys need the store, which is unavailable');
    }
  }
}
