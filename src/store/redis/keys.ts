/** @module store/redis/keys — the Redis key layout (docs/redis.md), standalone and sharded. */

/** Redis Cluster's slot count: CRC16(key) mod 16384. */
const CLUSTER_SLOTS = 16384;

/** The keys of one shard: a counter's keys always live together with its shard's bookkeeping. */
export interface ShardKeys {
  readonly index: number;
  /** Prefix of every key in this shard, e.g. `tally:` or `tally:{s3.0}:`. */
  readonly base: string;
  /** HASH instanceId → last applied batch seq (decimal string). */
  readonly seq: string;
  /** ZSET of counter names, all scored 0, for ZRANGEBYLEX listing. */
  readonly names: string;
  /** STRING integer bumped by every write script; orders pub/sub messages per shard. */
  readonly version: string;
  /** Prefix of the counter STRING keys (`<base>c:<name>`). */
  readonly counterPrefix: string;
  /** Prefix of the STRING keys holding created counters' settings (`<base>m:<name>`, JSON). */
  readonly metaPrefix: string;
  /** ZSET counter name → time of its last write (ms), kept while counters expire. */
  readonly touched: string;
}

/**
 * Maps counter names to keys. With one shard (standalone Redis) the keys carry no hash tag. With
 * N shards (Redis Cluster) each shard's keys share one hash tag, chosen so the N tags fall into N
 * equal slot ranges; a counter belongs to shard FNV-1a(name) mod N. N must never change for a
 * given prefix: counters would move to other keys.
 */
export class KeyLayout {
  readonly shards: readonly ShardKeys[];
  /**
   * Pub/sub channel of value changes. Channels are not keys (no slot) and are shared by all
   * logical databases, so a database other than 0 is part of the name.
   */
  readonly channel: string;

  constructor(
    readonly prefix: string,
    shardCount: number,
    db = 0,
  ) {
    if (!Number.isInteger(shardCount) || shardCount < 1 || shardCount > 1024) {
      throw new RangeError('shard count must be an integer from 1 to 1024');
    }
    this.channel = db === 0 ? `${prefix}changes` : `${prefix}changes@${db}`;
    const shards: ShardKeys[] = [];
    for (let i = 0; i < shardCount; i++) {
      const base = shardCount === 1 ? prefix : `${prefix}{${shardTag(i, shardCount)}}:`;
      shards.push({
        index: i,
        base,
        seq: `${base}seq`,
        names: `${base}names`,
        version: `${base}ver`,
        counterPrefix: `${base}c:`,
        metaPrefix: `${base}m:`,
        touched: `${base}touched`,
      });
    }
    this.shards = shards;
  }

  /** The shard that holds a counter. */
  shardOf(name: string): ShardKeys {
    const n = this.shards.length;
    const shard = this.shards[n === 1 ? 0 : fnv1a(name) % n];
    if (shard === undefined) throw new Error('unreachable: shard index out of range');
    return shard;
  }

  counterKey(name: string): string {
    return this.shardOf(name).counterPrefix + name;
  }

  /**
   * The keys of one Idempotency-Key: its `record` (HASH `fp`, `result`, expiring by itself) and
   * the `live` ZSET of its shard, which counts the shard's live records for the cap. A key's shard
   * is picked as a counter's is (so `<prefix>idem:<key>` with one shard).
   */
  idempotencyKeys(key: string): { readonly record: string; readonly live: string } {
    const { base } = this.shardOf(key);
    return { record: `${base}idem:${key}`, live: `${base}idem-live` };
  }

  /** The HyperLogLog of one visitor key (PFADD/PFCOUNT), in the key's own slot. */
  visitorKey(key: string): string {
    return `${this.prefix}u:{${key}}`;
  }

  /** STRING of one namespace's claim (JSON), in the namespace's own slot. */
  namespaceKey(namespace: string): string {
    return `${this.prefix}{n:${namespace}}:claim`;
  }

  /**
   * HASH of one instance id's claim (`epoch`, `holder`, `expires`: Redis TIME in ms). It never
   * expires, so epochs only grow. The hash tag `{i:<instanceId>}` is the instance's own slot:
   * any key added for an instance id must carry the same tag, so no script spans slots.
   */
  instanceKey(instanceId: string): string {
    return `${this.prefix}{i:${instanceId}}:claim`;
  }
}

/**
 * Hash tag of shard `i` of `n`: the first `s<i>.<k>` whose slot lies in the i-th of n equal slot
 * ranges. Clusters split slots into contiguous ranges, so this spreads shards evenly over masters.
 */
export function shardTag(i: number, n: number): string {
  const low = Math.floor((i * CLUSTER_SLOTS) / n);
  const high = Math.floor(((i + 1) * CLUSTER_SLOTS) / n);
  for (let k = 0; ; k++) {
    const tag = `s${i}.${k}`;
    const slot = keySlot(tag);
    if (slot >= low && slot < high) return tag;
  }
}

/** Redis Cluster slot of a key (or hash tag): CRC16/XMODEM mod 16384. */
export function keySlot(key: string): number {
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) key = key.slice(open + 1, close);
  }
  return crc16(Buffer.from(key, 'utf8')) % CLUSTER_SLOTS;
}

function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
  }
  return crc;
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}
