/**
 * @module store/history — time buckets for every store, written inside the batch that carries
 * the totals.
 *
 * A bucket is itself a counter, under a name no counter can have (it starts with `~`, which
 * sorts after every counter name, and ends the counter's part with `!`, which no name holds).
 * `HistoryStore` wraps a store: each batch gains, per counter, the deltas of its minute, hour and
 * day bucket and of the day's ranking entry, at the time the batch was cut (`Batch.at`). So a
 * flush of a hot counter writes one update per bucket however many hits it carries, the buckets
 * are exactly as atomic and as idempotent as the totals (a replayed batch is a duplicate as a
 * whole), and every store, Redis Cluster included, keeps history without code of its own.
 *
 * Layout (UTC): minute `~m/<YYYYMMDD>/<name>!<HHmm>`, hour `~h/<YYYYMM>/<name>!<DDHH>`,
 * day `~d/<name>!<YYYYMMDD>`, day ranking `~t/<YYYYMMDD>/<name>`. Time first where records are
 * dropped by age (minutes after 48 h, hours after 90 days, rankings with the day buckets), name
 * first where a counter's whole range is read at once (days).
 */
import type {
  Batch,
  BatchResult,
  ChangeListener,
  CounterInfo,
  InstanceClaim,
  KeyClaim,
  ListOptions,
  ListPage,
  Store,
} from './interface.js';
import { encodeCursor } from './interface.js';

export type Granularity = 'minute' | 'hour' | 'day';

/** One time bucket: its start (ms since the epoch, UTC) and the sum of the deltas in it. */
export interface Bucket {
  readonly start: number;
  readonly count: number;
}

/** Every history record's name starts with this; no counter name does. */
export const HISTORY_MARK = '~';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** How long each granularity is kept, and so how wide a range may be asked for. */
export const RETENTION_MS: Readonly<Record<Exclude<Granularity, 'day'>, number>> = {
  minute: 48 * HOUR,
  hour: 90 * DAY,
};

/** Most buckets one history answer holds (a day range of ten years). */
export const MAX_BUCKETS = 3700;

/** Records read to rank a namespace's counters at most; the rest are not looked at. */
const MAX_RANKED = 100_000;

export function isHistoryName(name: string): boolean {
  return name.startsWith(HISTORY_MARK);
}

/** `YYYYMMDDHHmm` of a time, UTC. */
function stamp(at: number): string {
  const iso = new Date(at).toISOString();
  return (
    iso.slice(0, 4) + iso.slice(5, 7) + iso.slice(8, 10) + iso.slice(11, 13) + iso.slice(14, 16)
  );
}

/** Start of the bucket holding `at`. */
export function bucketStart(at: number, granularity: Granularity): number {
  const size = granularity === 'minute' ? MINUTE : granularity === 'hour' ? HOUR : DAY;
  return Math.floor(at / size) * size;
}

/** The bucket after the one starting at `start`. */
function nextStart(start: number, granularity: Granularity): number {
  return start + (granularity === 'minute' ? MINUTE : granularity === 'hour' ? HOUR : DAY);
}

/** `YYYYMMDD` of a time, UTC: the day part of keys (also the visitor keys of a day). */
export function dayStamp(at: number): string {
  return stamp(at).slice(0, 8);
}

/**
 * The names of the four records a delta at `at` adds to, by counter name: the time is formatted
 * once for a whole batch, not once per counter.
 */
export function recordNamer(at: number): (name: string) => [string, string, string, string] {
  const s = stamp(at);
  const day = s.slice(0, 8);
  const month = s.slice(0, 6);
  const hour = s.slice(6, 10);
  const minute = s.slice(8, 12);
  return (name) => [
    `~m/${day}/${name}!${minute}`,
    `~h/${month}/${name}!${hour}`,
    `~d/${name}!${day}`,
    `~t/${day}/${name}`,
  ];
}

/** Parses `YYYYMMDDHHmm` (or a prefix of it, the rest zero) as UTC. */
function parseStamp(s: string): number {
  const n = (from: number, to: number) => (s.length >= to ? Number(s.slice(from, to)) : 0);
  return Date.UTC(n(0, 4), n(4, 6) - 1, s.length >= 8 ? n(6, 8) : 1, n(8, 10), n(10, 12));
}

/** Options for {@link HistoryStore}. */
export interface HistoryOptions {
  /**
   * How long day buckets and day rankings are kept, in ms; undefined keeps them forever.
   */
  readonly dayRetentionMs?: number;
}

/**
 * A store that keeps history. Everything else passes through; the history records are hidden
 * from every answer (values, listings, change messages) so callers see counters only.
 */
export class HistoryStore implements Store {
  readonly kind: string;

  constructor(
    readonly inner: Store,
    private readonly options: HistoryOptions = {},
  ) {
    this.kind = inner.kind;
    const watch = inner.watch?.bind(inner);
    if (watch !== undefined) this.watch = (listener) => this.watchInner(watch, listener);
  }

  async applyBatch(batch: Batch): Promise<BatchResult> {
    const at = batch.at ?? Date.now();
    const deltas = new Map(batch.deltas);
    const recordsOf = recordNamer(at);
    for (const [name, delta] of batch.deltas) {
      if (isHistoryName(name)) continue;
      for (const record of recordsOf(name)) deltas.set(record, (deltas.get(record) ?? 0) + delta);
    }
    const result = await this.inner.applyBatch({ ...batch, at, deltas });
    const values = new Map<string, number>();
    for (const [name, value] of result.values) if (!isHistoryName(name)) values.set(name, value);
    return {
      values,
      duplicate: result.duplicate,
      rejected: result.rejected.filter((n) => !isHistoryName(n)),
    };
  }

  /**
   * A counter's buckets from `from` to `to` (ms, both inclusive, rounded down to bucket starts),
   * every bucket present (0 where nothing was counted), oldest first.
   */
  async history(
    name: string,
    granularity: Granularity,
    from: number,
    to: number,
  ): Promise<Bucket[]> {
    const first = bucketStart(from, granularity);
    const last = bucketStart(to, granularity);
    const found = new Map<number, number>();
    if (granularity === 'day') {
      const prefix = `~d/${name}!`;
      await this.scan(prefix, prefix + dayStamp(first - DAY), (suffix, value) => {
        const start = parseStamp(suffix);
        if (start > last) return false;
        found.set(start, value);
        return true;
      });
    } else {
      // One scan per day (minutes) or month (hours) in the range.
      const parts = new Set<string>();
      const width = granularity === 'minute' ? 8 : 6;
      for (let t = first; t < last; t += DAY) parts.add(stamp(t).slice(0, width));
      parts.add(stamp(last).slice(0, width));
      for (const part of parts) {
        const prefix = `~${granularity === 'minute' ? 'm' : 'h'}/${part}/${name}!`;
        await this.scan(prefix, undefined, (suffix, value) => {
          const start = parseStamp(part + suffix);
          if (start >= first && start <= last) found.set(start, value);
          return true;
        });
      }
    }
    const buckets: Bucket[] = [];
    for (let start = first; start <= last; start = nextStart(start, granularity)) {
      buckets.push({ start, count: found.get(start) ?? 0 });
    }
    return buckets;
  }

  /**
   * The counters under `prefix` (a namespace's `ns/`, or '' with `flatOnly` for the default
   * namespace) with the highest totals, or the highest counts on one day.
   */
  async top(
    prefix: string,
    flatOnly: boolean,
    by: 'total' | { day: number },
    limit: number,
  ): Promise<Array<{ name: string; value: number }>> {
    const ranked: Array<{ name: string; value: number }> = [];
    const keep = (name: string, value: number) => {
      if (flatOnly && name.includes('/')) return;
      ranked.push({ name, value });
    };
    if (by === 'total') {
      let cursor: string | undefined;
      do {
        const page = await this.list({ prefix, limit: 1000, ...(cursor ? { cursor } : {}) });
        for (const item of page.items) keep(item.name, item.value);
        cursor = page.nextCursor ?? undefined;
      } while (cursor !== undefined && ranked.length < MAX_RANKED);
    } else {
      const base = `~t/${dayStamp(by.day)}/`;
      await this.scan(base + prefix, undefined, (suffix, value) => {
        keep(prefix + suffix, value);
        return ranked.length < MAX_RANKED;
      });
    }
    ranked.sort((a, b) => b.value - a.value || (a.name < b.name ? -1 : 1));
    return ranked.filter((r) => r.value !== 0).slice(0, limit);
  }

  /**
   * Deletes records older than their retention: minute buckets after 48 h, hour buckets after
   * 90 days, day buckets and rankings after `dayRetentionMs` if set. Each instance may run it;
   * deleting twice is harmless. Returns how many records went.
   */
  async sweep(now = Date.now()): Promise<number> {
    let removed = 0;
    // Records under `prefix` are `<period>/<name>!<rest>`, periods in order: delete those whose
    // period + rest is before `cut`, and stop at the first period after the cut's.
    const drop = async (prefix: string, cut: string, width: number) => {
      const period = cut.slice(0, width);
      let cursor: string | undefined;
      do {
        const page = await this.inner.list({ prefix, limit: 1000, ...(cursor ? { cursor } : {}) });
        for (const { name } of page.items) {
          const rest = name.slice(prefix.length);
          if (rest.slice(0, width) > period) return;
          const when = rest.slice(0, width) + rest.slice(rest.lastIndexOf('!') + 1);
          if (when < cut && (await this.inner.delete(name))) removed++;
        }
        cursor = page.nextCursor ?? undefined;
      } while (cursor !== undefined);
    };
    await drop('~m/', stamp(now - RETENTION_MS.minute), 8);
    await drop('~h/', stamp(now - RETENTION_MS.hour).slice(0, 10), 6);
    if (this.options.dayRetentionMs !== undefined) {
      const dayCut = dayStamp(now - this.options.dayRetentionMs);
      await drop('~t/', dayCut, 8);
      // Day buckets are read by name first: scan them all (one record per counter per day).
      let cursor: string | undefined;
      do {
        const page = await this.inner.list({
          prefix: '~d/',
          limit: 1000,
          ...(cursor ? { cursor } : {}),
        });
        for (const { name } of page.items) {
          if (name.slice(name.lastIndexOf('!') + 1) < dayCut && (await this.inner.delete(name))) {
            removed++;
          }
        }
        cursor = page.nextCursor ?? undefined;
      } while (cursor !== undefined);
    }
    return removed;
  }

  /** Lists the records under `prefix` after `after`, calling `each(suffix, value)` until false. */
  private async scan(
    prefix: string,
    after: string | undefined,
    each: (suffix: string, value: number) => boolean,
  ): Promise<void> {
    let cursor = after === undefined ? undefined : encodeCursor(after);
    do {
      const page = await this.inner.list({ prefix, limit: 1000, ...(cursor ? { cursor } : {}) });
      for (const item of page.items) {
        if (!each(item.name.slice(prefix.length), item.value)) return;
      }
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined);
  }

  /** Deletes a counter and its history (buckets still within their retention). */
  async delete(name: string): Promise<boolean> {
    const existed = await this.inner.delete(name);
    if (isHistoryName(name)) return existed;
    const now = Date.now();
    const prefixes = [`~d/${name}!`];
    for (let t = now - RETENTION_MS.minute; t <= now + DAY; t += DAY) {
      prefixes.push(`~m/${dayStamp(t)}/${name}!`);
    }
    for (let t = now - RETENTION_MS.hour; t <= now + 31 * DAY; t += 28 * DAY) {
      prefixes.push(`~h/${stamp(t).slice(0, 6)}/${name}!`);
    }
    for (const prefix of new Set(prefixes)) {
      const names: string[] = [];
      await this.scan(prefix, undefined, (suffix) => {
        names.push(prefix + suffix);
        return true;
      });
      for (const record of names) {
        if (record.startsWith('~d/')) {
          await this.inner.delete(`~t/${record.slice(record.lastIndexOf('!') + 1)}/${name}`);
        }
        await this.inner.delete(record);
      }
    }
    return existed;
  }

  async list(options: ListOptions = {}): Promise<ListPage> {
    const page = await this.inner.list(options);
    if (isHistoryName(options.prefix ?? '')) return page;
    const cut = page.items.findIndex((item) => isHistoryName(item.name));
    // History records sort after every counter: the first one ends the listing.
    if (cut < 0) return page;
    return { items: page.items.slice(0, cut), nextCursor: null };
  }

  async expireIdle(cutoff: number, limit: number): Promise<string[]> {
    // Idle expiry also takes buckets idle as long (documented): hide them from the answer.
    return (await this.inner.expireIdle(cutoff, limit)).filter((n) => !isHistoryName(n));
  }

  /** Present when the wrapped store has it (stores shared by several instances). */
  readonly watch?: (listener: ChangeListener) => () => void;

  private watchInner(watch: NonNullable<Store['watch']>, listener: ChangeListener): () => void {
    return watch((changes) => {
      let counters: Map<string, number> | undefined;
      for (const [name, value] of changes) {
        if (isHistoryName(name)) continue;
        counters ??= new Map();
        counters.set(name, value);
      }
      if (counters !== undefined) listener(counters);
    });
  }

  lastSeq(instanceId: string): Promise<number> {
    return this.inner.lastSeq(instanceId);
  }
  get(name: string): Promise<number> {
    return this.inner.get(name);
  }
  set(name: string, value: number): Promise<void> {
    return this.inner.set(name, value);
  }
  create(name: string, value: number, meta: string): Promise<boolean> {
    return this.inner.create(name, value, meta);
  }
  describe(name: string): Promise<CounterInfo | undefined> {
    return this.inner.describe(name);
  }
  claimNamespace(namespace: string, record: string): Promise<boolean> {
    return this.inner.claimNamespace(namespace, record);
  }
  namespaceRecord(namespace: string): Promise<string | undefined> {
    return this.inner.namespaceRecord(namespace);
  }
  ping(): Promise<void> {
    return this.inner.ping();
  }
  claimKey(key: string, fingerprint: string, leaseMs: number, maxKeys: number): Promise<KeyClaim> {
    return this.inner.claimKey(key, fingerprint, leaseMs, maxKeys);
  }
  completeKey(key: string, result: string, ttlMs: number): Promise<void> {
    return this.inner.completeKey(key, result, ttlMs);
  }
  releaseKey(key: string): Promise<void> {
    return this.inner.releaseKey(key);
  }
  addVisitors(sets: ReadonlyMap<string, readonly string[]>): Promise<void> {
    return this.inner.addVisitors(sets);
  }
  countVisitors(keys: readonly string[]): Promise<number[]> {
    return this.inner.countVisitors(keys);
  }
  deleteVisitors(keys: readonly string[]): Promise<void> {
    return this.inner.deleteVisitors(keys);
  }
  claimInstance(
    instanceId: string,
    holder: string,
    leaseMs: number,
    takeoverEpoch?: number,
  ): Promise<InstanceClaim> {
    return this.inner.claimInstance(instanceId, holder, leaseMs, takeoverEpoch);
  }
  renewInstance(instanceId: string, epoch: number, leaseMs: number): Promise<boolean> {
    return this.inner.renewInstance(instanceId, epoch, leaseMs);
  }
  releaseInstance(instanceId: string, epoch: number): Promise<void> {
    return this.inner.releaseInstance(instanceId, epoch);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
