/**
 * @module store/interface — the only contract between Tally and its storage.
 *
 * Rule: nothing outside `store/` touches a SQLite or Redis client. Everything above sees counters,
 * batches and values.
 */

/**
 * One flush from one writer. `seq` grows by exactly one per batch from a writer, and a writer has
 * at most one batch in flight, so a store remembers only the last applied seq.
 */
export interface Batch {
  /**
   * Writer id: the instance id and the epoch of its claim, `<instanceId>@<epoch>` (see
   * `claimInstance`), so two processes never share a seq space. Stores treat it as an opaque key
   * of its own seq; `@` never occurs in an instance id, so writer ids never collide with them.
   */
  readonly instanceId: string;
  /** Batch sequence number of that writer, starting at 1. */
  readonly seq: number;
  /** Counter name → delta (non-zero integers). */
  readonly deltas: ReadonlyMap<string, number>;
  /**
   * When the batch was cut, ms since the epoch: the time its history buckets are counted at
   * (store/history.ts). Part of the batch's identity: a retry or a replay carries the same one.
   */
  readonly at?: number;
}

/** What applying a batch did. */
export interface BatchResult {
  /** Stored value of every counter in the batch right after it (current value if duplicate). */
  readonly values: Map<string, number>;
  /** True when `(instanceId, seq)` had been applied before: nothing changed this time. */
  readonly duplicate: boolean;
  /** Counters whose delta was refused because the value would leave ±(2^53-1). */
  readonly rejected: readonly string[];
}

/** One counter and its stored value. */
export interface CounterValue {
  readonly name: string;
  readonly value: number;
}

/** Options for listing counters. */
export interface ListOptions {
  /** Only names starting with this. @default '' */
  readonly prefix?: string;
  /** Page size, 1-1000. @default 100 */
  readonly limit?: number;
  /** Opaque cursor from the previous page's `nextCursor`. */
  readonly cursor?: string;
}

export interface ListPage {
  readonly items: CounterValue[];
  /** Pass back as `cursor` for the next page; null on the last page. */
  readonly nextCursor: string | null;
}

/** What claiming an idempotency key found. */
export type KeyClaim =
  | { readonly fresh: true; readonly full?: undefined }
  | {
      readonly fresh: false;
      readonly full?: undefined;
      /** What the first request with this key was (counter, amount, route). */
      readonly fingerprint: string;
      /** Its saved answer; null while it is still being processed. */
      readonly result: string | null;
    }
  /** A new key, refused: the store already holds `maxKeys` live ones. Nothing was written. */
  | { readonly fresh: false; readonly full: true };

/** What claiming an instance id found. */
export type InstanceClaim =
  | {
      readonly granted: true;
      /** The new epoch of the instance id, held by the caller from now on (1 for a new id). */
      readonly epoch: number;
    }
  | {
      readonly granted: false;
      /** The epoch of the live claim that refused this one. */
      readonly epoch: number;
      /** The `holder` string the live claim recorded (who holds the id). */
      readonly holder: string;
      /** How long the live claim's lease still runs unless renewed, in ms (> 0). */
      readonly expiresInMs: number;
    };

/** What a store knows of one counter beyond its value. */
export interface CounterInfo {
  readonly value: number;
  /** The settings `create` recorded (opaque to stores; JSON); null for a counter made otherwise. */
  readonly meta: string | null;
  /** Last write (batch, set, create) in ms since the epoch on the store's clock; null if unknown. */
  readonly touchedAt: number | null;
}

/** Values changed by some instance's batch, set or delete; delivered to every instance. */
export type ChangeListener = (changes: ReadonlyMap<string, number>) => void;

/** A counter store. Implementations: memory, sqlite, redis, redis-cluster, postgres. */
export interface Store {
  /** Backend name for logs and metrics, e.g. `sqlite`. */
  readonly kind: string;
  /**
   * Applies a batch atomically and at most once per `(instanceId, seq)` (writer id and seq). A
   * counter whose value would leave ±(2^53-1) is left unchanged and reported in `rejected`; the
   * rest still apply.
   */
  applyBatch(batch: Batch): Promise<BatchResult>;
  /** Last seq applied for a writer id (0 if none), so the writer or its log replay continues. */
  lastSeq(instanceId: string): Promise<number>;
  /** Stored value; 0 for a counter never written. */
  get(name: string): Promise<number>;
  /** Overwrites a counter's value. */
  set(name: string, value: number): Promise<void>;
  /** Removes a counter and its record; true if it existed. */
  delete(name: string): Promise<boolean>;
  /**
   * Creates a counter with `value` and its settings `meta`, unless it exists (has a value or a
   * record): then nothing changes and the answer is false. Atomic across instances.
   */
  create(name: string, value: number, meta: string): Promise<boolean>;
  /** The counter's value, settings and last write; undefined when it has neither value nor record. */
  describe(name: string): Promise<CounterInfo | undefined>;
  /** Records a namespace's claim (opaque; JSON) unless one exists: false then. Atomic. */
  claimNamespace(namespace: string, record: string): Promise<boolean>;
  /** The namespace's claim record, undefined when unclaimed. */
  namespaceRecord(namespace: string): Promise<string | undefined>;
  /**
   * Deletes up to `limit` counters (value and record) last written before `cutoff` (ms since the
   * epoch, store clock) and returns their names. A counter written after the cutoff meanwhile is
   * kept. Counters whose last write is unknown are never expired.
   */
  expireIdle(cutoff: number, limit: number): Promise<string[]>;
  /** Counters in name order. */
  list(options?: ListOptions): Promise<ListPage>;
  /** Resolves when the backend answers; rejects otherwise. */
  ping(): Promise<void>;
  /**
   * Subscribes to changes made by other instances sharing this store (Redis pub/sub); the store
   * publishes its own changes as part of applyBatch/set/delete. Stores that only one process
   * uses (memory, sqlite) omit it. Returns an unsubscribe function.
   */
  watch?(listener: ChangeListener): () => void;
  /**
   * Claims an idempotency key for `leaseMs` unless a live claim exists (atomic across every
   * instance sharing the store). A new key is refused (`full`) while `maxKeys` live keys exist
   * (Redis Cluster: `maxKeys` split evenly over the shards); expired ones never count.
   */
  claimKey(key: string, fingerprint: string, leaseMs: number, maxKeys: number): Promise<KeyClaim>;
  /** Saves the answer for a claimed key and keeps it for `ttlMs`. */
  completeKey(key: string, result: string, ttlMs: number): Promise<void>;
  /** Drops a claim whose request failed, so a retry is processed afresh. */
  releaseKey(key: string): Promise<void>;
  /**
   * Adds visitor hashes (hex, at least 16 digits) to the HyperLogLog at each key (Redis: PFADD;
   * the others: store/hll.ts, same precision). Adding a hash twice changes nothing, so a retry
   * never counts a visitor twice.
   */
  addVisitors(sets: ReadonlyMap<string, readonly string[]>): Promise<void>;
  /** The estimated number of distinct hashes at each key, in order (0 for a key never added). */
  countVisitors(keys: readonly string[]): Promise<number[]>;
  /** Removes the HyperLogLogs at these keys. */
  deleteVisitors(keys: readonly string[]): Promise<void>;
  /**
   * Claims an instance id for one running process. Each id has one record: epoch, holder and
   * lease expiry. The claim is granted when the id has no record, its lease has run out, or its
   * current epoch equals `takeoverEpoch` (the caller proved the holder is its own dead
   * predecessor); a granted claim sets epoch = previous epoch + 1 (1 for a new id), records
   * `holder` (opaque: host, pid, data dir…) and a lease of `leaseMs`. Otherwise nothing changes
   * and the live claim is returned. Atomic across every process sharing the store: of concurrent
   * claims exactly one is granted. Epochs never go back, even after a release.
   */
  claimInstance(
    instanceId: string,
    holder: string,
    leaseMs: number,
    takeoverEpoch?: number,
  ): Promise<InstanceClaim>;
  /**
   * Extends the lease to `leaseMs` from now if the id's epoch is still `epoch` (also when the
   * lease had run out meanwhile but nobody claimed after); false when another claim took it.
   */
  renewInstance(instanceId: string, epoch: number, leaseMs: number): Promise<boolean>;
  /**
   * Ends the lease now if the id's epoch is still `epoch`, so a clean restart claims at once;
   * does nothing otherwise. The epoch stays: the next claim gets the one after it.
   */
  releaseInstance(instanceId: string, epoch: number): Promise<void>;
  close(): Promise<void>;
}

/** An instance id's claim as a store keeps it (expiry in ms on the store's clock). */
export interface ClaimRecord {
  readonly epoch: number;
  readonly holder: string;
  readonly expiresAt: number;
}

/**
 * The claim rule every store applies (Redis in Lua): granted when there is no record, its lease
 * ended, or the caller takes over the current epoch; a grant is the next epoch. Returns the
 * refusal, or the epoch to record with the caller's holder and a fresh lease.
 */
export function decideClaim(
  found: ClaimRecord | undefined,
  now: number,
  takeoverEpoch: number | undefined,
): InstanceClaim {
  if (found !== undefined && found.expiresAt > now && found.epoch !== takeoverEpoch) {
    return {
      granted: false,
      epoch: found.epoch,
      holder: found.holder,
      expiresInMs: found.expiresAt - now,
    };
  }
  return { granted: true, epoch: (found?.epoch ?? 0) + 1 };
}

/** Encodes a list cursor (the last name of a page) so clients treat it as opaque. */
export function encodeCursor(lastName: string): string {
  return Buffer.from(lastName, 'utf8').toString('base64url');
}

/** Decodes a cursor; undefined when it is not one of ours. */
export function decodeCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined || cursor === '') return undefined;
  const name = Buffer.from(cursor, 'base64url').toString('utf8');
  return name.length > 0 && name.length <= 200 ? name : undefined;
}
