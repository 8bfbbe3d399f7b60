/** @module counters/service — the operations routes call; ties aggregator, store and live hub. */
import type { Aggregator } from '../aggregator/index.js';
import { DEFAULT_NAMESPACE, type Increment } from '../domain.js';
import { storeUnavailable, TallyError } from '../errors.js';
import { bucketStart, dayStamp, type Granularity, type HistoryStore } from '../store/history.js';
import type { ListOptions, ListPage } from '../store/interface.js';
import { sleep } from '../util/retry.js';
import {
  type CounterSettings,
  decodeSettings,
  encodeSettings,
  type NamespaceClaim,
  SettingsCache,
} from './settings.js';
import type { Uniques, Visitors } from './visitors.js';

/** eventual: answer from memory (202); strong: answer once the store holds it (200). */
export type Consistency = 'eventual' | 'strong';

/** A counter's value as the API reports it. */
export interface CounterReading {
  readonly name: string;
  readonly value: number;
  /** True when the store could not be read and the value is this instance's last estimate. */
  readonly stale?: boolean;
}

/** A counter as `describe` reports it. */
export interface CounterDescription {
  readonly name: string;
  /** This instance's estimate (stored value plus what it has not flushed yet). */
  readonly value: number;
  /** Null for a counter made by increments or set rather than created. */
  readonly settings: CounterSettings | null;
  /** Last write the store recorded (ms), null when unknown or not stored yet. */
  readonly touchedAt: number | null;
}

/** One history bucket as the API reports it. */
export interface HistoryBucket {
  /** Start of the bucket, ms since the epoch (UTC). */
  readonly start: number;
  readonly count: number;
  /** Distinct visitors in the bucket (day buckets, when unique counting is on). */
  readonly uniques?: number;
}

/** How the top counters are ranked: by total, or by one day's count. */
export type TopBy = 'total' | { readonly day: number };

/** How the first-touch read of an unknown counter may take before we answer without it. */
const WARM_TIMEOUT_MS = 250;
/** Eventual reads ask siblings at most this many times (see `get`), pausing between asks. */
const SIBLING_READ_ATTEMPTS = 4;
const SIBLING_READ_PAUSE_MS = 5;

/**
 * Counter operations. Increments are admitted by the aggregator, which owns the whole admission
 * (bounds, headroom, the write-ahead log); no I/O for a counter this instance has seen. Admin
 * writes are ordered against pending increments with `exclusive`.
 */
export class CounterService {
  private readonly warming = new Map<string, Promise<void>>();
  /** Settings of created counters and namespace claims, cached a few seconds. */
  readonly settings: SettingsCache;

  constructor(
    private readonly store: HistoryStore,
    private readonly aggregator: Aggregator,
    /** Told of values this process changed (live streams, sibling processes). */
    private readonly changed: (changes: ReadonlyMap<string, number>) => void,
    /** Flushes sibling processes (cluster workers); strong reads and admin writes wait for it. */
    private readonly siblings?: () => Promise<void>,
    /** Unique visitor counting, when on (TALLY_UNIQUES). */
    private readonly visitors?: Visitors,
    /** What sibling workers acknowledged for a counter and have not sent to the store yet. */
    private readonly siblingsUnsent?: (name: string) => Promise<{ sum: number; complete: boolean }>,
  ) {
    this.settings = new SettingsCache(store);
  }

  /**
   * Adds `by` to a counter. Eventual: returns the estimate at once. Strong: waits until the
   * store holds it and returns the stored value right after the batch that carried it.
   */
  increment(name: string, by: number, consistency: Consistency): Promise<number> {
    if (consistency === 'strong') return this.incrementStrong(name, by);
    return this.add(name, by).then(() => this.aggregator.estimate(name));
  }

  /**
   * An eventual increment that resolves, with nothing, once accepted; `estimate(name)` then
   * reads the value. The hot route's way in: not async, and it hands back the aggregator's
   * promise shared by the whole event-loop turn, so a request costs no promise of its own.
   */
  add(name: string, by: number): Promise<void> {
    if (this.aggregator.knows(name)) return this.aggregator.enter(name, by);
    return this.warm(name).then(() => this.aggregator.enter(name, by));
  }

  private async incrementStrong(name: string, by: number): Promise<number> {
    // Fail fast while the store is known to be down instead of piling up waiters.
    if (!this.aggregator.healthy()) {
      throw storeUnavailable();
    }
    await this.aggregator.admit(name, by);
    await this.confirm(this.aggregator.currentTicket());
    return this.aggregator.knownValue(name) ?? (await this.store.get(name));
  }

  /** Adds a batch of increments, all or none. Returns how many were accepted. */
  async incrementMany(items: readonly Increment[], consistency: Consistency): Promise<number> {
    if (consistency === 'strong' && !this.aggregator.healthy()) {
      throw storeUnavailable();
    }
    const ticket = await this.aggregator.admitMany(items);
    if (consistency === 'strong') await this.confirm(ticket);
    return items.length;
  }

  private async confirm(ticket: number): Promise<void> {
    try {
      await this.aggregator.waitDurable(ticket);
    } catch (err) {
      throw new TallyError('NOT_CONFIRMED', undefined, { cause: err, retryAfterS: 1 });
    }
  }

  /** This instance's estimate: last stored value plus pending deltas. No I/O. */
  estimate(name: string): number {
    return this.aggregator.estimate(name);
  }

  /** Reads a counter. Strong flushes this instance's pending increments first. */
  async get(name: string, consistency: Consistency): Promise<CounterReading> {
    if (consistency === 'strong') {
      try {
        await Promise.all([this.aggregator.waitDurable(), this.siblings?.()]);
      } catch (err) {
        throw storeUnavailable(err);
      }
      return { name, value: await this.readStore(name) };
    }
    let stored: number;
    try {
      stored = await this.readStore(name);
    } catch (err) {
      if (!this.aggregator.knows(name)) throw err;
      return { name, value: this.aggregator.estimate(name), stale: true };
    }
    if (this.siblingsUnsent === undefined) return { name, value: this.aggregator.estimate(name) };
    // Siblings' unsent deltas, asked between two store reads. Their answer leaves out a batch in
    // flight (the store may hold it already), so it can never count a delta twice; it is exact
    // when no sibling had one in flight and the store did not move between the reads. Otherwise
    // a batch landed meanwhile: ask again, a few times, then answer what is known (it may lag).
    // A failed second read answers at once, with what is known.
    for (let attempt = 1; ; attempt++) {
      const siblings = await this.siblingsUnsent(name);
      const again = await this.readStore(name).catch(() => undefined);
      const settled = siblings.complete && again === stored;
      if (again === undefined || settled || attempt >= SIBLING_READ_ATTEMPTS) {
        return { name, value: this.aggregator.estimate(name) + siblings.sum };
      }
      stored = again;
      if (!siblings.complete) await sleep(SIBLING_READ_PAUSE_MS);
    }
  }

  /** Overwrites a counter; increments accepted before apply first, later ones after. */
  async set(name: string, value: number): Promise<void> {
    await this.flushSiblings();
    await this.wrapStore(() =>
      this.aggregator.exclusive(async () => {
        await this.store.set(name, value);
        this.aggregator.learn(name, value);
      }),
    );
    this.changed(new Map([[name, this.aggregator.estimate(name)]]));
  }

  /** True when counters count unique visitors. */
  get countsUniques(): boolean {
    return this.visitors !== undefined;
  }

  /** A counted hit from one visitor (no I/O); nothing when unique counting is off. */
  visit(name: string, address: string, userAgent: string | undefined): void {
    this.visitors?.see(name, address, userAgent);
  }

  /**
   * A counter's unique visitors; undefined when unique counting is off. Eventual: cached for a
   * few seconds; strong: this instance's waiting visitors are stored first.
   */
  async uniques(name: string, consistency: Consistency = 'eventual'): Promise<Uniques | undefined> {
    const visitors = this.visitors;
    if (visitors === undefined) return undefined;
    return this.wrapStore(() => visitors.uniques(name, consistency === 'strong'));
  }

  /**
   * A counter's history from `from` to `to` (ms): flushed counts per bucket, and distinct
   * visitors per day bucket when unique counting is on.
   */
  async history(
    name: string,
    granularity: Granularity,
    from: number,
    to: number,
  ): Promise<HistoryBucket[]> {
    const buckets = await this.wrapStore(() => this.store.history(name, granularity, from, to));
    const visitors = this.visitors;
    if (visitors === undefined || granularity !== 'day') return buckets;
    await visitors.flush();
    const days = buckets.map((b) => dayStamp(b.start));
    const counts = await this.wrapStore(() => visitors.days(name, days));
    return buckets.map((b, i) => ({ ...b, uniques: counts[i] ?? 0 }));
  }

  /** The counters of a namespace with the highest totals or day counts (stored values). */
  top(
    namespace: string,
    by: TopBy,
    limit: number,
  ): Promise<Array<{ name: string; value: number }>> {
    const flat = namespace === DEFAULT_NAMESPACE;
    const day = by === 'total' ? by : { day: bucketStart(by.day, 'day') };
    return this.wrapStore(() => this.store.top(flat ? '' : `${namespace}/`, flat, day, limit));
  }

  /** Deletes a counter (it then reads 0); true if it existed. */
  async delete(name: string): Promise<boolean> {
    await this.flushSiblings();
    const existed = await this.wrapStore(() =>
      this.aggregator.exclusive(async () => {
        const found = await this.store.delete(name);
        this.aggregator.learn(name, 0);
        return found;
      }),
    );
    this.settings.forget(name);
    await this.visitors?.forget(name).catch(() => undefined);
    this.changed(new Map([[name, this.aggregator.estimate(name)]]));
    return existed;
  }

  /**
   * Creates a counter with settings unless it exists: a stored value, settings, or increments
   * this instance (or a sibling worker) accepted and has not flushed yet. False when it exists.
   */
  async create(name: string, value: number, settings: CounterSettings): Promise<boolean> {
    await this.flushSiblings();
    const created = await this.wrapStore(() =>
      this.aggregator.exclusive(async () => {
        // exclusive flushed what was pending, so the store sees every accepted increment.
        const ok = await this.store.create(name, value, encodeSettings(settings));
        if (ok) this.aggregator.learn(name, value);
        return ok;
      }),
    );
    this.settings.forget(name);
    if (created) this.changed(new Map([[name, this.aggregator.estimate(name)]]));
    return created;
  }

  /**
   * A counter's value and settings; undefined when it does not exist (never written, or deleted,
   * and nothing of it pending here).
   */
  async describe(name: string): Promise<CounterDescription | undefined> {
    const since = this.aggregator.readEpoch();
    const info = await this.wrapStore(() => this.store.describe(name));
    if (info === undefined) {
      if (!this.aggregator.holdsUnflushed(name)) return undefined;
      return { name, value: this.aggregator.estimate(name), settings: null, touchedAt: null };
    }
    this.aggregator.learn(name, info.value, since);
    return {
      name,
      value: this.aggregator.estimate(name),
      settings: decodeSettings(info.meta),
      touchedAt: info.touchedAt,
    };
  }

  /** Claims a namespace for the holder of `claim.keyHash`'s key; false when claimed already. */
  async claimNamespace(namespace: string, claim: NamespaceClaim): Promise<boolean> {
    const ok = await this.wrapStore(() =>
      this.store.claimNamespace(namespace, JSON.stringify(claim)),
    );
    this.settings.forgetNamespace(namespace);
    return ok;
  }

  /**
   * Deletes counters not written for `idleMs` (at most `limit` per call); returns their names.
   * What this instance and its sibling workers accepted is flushed first, so a counter with an
   * increment waiting here counts as written and stays.
   */
  async expireIdle(idleMs: number, limit: number): Promise<string[]> {
    await this.flushSiblings();
    const names = await this.wrapStore(() =>
      this.aggregator.exclusive(async () => {
        const expired = await this.store.expireIdle(Date.now() - idleMs, limit);
        for (const name of expired) this.aggregator.learn(name, 0);
        return expired;
      }),
    );
    const changes = new Map<string, number>();
    for (const name of names) {
      this.settings.forget(name);
      changes.set(name, this.aggregator.estimate(name));
    }
    if (changes.size > 0) this.changed(changes);
    return names;
  }

  /**
   * True when the namespace holds a counter: stored, or accepted here or by a sibling worker
   * and not flushed yet (flushed first, so the store sees it).
   */
  async namespaceInUse(namespace: string): Promise<boolean> {
    await this.flushSiblings();
    return this.wrapStore(() =>
      this.aggregator.exclusive(async () => {
        const page = await this.store.list({ prefix: `${namespace}/`, limit: 1 });
        return page.items.length > 0;
      }),
    );
  }

  /** Sibling workers' acknowledged increments reach the store before an admin write. */
  private async flushSiblings(): Promise<void> {
    if (this.siblings === undefined) return;
    try {
      await this.siblings();
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  /** Lists stored counters (flushed values). */
  list(options: ListOptions): Promise<ListPage> {
    return this.wrapStore(() => this.store.list(options));
  }

  /** Reads the stored value and offers it to the estimates (`learn` decides). */
  private async readStore(name: string): Promise<number> {
    const since = this.aggregator.readEpoch();
    const value = await this.wrapStore(() => this.store.get(name));
    this.aggregator.learn(name, value, since);
    return value;
  }

  /**
   * First touch of a counter this instance has not seen: one read so the estimate starts from
   * the stored value, shared by concurrent requests and bounded in time. If the store is slow
   * or down the increment is still accepted; the estimate then starts from pending deltas.
   */
  private warm(name: string): Promise<void> {
    let p = this.warming.get(name);
    if (p === undefined) {
      const since = this.aggregator.readEpoch();
      const read = this.store.get(name).then(
        (v) => void this.aggregator.learn(name, v, since),
        () => undefined,
      );
      p = Promise.race([read, sleep(WARM_TIMEOUT_MS, true)]).finally(() =>
        this.warming.delete(name),
      );
      this.warming.set(name, p);
    }
    return p;
  }

  private async wrapStore<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      if (err instanceof TallyError) throw err;
      throw storeUnavailable(err);
    }
  }
}
