/** @module store/memory — an in-process store for tests and throwaway use; lost on exit. */
import { inRange } from '../../domain.js';
import { Hll } from '../hll.js';
import {
  type Batch,
  type BatchResult,
  type CounterInfo,
  decideClaim,
  decodeCursor,
  encodeCursor,
  type InstanceClaim,
  type KeyClaim,
  type ListOptions,
  type ListPage,
  type Store,
} from '../interface.js';

/** Keeps counters in a Map. Same semantics as the durable stores, minus durability. */
export class MemoryStore implements Store {
  readonly kind = 'memory';
  private readonly counters = new Map<string, number>();
  private readonly seqs = new Map<string, number>();
  /** Settings recorded by `create`, and the time of each counter's last write. */
  private readonly metas = new Map<string, string>();
  private readonly touched = new Map<string, number>();
  private readonly namespaces = new Map<string, string>();
  private readonly visitors = new Map<string, Hll>();
  private readonly keys = new Map<
    string,
    { fingerprint: string; result: string | null; expiresAt: number }
  >();
  private readonly instances = new Map<
    string,
    { epoch: number; holder: string; expiresAt: number }
  >();
  private closed = false;

  async applyBatch(batch: Batch): Promise<BatchResult> {
    this.assertOpen();
    const values = new Map<string, number>();
    const rejected: string[] = [];
    const last = this.seqs.get(batch.instanceId) ?? 0;
    if (batch.seq <= last) {
      for (const name of batch.deltas.keys()) values.set(name, this.counters.get(name) ?? 0);
      return { values, duplicate: true, rejected };
    }
    for (const [name, delta] of batch.deltas) {
      const current = this.counters.get(name) ?? 0;
      const next = current + delta;
      if (inRange(next)) {
        this.counters.set(name, next);
        this.touched.set(name, Date.now());
        values.set(name, next);
      } else {
        rejected.push(name);
        values.set(name, current);
      }
    }
    this.seqs.set(batch.instanceId, batch.seq);
    return { values, duplicate: false, rejected };
  }

  async lastSeq(instanceId: string): Promise<number> {
    this.assertOpen();
    return this.seqs.get(instanceId) ?? 0;
  }

  async get(name: string): Promise<number> {
    this.assertOpen();
    return this.counters.get(name) ?? 0;
  }

  async set(name: string, value: number): Promise<void> {
    this.assertOpen();
    this.counters.set(name, value);
    this.touched.set(name, Date.now());
  }

  async delete(name: string): Promise<boolean> {
    this.assertOpen();
    const existed = this.counters.delete(name) || this.metas.has(name);
    this.metas.delete(name);
    this.touched.delete(name);
    return existed;
  }

  async create(name: string, value: number, meta: string): Promise<boolean> {
    this.assertOpen();
    if (this.counters.has(name) || this.metas.has(name)) return false;
    this.counters.set(name, value);
    this.metas.set(name, meta);
    this.touched.set(name, Date.now());
    return true;
  }

  async describe(name: string): Promise<CounterInfo | undefined> {
    this.assertOpen();
    const value = this.counters.get(name);
    const meta = this.metas.get(name) ?? null;
    if (value === undefined && meta === null) return undefined;
    return { value: value ?? 0, meta, touchedAt: this.touched.get(name) ?? null };
  }

  async claimNamespace(namespace: string, record: string): Promise<boolean> {
    this.assertOpen();
    if (this.namespaces.has(namespace)) return false;
    this.namespaces.set(namespace, record);
    return true;
  }

  async namespaceRecord(namespace: string): Promise<string | undefined> {
    this.assertOpen();
    return this.namespaces.get(namespace);
  }

  async expireIdle(cutoff: number, limit: number): Promise<string[]> {
    this.assertOpen();
    const expired: string[] = [];
    for (const [name, at] of this.touched) {
      if (expired.length >= limit) break;
      if (at < cutoff) expired.push(name);
    }
    for (const name of expired) void this.delete(name);
    return expired;
  }

  async list(options: ListOptions = {}): Promise<ListPage> {
    this.assertOpen();
    const prefix = options.prefix ?? '';
    const limit = options.limit ?? 100;
    const after = decodeCursor(options.cursor);
    // Sorting on every call is O(n log n); fine for the sizes a memory store is meant for.
    const names = [...this.counters.keys()]
      .filter((n) => n.startsWith(prefix) && (after === undefined || n > after))
      .sort();
    const page = names.slice(0, limit);
    const items = page.map((name) => ({ name, value: this.counters.get(name) ?? 0 }));
    const last = page[page.length - 1];
    return {
      items,
      nextCursor: names.length > limit && last !== undefined ? encodeCursor(last) : null,
    };
  }

  async claimKey(
    key: string,
    fingerprint: string,
    leaseMs: number,
    maxKeys: number,
  ): Promise<KeyClaim> {
    this.assertOpen();
    const now = Date.now();
    const found = this.keys.get(key);
    if (found !== undefined && found.expiresAt > now) {
      return { fresh: false, fingerprint: found.fingerprint, result: found.result };
    }
    if (found === undefined && this.keys.size >= maxKeys) {
      this.sweepKeys(now);
      if (this.keys.size >= maxKeys) return { fresh: false, full: true };
    }
    this.keys.set(key, { fingerprint, result: null, expiresAt: now + leaseMs });
    if (this.keys.size % 1024 === 0) this.sweepKeys(now);
    return { fresh: true };
  }

  async completeKey(key: string, result: string, ttlMs: number): Promise<void> {
    this.assertOpen();
    const found = this.keys.get(key);
    if (found !== undefined) {
      found.result = result;
      found.expiresAt = Date.now() + ttlMs;
    }
  }

  async releaseKey(key: string): Promise<void> {
    this.assertOpen();
    this.keys.delete(key);
  }

  async claimInstance(
    instanceId: string,
    holder: string,
    leaseMs: number,
    takeoverEpoch?: number,
  ): Promise<InstanceClaim> {
    this.assertOpen();
    const now = Date.now();
    const claim = decideClaim(this.instances.get(instanceId), now, takeoverEpoch);
    if (claim.granted) {
      this.instances.set(instanceId, { epoch: claim.epoch, holder, expiresAt: now + leaseMs });
    }
    return claim;
  }

  async renewInstance(instanceId: string, epoch: number, leaseMs: number): Promise<boolean> {
    this.assertOpen();
    const found = this.instances.get(instanceId);
    if (found?.epoch !== epoch) return false;
    found.expiresAt = Date.now() + leaseMs;
    return true;
  }

  async releaseInstance(instanceId: string, epoch: number): Promise<void> {
    this.assertOpen();
    const found = this.instances.get(instanceId);
    if (found?.epoch === epoch) found.expiresAt = 0;
  }

  private sweepKeys(now: number): void {
    for (const [key, entry] of this.keys) if (entry.expiresAt <= now) this.keys.delete(key);
  }

  async addVisitors(sets: ReadonlyMap<string, readonly string[]>): Promise<void> {
    this.assertOpen();
    for (const [key, hashes] of sets) {
      let hll = this.visitors.get(key);
      if (hll === undefined) {
        hll = new Hll();
        this.visitors.set(key, hll);
      }
      for (const hash of hashes) hll.add(hash);
    }
  }

  async countVisitors(keys: readonly string[]): Promise<number[]> {
    this.assertOpen();
    return keys.map((key) => this.visitors.get(key)?.count() ?? 0);
  }

  async deleteVisitors(keys: readonly string[]): Promise<void> {
    this.assertOpen();
    for (const key of keys) this.visitors.delete(key);
  }

  async ping(): Promise<void> {
    this.assertOpen();
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('store is closed');
  }
}
