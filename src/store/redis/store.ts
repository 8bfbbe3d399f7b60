/** @module store/redis/store — counters in Redis (standalone or Cluster), shared by many instances. */
import { randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import {
  type Batch,
  type BatchResult,
  type ChangeListener,
  type CounterInfo,
  decodeCursor,
  encodeCursor,
  type InstanceClaim,
  type KeyClaim,
  type ListOptions,
  type ListPage,
  type Store,
} from '../interface.js';
import { ChangeFeed, type VersionedValue } from './feed.js';
import { KeyLayout, type ShardKeys } from './keys.js';
import { APPLY_BATCH_LUA } from './lua/apply-batch-4.js';
import { CLAIM_INSTANCE_LUA } from './lua/claim-instance-1.js';
import { CLAIM_KEY_LUA } from './lua/claim-key-2.js';
import { COMPLETE_KEY_LUA } from './lua/complete-key-2.js';
import { CREATE_COUNTER_LUA } from './lua/create-counter-5.js';
import { DELETE_COUNTER_LUA } from './lua/delete-counter-5.js';
import { RELEASE_INSTANCE_LUA } from './lua/release-instance-1.js';
import { RELEASE_KEY_LUA } from './lua/release-key-2.js';
import { RENEW_INSTANCE_LUA } from './lua/renew-instance-1.js';
import { SET_COUNTER_LUA } from './lua/set-counter-4.js';

/** A connected ioredis client: one node or a whole cluster. */
export type RedisClient = Redis | Cluster;

/** What the store calls; `defineCommand` adds the scripts to the client. */
interface ScriptCommands {
  tallyApplyBatch(numKeys: number, keys: string[], args: string[]): Promise<unknown>;
  tallySetCounter(numKeys: number, keys: string[], args: string[]): Promise<unknown>;
  tallyDeleteCounter(numKeys: number, keys: string[], args: string[]): Promise<unknown>;
  tallyCreateCounter(numKeys: number, keys: string[], args: string[]): Promise<unknown>;
  tallyClaimKey(numKeys: number, keys: string[], args: string[]): Promise<unknown>;
  tallyCompleteKey(numKeys: number, keys: string[], args: string[]): Promise<unknown>;
  tallyReleaseKey(numKeys: number, keys: string[]): Promise<unknown>;
  tallyClaimInstance(numKeys: number, keys: string[], args: string[]): Promise<unknown>;
  tallyRenewInstance(numKeys: number, keys: string[], args: string[]): Promise<unknown>;
  tallyReleaseInstance(numKeys: number, keys: string[], args: string[]): Promise<unknown>;
}

/** Options for {@link RedisStore}. */
export interface RedisStoreOptions {
  /** Command connection; created with `enableOfflineQueue: false` so calls fail fast offline. */
  readonly client: RedisClient;
  /** Makes the pub/sub connection for `watch` (reconnects and resubscribes by itself). */
  readonly createSubscriber: () => RedisClient;
  /** Prefix of every key and of the channel. @default 'tally:' */
  readonly keyPrefix?: string;
  /** Hash-tagged shards (Redis Cluster); 1 = plain keys (standalone). @default 1 */
  readonly shards?: number;
  /** Logical database the client uses (standalone); part of the channel name. @default 0 */
  readonly db?: number;
  /** Where the client points, without credentials, for error messages. */
  readonly target: string;
  /** Longest wait for one command, in ms; a batch gets `batchTimeoutPerCounterMs` more per counter. @default 2000 */
  readonly commandTimeoutMs?: number;
  /** Extra time allowed per counter in a batch, in ms (measured: ~8 µs per counter). @default 0.05 */
  readonly batchTimeoutPerCounterMs?: number;
  /** How often the pub/sub connection is pinged to find a dead link, in ms. @default 15_000 */
  readonly subscriberHeartbeatMs?: number;
  /** Newest versions remembered to keep live values from stepping back. @default 100_000 */
  readonly maxTrackedNames?: number;
  /** Last connection error of the client(s), for messages. */
  readonly lastError?: () => Error | undefined;
  /**
   * Work on a Redis whose `maxmemory-policy` is not `noeviction` (keys may then be evicted:
   * idempotency records under `volatile-*`, counters under `allkeys-*`). @default false
   */
  readonly allowEviction?: boolean;
  /**
   * Replicas that must hold a write (Redis `WAIT`) before it counts as done; a batch they do not
   * confirm in `waitTimeoutMs` fails and is re-sent under its own seq. Standalone only. @default 0
   */
  readonly waitReplicas?: number;
  /** Longest `WAIT` for replicas, in ms. @default 1000 */
  readonly waitTimeoutMs?: number;
  /**
   * Record each counter's last write (a ZSET per shard) so `expireIdle` can find idle ones: one
   * more command per batch. Tally always sets it, so turning TALLY_EXPIRE_IDLE on later never
   * finds a counter that was written meanwhile looking idle. @default false
   */
  readonly trackLastWrite?: boolean;
}

/**
 * Counters as Redis strings, applied by Lua scripts (docs/redis.md has the key layout).
 *
 * Every write script bumps its shard's version and publishes `origin shard version` plus the new
 * values; the same version comes back in the reply, and the change feed (feed.ts) keeps both in
 * version order, so the store never returns a value older than one it already let out.
 */
export class RedisStore implements Store {
  readonly kind: string;
  private readonly client: RedisClient & ScriptCommands;
  private readonly layout: KeyLayout;
  private readonly commandTimeoutMs: number;
  private readonly perCounterMs: number;
  /** Tags this store's messages so `watch` skips them. */
  private readonly origin = randomBytes(6).toString('hex');
  private readonly feed: ChangeFeed;
  /** The scripts' flag: '1' when each write records its time (counters expire). */
  private readonly track: string;
  private lastRecycleAt = 0;
  private closed = false;
  /** Why Redis is refused: it may evict keys. Set by `checkEviction`, cleared when fixed. */
  private evictionProblem: string | undefined;
  private evictionTimer: NodeJS.Timeout | null = null;

  constructor(private readonly options: RedisStoreOptions) {
    this.layout = new KeyLayout(options.keyPrefix ?? 'tally:', options.shards ?? 1, options.db);
    this.kind = this.layout.shards.length === 1 ? 'redis' : 'redis-cluster';
    this.commandTimeoutMs = options.commandTimeoutMs ?? 2000;
    this.perCounterMs = options.batchTimeoutPerCounterMs ?? 0.05;
    this.track = options.trackLastWrite === true ? '1' : '0';
    this.feed = new ChangeFeed({
      createSubscriber: options.createSubscriber,
      channel: this.layout.channel,
      origin: this.origin,
      ...(options.subscriberHeartbeatMs === undefined
        ? {}
        : { heartbeatMs: options.subscriberHeartbeatMs }),
      ...(options.maxTrackedNames === undefined ? {} : { maxTracked: options.maxTrackedNames }),
      read: (names) => this.readVersions(names),
    });
    const client = options.client;
    client.defineCommand('tallyApplyBatch', { lua: APPLY_BATCH_LUA });
    client.defineCommand('tallySetCounter', { lua: SET_COUNTER_LUA });
    client.defineCommand('tallyDeleteCounter', { lua: DELETE_COUNTER_LUA });
    client.defineCommand('tallyCreateCounter', { lua: CREATE_COUNTER_LUA });
    client.defineCommand('tallyClaimKey', { lua: CLAIM_KEY_LUA });
    client.defineCommand('tallyCompleteKey', { lua: COMPLETE_KEY_LUA });
    client.defineCommand('tallyReleaseKey', { lua: RELEASE_KEY_LUA });
    client.defineCommand('tallyClaimInstance', { lua: CLAIM_INSTANCE_LUA });
    client.defineCommand('tallyRenewInstance', { lua: RENEW_INSTANCE_LUA });
    client.defineCommand('tallyReleaseInstance', { lua: RELEASE_INSTANCE_LUA });
    this.client = client as RedisClient & ScriptCommands;
  }

  async applyBatch(batch: Batch): Promise<BatchResult> {
    this.assertUsable();
    const groups = this.groupByShard(batch.deltas.keys());
    // Shards are separate scripts (separate slots); each is deduped by (instanceId, seq) on its
    // own, so a retry after a partial failure applies exactly the shards that were missed.
    // allSettled: never leave a sub-batch running behind a rejection the aggregator retries.
    const settled = await Promise.allSettled(
      [...groups].map(([shard, names]) => this.applyShard(shard, names, batch)),
    );
    // Also after a duplicate: the re-sent batch is confirmed once the replicas hold the first.
    if (settled.every((s) => s.status === 'fulfilled')) await this.replicated('applyBatch');
    const values = new Map<string, number>();
    const rejected: string[] = [];
    let duplicate = true;
    for (const s of settled) {
      if (s.status === 'rejected') throw s.reason;
      duplicate &&= s.value.duplicate;
      for (const [name, value] of s.value.values) values.set(name, value);
      rejected.push(...s.value.rejected);
    }
    return { values, duplicate: groups.size > 0 && duplicate, rejected };
  }

  private async applyShard(shard: ShardKeys, names: string[], batch: Batch): Promise<BatchResult> {
    const keys = [shard.seq, shard.names, shard.version, shard.touched];
    const args = [
      batch.instanceId,
      String(batch.seq),
      this.layout.channel,
      `${this.origin} ${shard.index}`,
      String(Buffer.byteLength(shard.counterPrefix)),
      this.track,
    ];
    for (const name of names) {
      keys.push(shard.counterPrefix + name);
      args.push(String(batch.deltas.get(name)));
    }
    const timeout = this.commandTimeoutMs + Math.ceil(names.length * this.perCounterMs);
    const reply = await this.timed(
      this.client.tallyApplyBatch(keys.length, keys, args),
      'applyBatch',
      timeout,
    );
    if (!Array.isArray(reply) || reply.length !== 4) throw badReply('applyBatch', reply);
    const [dup, version, rawValues, rawRejected] = reply as [number, number, unknown, unknown];
    if (!Array.isArray(rawValues) || rawValues.length !== names.length) {
      throw badReply('applyBatch', reply);
    }
    const values = new Map<string, number>();
    names.forEach((name, i) => {
      values.set(name, this.feed.newest(name, version, Number(rawValues[i])));
    });
    const rejected = Array.isArray(rawRejected)
      ? rawRejected.map((i) => names[Number(i) - 1] ?? '')
      : [];
    return { values, duplicate: dup === 1, rejected };
  }

  async lastSeq(instanceId: string): Promise<number> {
    this.assertUsable();
    // Each shard records the seqs that reached it; the instance's last seq is the highest.
    const seqs = await Promise.all(
      this.layout.shards.map((s) => this.timed(this.client.hget(s.seq, instanceId), 'lastSeq')),
    );
    return Math.max(0, ...seqs.map((s) => (s === null ? 0 : Number(s))));
  }

  async get(name: string): Promise<number> {
    this.assertUsable();
    const raw = await this.timed(this.client.get(this.layout.counterKey(name)), 'get');
    const value = parseValue(name, raw);
    // Version 0: older than any write, but remembered so a resync covers counters only read.
    if (this.feed.active && !this.feed.tracks(name)) this.feed.newest(name, 0, value);
    return value;
  }

  async set(name: string, value: number): Promise<void> {
    this.assertUsable();
    const shard = this.layout.shardOf(name);
    const reply = await this.timed(
      this.client.tallySetCounter(
        4,
        [shard.counterPrefix + name, shard.names, shard.version, shard.touched],
        [String(value), name, this.layout.channel, `${this.origin} ${shard.index}`, this.track],
      ),
      'set',
    );
    this.feed.newest(name, Number(reply), value);
    await this.replicated('set');
  }

  async delete(name: string): Promise<boolean> {
    this.assertUsable();
    return this.deleteIf(name, '', 'delete');
  }

  /** Deletes a counter, or with a cutoff only one last written before it; true if it did. */
  private async deleteIf(name: string, cutoff: string, what: string): Promise<boolean> {
    const shard = this.layout.shardOf(name);
    const reply = await this.timed(
      this.client.tallyDeleteCounter(
        5,
        [
          shard.counterPrefix + name,
          shard.names,
          shard.version,
          shard.metaPrefix + name,
          shard.touched,
        ],
        [name, this.layout.channel, `${this.origin} ${shard.index}`, cutoff],
      ),
      what,
    );
    if (!Array.isArray(reply) || reply.length !== 2) throw badReply(what, reply);
    const existed = Number(reply[0]) === 1;
    if (existed) this.feed.newest(name, Number(reply[1]), 0);
    await this.replicated(what);
    return existed;
  }

  async create(name: string, value: number, meta: string): Promise<boolean> {
    this.assertUsable();
    const shard = this.layout.shardOf(name);
    const reply = await this.timed(
      this.client.tallyCreateCounter(
        5,
        [
          shard.counterPrefix + name,
          shard.names,
          shard.version,
          shard.metaPrefix + name,
          shard.touched,
        ],
        [
          String(value),
          name,
          this.layout.channel,
          `${this.origin} ${shard.index}`,
          meta,
          this.track,
        ],
      ),
      'create',
    );
    if (!Array.isArray(reply) || reply.length !== 2) throw badReply('create', reply);
    const created = Number(reply[0]) === 1;
    if (created) this.feed.newest(name, Number(reply[1]), value);
    await this.replicated('create');
    return created;
  }

  async describe(name: string): Promise<CounterInfo | undefined> {
    this.assertUsable();
    const shard = this.layout.shardOf(name);
    // Three reads of one slot; not atomic, which a description need not be.
    const [raw, meta, touched] = await this.timed(
      Promise.all([
        this.client.get(shard.counterPrefix + name),
        this.client.get(shard.metaPrefix + name),
        this.client.zscore(shard.touched, name),
      ]),
      'describe',
    );
    if (raw === null && meta === null) return undefined;
    return {
      value: parseValue(name, raw),
      meta,
      touchedAt: touched === null ? null : Number(touched),
    };
  }

  async claimNamespace(namespace: string, record: string): Promise<boolean> {
    this.assertUsable();
    const ok = await this.timed(
      this.client.set(this.layout.namespaceKey(namespace), record, 'NX'),
      'claimNamespace',
    );
    await this.replicated('claimNamespace');
    return ok === 'OK';
  }

  async namespaceRecord(namespace: string): Promise<string | undefined> {
    this.assertUsable();
    const raw = await this.timed(
      this.client.get(this.layout.namespaceKey(namespace)),
      'namespaceRecord',
    );
    return raw ?? undefined;
  }

  async addVisitors(sets: ReadonlyMap<string, readonly string[]>): Promise<void> {
    this.assertUsable();
    // One PFADD per key, sent together (one slot each, so also on a cluster).
    await Promise.all(
      [...sets].map(([key, hashes]) =>
        hashes.length === 0
          ? undefined
          : this.timed(
              this.client.pfadd(this.layout.visitorKey(key), ...hashes),
              'addVisitors',
              this.commandTimeoutMs + Math.ceil(hashes.length * this.perCounterMs),
            ),
      ),
    );
    await this.replicated('addVisitors');
  }

  async countVisitors(keys: readonly string[]): Promise<number[]> {
    this.assertUsable();
    return Promise.all(
      keys.map((key) =>
        this.timed(this.client.pfcount(this.layout.visitorKey(key)), 'countVisitors'),
      ),
    );
  }

  async deleteVisitors(keys: readonly string[]): Promise<void> {
    this.assertUsable();
    await Promise.all(
      keys.map((key) => this.timed(this.client.del(this.layout.visitorKey(key)), 'deleteVisitors')),
    );
    await this.replicated('deleteVisitors');
  }

  async expireIdle(cutoff: number, limit: number): Promise<string[]> {
    this.assertUsable();
    const expired: string[] = [];
    for (const shard of this.layout.shards) {
      if (expired.length >= limit) break;
      const names = await this.timed(
        this.client.zrangebyscore(
          shard.touched,
          '-inf',
          `(${cutoff}`,
          'LIMIT',
          0,
          limit - expired.length,
        ),
        'expireIdle',
      );
      for (const name of names) {
        // Re-checked in the script: a write since the read keeps the counter.
        if (await this.deleteIf(name, String(cutoff), 'expireIdle')) expired.push(name);
      }
    }
    return expired;
  }

  async list(options: ListOptions = {}): Promise<ListPage> {
    this.assertUsable();
    const prefix = options.prefix ?? '';
    const limit = options.limit ?? 100;
    const after = decodeCursor(options.cursor);
    const min = after !== undefined && after >= prefix ? `(${after}` : `[${prefix}`;
    // Names are ASCII below DEL (0x7f), so prefix + DEL is above every name with the prefix.
    const max = prefix === '' ? '+' : `(${prefix}\x7f`;
    // Each shard's index is sorted; merge the first limit+1 of each.
    const perShard = await Promise.all(
      this.layout.shards.map((s) =>
        this.timed(this.client.zrangebylex(s.names, min, max, 'LIMIT', 0, limit + 1), 'list'),
      ),
    );
    const names = perShard
      .flat()
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
      .slice(0, limit + 1);
    const page = names.slice(0, limit);
    const byShard = this.groupByShard(page);
    const values = new Map<string, number>();
    await Promise.all(
      [...byShard].map(async ([shard, group]) => {
        const raw = await this.timed(
          this.client.mget(group.map((n) => shard.counterPrefix + n)),
          'list',
        );
        group.forEach((name, i) => {
          // Deleted between the two reads: the name is skipped, the page is one shorter.
          const v = raw[i];
          if (v !== null && v !== undefined) values.set(name, parseValue(name, v));
        });
      }),
    );
    const items = page
      .filter((n) => values.has(n))
      .map((n) => ({ name: n, value: values.get(n) ?? 0 }));
    const last = page[page.length - 1];
    return {
      items,
      nextCursor: names.length > limit && last !== undefined ? encodeCursor(last) : null,
    };
  }

  /**
   * Reads `maxmemory-policy` (through INFO: ElastiCache refuses CONFIG) on every master and
   * refuses the store while it is anything but `noeviction`, unless `allowEviction`. Runs at
   * start, on every reconnect, and every few seconds while refused, so fixing the policy is
   * picked up without a restart. Resolves with the problem, if any.
   */
  async checkEviction(): Promise<string | undefined> {
    if (this.options.allowEviction === true) return undefined;
    const client = this.client;
    const nodes =
      'nodes' in client && typeof client.nodes === 'function'
        ? (client as Cluster).nodes('master')
        : [client as Redis];
    const policies = await Promise.all(
      nodes.map(async (node) => {
        const info = await this.timed(node.info('memory'), 'checkEviction');
        return /^maxmemory_policy:(\S+)/m.exec(String(info))?.[1] ?? 'unknown';
      }),
    );
    const bad = policies.find((p) => p !== 'noeviction');
    this.evictionProblem =
      bad === undefined
        ? undefined
        : `Redis ${this.options.target} has maxmemory-policy ${bad}: it may evict Tally's keys ` +
          '(volatile-* policies evict idempotency records, so a retried request counts twice; ' +
          'allkeys-* evict counters). Set maxmemory-policy noeviction (ElastiCache: the ' +
          'parameter group), or TALLY_REDIS_ALLOW_EVICTION=true to accept the risk';
    if (this.evictionProblem !== undefined && this.evictionTimer === null && !this.closed) {
      this.evictionTimer = setInterval(() => {
        this.checkEviction().then(
          (problem) => {
            if (problem === undefined && this.evictionTimer !== null) {
              clearInterval(this.evictionTimer);
              this.evictionTimer = null;
            }
          },
          () => undefined,
        );
      }, EVICTION_RECHECK_MS);
      this.evictionTimer.unref();
    }
    return this.evictionProblem;
  }

  async ping(): Promise<void> {
    this.assertUsable();
    const client = this.client;
    if ('nodes' in client && typeof client.nodes === 'function') {
      // A cluster is ready only when every master (every slot) answers.
      const masters = (client as Cluster).nodes('master');
      if (masters.length === 0) throw this.unavailable('ping');
      await Promise.all(masters.map((node) => this.timed(node.ping(), 'ping')));
      return;
    }
    await this.timed(client.ping(), 'ping');
  }

  async claimKey(
    key: string,
    fingerprint: string,
    leaseMs: number,
    maxKeys: number,
  ): Promise<KeyClaim> {
    this.assertUsable();
    const { record, live } = this.layout.idempotencyKeys(key);
    // Each shard holds its share of the cap: one shard's count is all a script can see.
    const perShard = Math.ceil(maxKeys / this.layout.shards.length);
    const reply = await this.timed(
      this.client.tallyClaimKey(
        2,
        [record, live],
        [fingerprint, String(leaseMs), String(perShard)],
      ),
      'claimKey',
    );
    if (!Array.isArray(reply) || ![0, 1, 2].includes(reply[0] as number))
      throw badReply('claimKey', reply);
    if (reply[0] === 1) return { fresh: true };
    if (reply[0] === 2) return { fresh: false, full: true };
    return {
      fresh: false,
      fingerprint: String(reply[1]),
      result: reply[2] == null ? null : String(reply[2]),
    };
  }

  async completeKey(key: string, result: string, ttlMs: number): Promise<void> {
    this.assertUsable();
    await this.timed(
      this.client.tallyCompleteKey(2, Object.values(this.layout.idempotencyKeys(key)), [
        result,
        String(ttlMs),
      ]),
      'completeKey',
    );
  }

  async releaseKey(key: string): Promise<void> {
    this.assertUsable();
    const { record, live } = this.layout.idempotencyKeys(key);
    await this.timed(this.client.tallyReleaseKey(2, [record, live]), 'releaseKey');
  }

  async claimInstance(
    instanceId: string,
    holder: string,
    leaseMs: number,
    takeoverEpoch?: number,
  ): Promise<InstanceClaim> {
    this.assertUsable();
    const reply = await this.timed(
      this.client.tallyClaimInstance(
        1,
        [this.layout.instanceKey(instanceId)],
        [holder, String(leaseMs), takeoverEpoch === undefined ? '' : String(takeoverEpoch)],
      ),
      'claimInstance',
    );
    if (Array.isArray(reply) && reply[0] === 1 && reply.length === 2) {
      return { granted: true, epoch: Number(reply[1]) };
    }
    if (Array.isArray(reply) && reply[0] === 0 && reply.length === 4) {
      return {
        granted: false,
        epoch: Number(reply[1]),
        holder: String(reply[2]),
        expiresInMs: Number(reply[3]),
      };
    }
    throw badReply('claimInstance', reply);
  }

  async renewInstance(instanceId: string, epoch: number, leaseMs: number): Promise<boolean> {
    this.assertUsable();
    const reply = await this.timed(
      this.client.tallyRenewInstance(
        1,
        [this.layout.instanceKey(instanceId)],
        [String(epoch), String(leaseMs)],
      ),
      'renewInstance',
    );
    if (reply !== 0 && reply !== 1) throw badReply('renewInstance', reply);
    return reply === 1;
  }

  async releaseInstance(instanceId: string, epoch: number): Promise<void> {
    this.assertUsable();
    await this.timed(
      this.client.tallyReleaseInstance(1, [this.layout.instanceKey(instanceId)], [String(epoch)]),
      'releaseInstance',
    );
  }

  watch(listener: ChangeListener): () => void {
    return this.feed.watch(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.evictionTimer !== null) clearInterval(this.evictionTimer);
    this.feed.close();
    this.client.disconnect();
  }

  /** A resync's read: tracked counters with their shard versions, one MULTI per 1000 names. */
  private async readVersions(names: string[]): Promise<VersionedValue[]> {
    this.assertUsable();
    const rows: VersionedValue[] = [];
    for (const [shard, group] of this.groupByShard(names)) {
      for (let i = 0; i < group.length; i += 1000) {
        const chunk = group.slice(i, i + 1000);
        const replies = await this.timed(
          this.client
            .multi()
            .get(shard.version)
            .mget(chunk.map((n) => shard.counterPrefix + n))
            .exec(),
          'resync',
        );
        const version = Number(replies?.[0]?.[1] ?? 0);
        const values = replies?.[1]?.[1];
        if (!Array.isArray(values)) throw badReply('resync', replies);
        chunk.forEach((name, j) => {
          rows.push({
            name,
            version,
            value: parseValue(name, (values[j] as string | null) ?? null),
          });
        });
      }
    }
    return rows;
  }

  /**
   * Drops and reopens the command connection after a timeout. A hung Redis or a link that died
   * silently would otherwise stay "ready" while every retry queues another command on it; the
   * reconnect fails what is queued and finds out whether Redis is really there.
   */
  private recycle(): void {
    const now = Date.now();
    if (this.closed || now - this.lastRecycleAt < this.commandTimeoutMs) return;
    if (this.client.status !== 'ready') return;
    this.lastRecycleAt = now;
    this.client.disconnect(true);
  }

  private groupByShard(names: Iterable<string>): Map<ShardKeys, string[]> {
    const groups = new Map<ShardKeys, string[]>();
    for (const name of names) {
      const shard = this.layout.shardOf(name);
      const group = groups.get(shard);
      if (group === undefined) groups.set(shard, [name]);
      else group.push(name);
    }
    return groups;
  }

  /**
   * With `waitReplicas`, resolves once that many replicas hold every write this connection made
   * (Redis `WAIT`); otherwise rejects, so the caller keeps the work and sends it again. A primary
   * that dies before its replica has a batch then loses nothing acknowledged: the batch is still
   * in the log, and the promoted replica applies it once (or skips it, by seq).
   */
  private async replicated(what: string): Promise<void> {
    const needed = this.options.waitReplicas ?? 0;
    if (needed === 0) return;
    const ms = this.options.waitTimeoutMs ?? 1000;
    const acked = Number(
      await this.timed((this.client as Redis).wait(needed, ms), what, ms + this.commandTimeoutMs),
    );
    if (acked < needed) {
      throw new Error(
        `Redis ${this.options.target}: ${what} held by ${acked} of ${needed} replicas after ` +
          `${ms} ms (TALLY_REDIS_WAIT_REPLICAS); kept, and sent again`,
      );
    }
  }

  private assertUsable(): void {
    if (this.closed) throw new Error('redis store is closed');
    if (this.client.status !== 'ready') throw this.unavailable('command');
    if (this.evictionProblem !== undefined) throw new Error(this.evictionProblem);
  }

  private unavailable(what: string): Error {
    const cause = this.options.lastError?.();
    const why = cause === undefined ? `connection ${this.client.status}` : cause.message;
    return new Error(`Redis ${this.options.target} is unreachable (${what}): ${why}`, { cause });
  }

  /**
   * Bounds a command in time. A command that timed out may still run later: writes are safe
   * because batches are deduped by (instanceId, seq).
   */
  private timed<T>(p: Promise<T>, what: string, ms = this.commandTimeoutMs): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`Redis ${this.options.target}: ${what} got no answer in ${ms} ms`));
        this.recycle();
      }, ms);
      p.then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(
            err instanceof Error && /writeable|connection is closed|max retries/i.test(err.message)
              ? this.unavailable(what)
              : err,
          );
        },
      );
    });
  }
}

/** How often a store refused for its eviction policy looks again, in ms. */
const EVICTION_RECHECK_MS = 5000;

function parseValue(name: string, raw: string | null): number {
  if (raw === null) return 0;
  const value = Number(raw);
  if (!Number.isSafeInteger(value)) {
    throw new Error(`Redis holds a non-integer value for counter "${name}"`);
  }
  return value;
}

function badReply(what: string, reply: unknown): Error {
  return new Error(
    `unexpected reply from Redis to ${what}: ${JSON.stringify(reply)?.slice(0, 200)}`,
  );
}
