// Redis-specific store behaviour: URLs, key layout, replay after a timeout, pub/sub, outages.
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Batch, Store } from '../../src/store/interface.js';
import { GuardedConnector, openRedisStore } from '../../src/store/redis/factory.js';
import { KeyLayout, keySlot, shardTag } from '../../src/store/redis/keys.js';
import type { RedisStore } from '../../src/store/redis/store.js';
import { parseRedisUrl, parseRedisUrls, RedisUrlError } from '../../src/store/redis/url.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { freePort } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const MAX = Number.MAX_SAFE_INTEGER;

// Test-only TLS material (EC P-256, valid until 2126): a CA and a certificate for 127.0.0.1 and
// localhost that it signed. Embedded so the test needs no openssl; never use it anywhere else.
const TEST_CA = `-----BEGIN CERTIFICATE-----
MIIBhzCCAS2gAwIBAgIUWA9AxuWo4xL3Zr7pa6MEsWXi1LAwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNdGFsbHktdGVzdC1jYTAgFw0yNjExMjgwNTE5MDRaGA8yMTI2
MTEwNDA1MTkwNFowGDEWMBQGA1UEAwwNdGFsbHktdGVzdC1jYTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABA8ubb3/XZDoruNZZD6N7Ei6w998AnXovWfWu2SmQ0dT
HYpDP/ymgramLFdNY+S8em4OpilueKsqUuqmy2jrLRKjUzBRMB0GA1UdDgQWBBRC
aKrnkr5Ao05BERpEN/8MxU7AajAfBgNVHSMEGDAWgBRCaKrnkr5Ao05BERpEN/8M
xU7AajAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIBIK71hpjB6B
AjdF6M8TPKrEB9JqdVmW2G99LD7rxBPCAiEA2YRw4nk1Z5HtM/YAvfMCZL7KCwSo
9We7SrS6ajKgEWw=
-----END CERTIFICATE-----
`;
const TEST_SERVER_CERT = `-----BEGIN CERTIFICATE-----
MIIBjjCCATSgAwIBAgIUeQmFDsALwoeRsAYShTwcQZBMCT0wCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNdGFsbHktdGVzdC1jYTAgFw0yNjExMjgwNTE5MDRaGA8yMTI2
MTEwNDA1MTkwNFowFDESMBAGA1UEAwwJbG9jYWxob3N0MFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAEnN14XOz53L9sVaAH8mtCWAL0sZsMbDsqqtFdrNCSDJyzweBz
a+Px1m7WmAJfuC0lDyEIPgn49K5R26pxlC36q6NeMFwwGgYDVR0RBBMwEYcEfwAA
AYIJbG9jYWxob3N0MB0GA1UdDgQWBBTCD5vLl3U6YqHfrvsHz1esAc36gTAfBgNV
HSMEGDAWgBRCaKrnkr5Ao05BERpEN/8MxU7AajAKBggqhkjOPQQDAgNIADBFAiEA
g9WzxHPCdmbtvGgK+C8v62dJ7Y4UtZg04c4MXAxkPPUCIFOKS8iMYB6kvfv0aYnD
XZjKt7ljcqHWOtyHBrX70Q1Q
-----END CERTIFICATE-----
`;
const TEST_SERVER_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgrOY4/W/TyfsaDQ+V
Ffr01jVmI6Ie7PDY8pAmGO4k2pqhRANCAASc3Xhc7Pncv2xVoAfya0JYAvSxmwxs
Oyqq0V2s0JIMnLPB4HNr4/HWbtaYAl+4LSUPIQg+Cfj0rlHbqnGULfqr
-----END PRIVATE KEY-----
`;
const prefix = () => `rt-${randomUUID().slice(0, 8)}:`;
const batch = (instanceId: string, seq: number, deltas: Record<string, number>): Batch => ({
  instanceId,
  seq,
  deltas: new Map(Object.entries(deltas)),
});

async function eventually(check: () => Promise<boolean> | boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A TCP proxy to Redis. `dropReplies` swallows replies while commands still pass (a link that
 * broke after the request went out); `killLinks()` silently stops every open connection in both
 * directions without closing it (a peer gone without FIN or RST); new connections work.
 */
async function flakyProxy(redisPort: number) {
  const links = new Set<{ dead: boolean; sockets: Socket[] }>();
  const state = { dropReplies: false };
  const server = createServer((client) => {
    const upstream = connect(redisPort, '127.0.0.1');
    const link = { dead: false, sockets: [client, upstream] };
    links.add(link);
    client.on('data', (d) => {
      if (!link.dead) upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (!link.dead && !state.dropReplies) client.write(d);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      links.delete(link);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    state,
    killLinks() {
      for (const link of links) link.dead = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const link of links) for (const sock of link.sockets) sock.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('TALLY_REDIS_URL parsing', () => {
  it('reads host, port, db, TLS and credentials', () => {
    expect(parseRedisUrl('redis://127.0.0.1')).toEqual({
      host: '127.0.0.1',
      port: 6379,
      username: undefined,
      password: undefined,
      db: 0,
      tls: false,
    });
    expect(parseRedisUrl('rediss://alice:s3cret@cache.example.com:6380/4')).toEqual({
      host: 'cache.example.com',
      port: 6380,
      username: 'alice',
      password: 's3cret',
      db: 4,
      tls: true,
    });
    expect(parseRedisUrl('redis://[::1]:7000/').host).toBe('::1');
  });

  it('takes an ElastiCache AUTH token with special characters as the password', () => {
    const t = parseRedisUrl('rediss://:Tok#en?with!&$^<>-chars@master.x.cache.amazonaws.com:6379');
    expect(t.username).toBeUndefined();
    expect(t.password).toBe('Tok#en?with!&$^<>-chars');
    expect(t.host).toBe('master.x.cache.amazonaws.com');
    expect(parseRedisUrl('redis://:p%25ct%40x@h').password).toBe('p%ct@x');
  });

  it('refuses what it cannot use, without echoing the password', () => {
    for (const bad of ['http://h:1', 'redis://', 'redis://h:99999', 'redis://h/x', 'h:6379']) {
      expect(() => parseRedisUrl(bad), bad).toThrow(RedisUrlError);
    }
    expect(() => parseRedisUrl('redis://:hunter2@h:1/x')).toThrow(/\*\*\*@h/);
    expect(() => parseRedisUrl('redis://:hunter2@h:1/x')).not.toThrow(/hunter2/);
    expect(() => parseRedisUrls('redis://a:1, rediss://b:2')).toThrow(/same scheme/);
    expect(parseRedisUrls('redis://a:1,redis://b:2').map((t) => t.port)).toEqual([1, 2]);
  });
});

describe('key layout', () => {
  it('computes Redis Cluster slots (CRC16/XMODEM, hash tags)', () => {
    expect(keySlot('123456789')).toBe(0x31c3);
    expect(keySlot('foo')).toBe(12182);
    expect(keySlot('x{foo}y')).toBe(12182);
  });

  it('spreads cluster shards over equal slot ranges and keeps a shard’s keys in one slot', () => {
    for (let i = 0; i < 16; i++) {
      const slot = keySlot(shardTag(i, 16));
      expect(slot).toBeGreaterThanOrEqual(i * 1024);
      expect(slot).toBeLessThan((i + 1) * 1024);
    }
    const layout = new KeyLayout('app:', 16);
    const shard = layout.shardOf('clicks');
    const slots = new Set(
      [shard.seq, shard.names, shard.version, layout.counterKey('clicks')].map(keySlot),
    );
    expect(slots.size).toBe(1);
    expect(new KeyLayout('app:', 1).counterKey('clicks')).toBe('app:c:clicks');
  });
});

describe('RedisStore against a real redis-server', () => {
  let redis: RedisServer;
  let admin: Redis;
  const open: Store[] = [];
  const openStore = async (keyPrefix: string, extra: { commandTimeoutMs?: number } = {}) => {
    const store = await openRedisStore({ url: redis.url, keyPrefix, ...extra });
    open.push(store);
    return store;
  };

  beforeAll(async () => {
    redis = await startRedis();
    admin = new Redis(redis.port, '127.0.0.1', { lazyConnect: true });
    admin.on('error', () => {});
    await admin.connect();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
  });
  afterAll(async () => {
    admin?.disconnect();
    await redis?.close();
  });

  it('keeps exactly the documented keys, each with its documented type', async () => {
    const p = prefix();
    const store = await openStore(p);
    await store.applyBatch(batch('i1', 1, { a: 1, b: 2 }));
    await store.set('c', 5);
    await store.delete('b');
    await store.claimKey('k1', 'f', 60_000, 1_000_000);
    await store.claimInstance('web-1', 'host pid 1', 60_000);
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, found] = await admin.scan(cursor, 'MATCH', `${p}*`, 'COUNT', 1000);
      keys.push(...found);
      cursor = next;
    } while (cursor !== '0');
    const types = Object.fromEntries(
      await Promise.all(keys.map(async (k) => [k.slice(p.length), await admin.type(k)])),
    );
    expect(types).toEqual({
      'c:a': 'string',
      'c:c': 'string',
      'idem:k1': 'hash',
      'idem-live': 'zset',
      '{i:web-1}:claim': 'hash',
      names: 'zset',
      seq: 'hash',
      ver: 'string',
    });
    expect(await admin.zrange(`${p}names`, 0, -1)).toEqual(['a', 'c']);
    expect(await admin.hget(`${p}seq`, 'i1')).toBe('1');
    // Another prefix on the same Redis sees nothing of this one.
    const other = await openStore(prefix());
    expect(await other.get('a')).toBe(0);
    expect((await other.list()).items).toEqual([]);
  });

  it('lists without KEYS or SCAN', async () => {
    const store = await openStore(prefix());
    const deltas: Record<string, number> = {};
    for (let i = 0; i < 250; i++) deltas[`n:${String(i).padStart(3, '0')}`] = i;
    await store.applyBatch(batch('i1', 1, deltas));
    await admin.config('RESETSTAT');
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await store.list({ prefix: 'n:', limit: 100, cursor });
      seen.push(...page.items.map((i) => i.name));
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined);
    expect(seen).toEqual(Object.keys(deltas));
    const stats = await admin.info('commandstats');
    expect(stats).toContain('cmdstat_zrangebylex');
    expect(stats).not.toMatch(/cmdstat_(keys|scan):/);
  });

  it('shares Idempotency-Key claims between instances, with leases and answers that expire', async () => {
    const p = prefix();
    const a = await openStore(p);
    const b = await openStore(p);
    const key = 'client {7} retry #1';
    expect(await a.claimKey(key, 'inc x 1', 5000, 1_000_000)).toEqual({ fresh: true });
    // The same key on the other instance: the first request is still running.
    expect(await b.claimKey(key, 'inc x 1', 5000, 1_000_000)).toEqual({
      fresh: false,
      fingerprint: 'inc x 1',
      result: null,
    });
    await a.completeKey(key, '{"status":202}', 60_000);
    expect(await b.claimKey(key, 'other', 5000, 1_000_000)).toEqual({
      fresh: false,
      fingerprint: 'inc x 1',
      result: '{"status":202}',
    });
    const ttl = await admin.pttl(`${p}idem:${key}`);
    expect(ttl).toBeGreaterThan(50_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    // A failed request releases its claim: the retry is processed afresh.
    await b.releaseKey(key);
    expect(await a.claimKey(key, 'inc x 1', 100, 1_000_000)).toEqual({ fresh: true });
    // A lease that runs out (the claiming process died) frees the key too.
    await new Promise((r) => setTimeout(r, 150));
    expect(await b.claimKey(key, 'inc x 1', 5000, 1_000_000)).toEqual({ fresh: true });
    // Completing a claim that already expired saves nothing.
    await a.claimKey('gone', 'f', 50, 1_000_000);
    await new Promise((r) => setTimeout(r, 100));
    await a.completeKey('gone', 'late', 60_000);
    expect(await admin.exists(`${p}idem:gone`)).toBe(0);
  });

  it('shares instance claims between stores, with leases on Redis’s clock', async () => {
    const p = prefix();
    const a = await openStore(p);
    const b = await openStore(p);
    expect(await a.claimInstance('web-1', 'host-a pid 10', 60_000)).toEqual({
      granted: true,
      epoch: 1,
    });
    // The expiry is Redis TIME plus the lease: no client clock is involved.
    const [seconds, micros] = await admin.time();
    const redisNow = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    const record = await admin.hgetall(`${p}{i:web-1}:claim`);
    expect(record).toMatchObject({ epoch: '1', holder: 'host-a pid 10' });
    expect(Number(record.expires) - redisNow).toBeGreaterThan(59_000);
    expect(Number(record.expires) - redisNow).toBeLessThanOrEqual(60_000);
    // The record never expires by itself: epochs must survive lapsed leases.
    expect(await admin.pttl(`${p}{i:web-1}:claim`)).toBe(-1);
    expect(await b.claimInstance('web-1', 'host-b pid 20', 60_000)).toMatchObject({
      granted: false,
      epoch: 1,
      holder: 'host-a pid 10',
    });
    expect(await b.claimInstance('web-1', 'host-b pid 20', 60_000, 1)).toEqual({
      granted: true,
      epoch: 2,
    });
    expect(await a.renewInstance('web-1', 1, 60_000)).toBe(false);
    await a.releaseInstance('web-1', 1);
    expect(await admin.hget(`${p}{i:web-1}:claim`, 'holder')).toBe('host-b pid 20');
    await b.releaseInstance('web-1', 2);
    expect(await a.claimInstance('web-1', 'host-a pid 11', 60_000)).toEqual({
      granted: true,
      epoch: 3,
    });
  });

  it('counts a batch once when it is re-sent after a timeout that hid its success', async () => {
    // Between the store and Redis: commands pass, replies can be swallowed (a link that broke
    // after the request went out).
    const proxy = await flakyProxy(redis.port);
    try {
      const keyPrefix = prefix();
      const store = await openRedisStore({
        url: `redis://127.0.0.1:${proxy.port}`,
        keyPrefix,
        commandTimeoutMs: 300,
      });
      open.push(store);
      await store.applyBatch(batch('i1', 1, { replay: 10 }));
      proxy.state.dropReplies = true;
      const started = Date.now();
      await expect(store.applyBatch(batch('i1', 2, { replay: 5, other: 1 }))).rejects.toThrow(
        /no answer in \d+ ms/,
      );
      expect(Date.now() - started).toBeLessThan(1500);
      // Redis did apply it; only the reply was lost.
      expect(await admin.get(`${keyPrefix}c:replay`)).toBe('15');
      proxy.state.dropReplies = false;
      // The store dropped the silent connection and opens a new one by itself.
      await eventually(() =>
        store.ping().then(
          () => true,
          () => false,
        ),
      );
      const again = await store.applyBatch(batch('i1', 2, { replay: 5, other: 1 }));
      expect(again.duplicate).toBe(true);
      expect(Object.fromEntries(again.values)).toEqual({ replay: 15, other: 1 });
      expect(await store.get('replay')).toBe(15);
      expect(await store.lastSeq('i1')).toBe(2);
      const next = await store.applyBatch(batch('i1', 3, { replay: 1 }));
      expect(next.duplicate).toBe(false);
      expect(await store.get('replay')).toBe(16);
    } finally {
      await proxy.close();
    }
  });

  it('gives up on a hung Redis quickly, reconnects, and counts the retried batch once', async () => {
    const store = await openStore(prefix(), { commandTimeoutMs: 300 });
    await store.applyBatch(batch('i1', 1, { hung: 1 }));
    redis.pause();
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        const started = Date.now();
        await expect(store.applyBatch(batch('i1', 2, { hung: 1 }))).rejects.toThrow(
          /no answer|unreachable/,
        );
        expect(Date.now() - started).toBeLessThan(1000);
      }
    } finally {
      redis.resume();
    }
    await eventually(() =>
      store.ping().then(
        () => true,
        () => false,
      ),
    );
    // Applied once, whether or not an attempt sent while Redis was frozen got through.
    await store.applyBatch(batch('i1', 2, { hung: 1 }));
    expect(await store.get('hung')).toBe(2);
  });

  it('refuses exactly at ±(2^53-1) and refuses values it did not write, atomically', async () => {
    const p = prefix();
    const store = await openStore(p);
    await store.set('top', MAX - 3);
    await store.set('bottom', -MAX);
    await admin.set(`${p}c:junk`, 'not-a-number');
    const r = await store.applyBatch(batch('i1', 1, { top: 3, bottom: -1, junk: 1, ok: 7 }));
    expect([...r.rejected].sort()).toEqual(['bottom', 'junk']);
    expect(r.values.get('top')).toBe(MAX);
    expect(await store.get('bottom')).toBe(-MAX);
    expect(await admin.get(`${p}c:junk`)).toBe('not-a-number');
    expect(await store.get('ok')).toBe(7);
    const over = await store.applyBatch(batch('i1', 2, { top: 1 }));
    expect(over.rejected).toEqual(['top']);
    expect(await admin.get(`${p}c:top`)).toBe(String(MAX));
    expect(await store.lastSeq('i1')).toBe(2);
  });

  it('fails a whole batch, changing nothing, when a bookkeeping key has the wrong type', async () => {
    const p = prefix();
    const store = await openStore(p);
    await store.applyBatch(batch('i1', 1, { old: 5 }));
    await admin.del(`${p}names`);
    await admin.set(`${p}names`, 'clobbered');
    await expect(store.applyBatch(batch('i1', 2, { a: 1, old: 2 }))).rejects.toThrow(/WRONGTYPE/);
    // Counters and the seq are as before; only the version moved (it only has to grow).
    expect(await admin.exists(`${p}c:a`)).toBe(0);
    expect(await store.get('old')).toBe(5);
    expect(await store.lastSeq('i1')).toBe(1);
    await admin.del(`${p}names`);
    await store.applyBatch(batch('i1', 2, { a: 1, old: 2 }));
    expect(await store.get('old')).toBe(7);
    expect(await store.get('a')).toBe(1);
    // A clobbered version key or seq hash fails before the first write.
    const seqs = await admin.hgetall(`${p}seq`);
    for (const key of [`${p}ver`, `${p}seq`]) {
      const dump = await admin.dumpBuffer(key);
      await admin.del(key);
      await admin.sadd(key, 'clobbered');
      await expect(store.applyBatch(batch('i1', 3, { a: 1, b: 1 }))).rejects.toThrow(/WRONGTYPE/);
      expect(await admin.exists(`${p}c:b`)).toBe(0);
      expect(await store.get('a')).toBe(1);
      await admin.del(key);
      if (dump !== null) await admin.restore(key, 0, dump);
    }
    expect(await admin.hgetall(`${p}seq`)).toEqual(seqs);
  });

  it('survives a socket that errs more than once (ioredis listens once)', async () => {
    const connect = (guarded: boolean) =>
      new Redis(redis.port, '127.0.0.1', {
        ...(guarded ? { Connector: GuardedConnector as never } : {}),
        retryStrategy: () => 50,
      });
    const twice = async (client: Redis) => {
      await client.ping();
      const stream = (client as unknown as { stream: NodeJS.EventEmitter }).stream;
      client.on('error', () => {});
      stream.emit('error', new Error('first'));
      stream.emit('error', new Error('second'));
    };
    // The plain connector: the second error has no listener left and is thrown.
    const plain = connect(false);
    await expect(twice(plain)).rejects.toThrow('second');
    plain.disconnect();
    // Ours: swallowed; the client reconnects and keeps answering.
    const guarded = connect(true);
    await twice(guarded);
    await eventually(async () => (await guarded.ping().catch(() => '')) === 'PONG');
    guarded.disconnect();
  });

  it('keeps set and delete ordered against batches other instances keep applying', async () => {
    const p = prefix();
    const flusher = await openStore(p);
    const admin2 = await openStore(p);
    const returned: number[] = [];
    // Batches keep coming until 50 have landed after the delete, however fast Redis is.
    let stopAt = 10_000;
    const running = (async () => {
      for (let seq = 1; returned.length < stopAt; seq++) {
        returned.push((await flusher.applyBatch(batch('f', seq, { x: 1 }))).values.get('x') ?? NaN);
      }
    })();
    await eventually(() => returned.length >= 50);
    await admin2.set('x', 1000);
    // Batches must land between the set and the delete, however long the set took to answer.
    const afterSet = returned.length;
    await eventually(() => returned.length >= afterSet + 50);
    expect(await admin2.delete('x')).toBe(true);
    stopAt = returned.length + 50;
    await running;
    // Every batch added exactly 1 to what the previous one, the set or the delete left.
    let jumps = 0;
    for (let i = 1; i < returned.length; i++) {
      const prev = returned[i - 1] as number;
      const cur = returned[i] as number;
      if (cur !== prev + 1) {
        jumps++;
        expect([1001, 1]).toContain(cur);
      }
    }
    expect(jumps).toBe(2);
    expect(await flusher.get('x')).toBe(returned[returned.length - 1]);
  });

  it('tells other stores on the same prefix about batches, sets and deletes, not itself', async () => {
    const p = prefix();
    const a = (await openStore(p)) as RedisStore;
    const b = (await openStore(p)) as RedisStore;
    const stranger = (await openStore(prefix())) as RedisStore;
    const atB: Array<Record<string, number>> = [];
    const atA: Array<Record<string, number>> = [];
    const atStranger: unknown[] = [];
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    // A listener that throws must not take the connection (or the process) down.
    b.watch(() => {
      throw new Error('faulty listener');
    });
    b.watch((c) => atB.push(Object.fromEntries(c)));
    a.watch((c) => atA.push(Object.fromEntries(c)));
    stranger.watch((c) => atStranger.push(c));
    // Let the SUBSCRIBEs land before publishing.
    await eventually(async () => (await admin.pubsub('NUMSUB', `${p}changes`))[1] === 2);
    await a.applyBatch(batch('ia', 1, { x: 2, y: 3 }));
    await a.set('z', 40);
    await a.delete('y');
    await eventually(() => atB.length === 3);
    expect(atB).toEqual([{ x: 2, y: 3 }, { z: 40 }, { y: 0 }]);
    expect(atA).toEqual([]);
    expect(atStranger).toEqual([]);
    await eventually(() => warnings.length === 3);
    process.off('warning', onWarning);
    expect(warnings[0]?.message).toBe('faulty listener');
  });

  it('re-reads what it tracks when its subscription comes back, so no change is lost', async () => {
    const p = prefix();
    const a = await openStore(p);
    const b = (await openStore(p)) as RedisStore;
    const atB: Array<Record<string, number>> = [];
    b.watch((c) => atB.push(Object.fromEntries(c)));
    await eventually(async () => (await admin.pubsub('NUMSUB', `${p}changes`))[1] === 1);
    await a.applyBatch(batch('ia', 1, { r: 1, untouched: 5 }));
    await eventually(() => atB.length === 1);
    // Drop B's subscriber connection and change r before it can reconnect (backoff ≥ 50 ms).
    await admin.client('KILL', 'TYPE', 'pubsub');
    await a.applyBatch(batch('ia', 2, { r: 10 }));
    await eventually(() => atB.length === 2);
    expect(atB[1]).toEqual({ r: 11 });
  });

  it('notices a subscription link that died silently, reconnects and catches up', async () => {
    const proxy = await flakyProxy(redis.port);
    try {
      const p = prefix();
      const a = await openStore(p);
      const b = await openRedisStore({
        url: `redis://127.0.0.1:${proxy.port}`,
        keyPrefix: p,
        subscriberHeartbeatMs: 200,
      });
      open.push(b);
      const atB: Array<Record<string, number>> = [];
      b.watch?.((c) => atB.push(Object.fromEntries(c)));
      await eventually(async () => (await admin.pubsub('NUMSUB', `${p}changes`))[1] === 1);
      await a.applyBatch(batch('ia', 1, { s: 1 }));
      await eventually(() => atB.length === 1);
      proxy.killLinks();
      // Published into the dead link: lost for B unless B notices and re-reads.
      await a.applyBatch(batch('ia', 2, { s: 1 }));
      await eventually(() => atB.some((c) => c.s === 2), 8000);
    } finally {
      await proxy.close();
    }
  });

  it('never delivers a value older than one it already saw', async () => {
    const p = prefix();
    const b = (await openStore(p)) as RedisStore;
    const seen: Array<Record<string, number>> = [];
    b.watch((c) => seen.push(Object.fromEntries(c)));
    await eventually(async () => (await admin.pubsub('NUMSUB', `${p}changes`))[1] === 1);
    // Hand-made messages: origin, shard, shard version, then "name value" lines.
    await admin.publish(`${p}changes`, 'other 0 7\nk 70\nj 1');
    await admin.publish(`${p}changes`, 'other 0 6\nk 60\nm 5');
    await eventually(() => seen.length === 2);
    expect(seen).toEqual([{ k: 70, j: 1 }, { m: 5 }]);
    // A reply from an older version than a delivered message reports the newer value.
    await admin.set(`${p}ver`, '3');
    const r = await b.applyBatch(batch('ib', 1, { k: 1 }));
    expect(r.values.get('k')).toBe(70);
  });

  it('fails fast while Redis is down, then recovers and resubscribes by itself', async () => {
    const server = await startRedis();
    try {
      const url = server.url;
      const p = prefix();
      const a = await openRedisStore({ url, keyPrefix: p });
      const b = await openRedisStore({ url, keyPrefix: p });
      open.push(a, b);
      const atB: Array<Record<string, number>> = [];
      b.watch?.((c) => atB.push(Object.fromEntries(c)));
      const probe = new Redis(server.port, '127.0.0.1', { lazyConnect: true });
      probe.on('error', () => {});
      await probe.connect();
      await eventually(async () => (await probe.pubsub('NUMSUB', `${p}changes`))[1] === 1);
      probe.disconnect();
      await a.applyBatch(batch('ia', 1, { x: 1 }));
      await eventually(() => atB.length === 1);

      await server.stop();
      for (const op of [
        () => a.ping(),
        () => a.applyBatch(batch('ia', 2, { x: 1 })),
        () => a.get('x'),
        () => a.list(),
      ]) {
        const started = Date.now();
        await expect(op()).rejects.toThrow(/unreachable|no answer|closed|ECONNREFUSED/);
        expect(Date.now() - started).toBeLessThan(2500);
      }
      await server.start();
      await eventually(
        async () =>
          a.ping().then(
            () => true,
            () => false,
          ),
        10_000,
      );
      // No persistence on this server: the retried batch starts from an empty Redis.
      const r = await a.applyBatch(batch('ia', 2, { x: 1 }));
      expect(r.duplicate).toBe(false);
      await a.applyBatch(batch('ia', 3, { x: 1 }));
      // B's subscription came back by itself (or B re-read x when it did) and B sees the new
      // value, although the restarted Redis started over from an empty dataset.
      await eventually(() => atB.some((c) => c.x === 2), 10_000);
      expect(atB.filter((c) => c.x === 2)).toHaveLength(1);
    } finally {
      await server.close();
    }
  });

  it('gives up at start with a clear message when nothing answers', async () => {
    const port = await freePort();
    const started = Date.now();
    await expect(
      openRedisStore({ url: `redis://:pw@127.0.0.1:${port}`, connectWaitMs: 400 }),
    ).rejects.toThrow(
      new RegExp(`cannot reach Redis at redis://127.0.0.1:${port}: .*ECONNREFUSED`),
    );
    expect(Date.now() - started).toBeLessThan(3000);
  });
});

describe('RedisStore authentication and TLS', () => {
  it('logs in as an ACL user and keeps databases apart, channels included', async () => {
    const server = await startRedis({
      // The least a Tally user needs (docs/redis.md, ElastiCache RBAC).
      args: [
        ...['--user', 'default', 'off', '--user', 'tally', 'on', '>pa:ss@w', '~acl:*', '&acl:*'],
        ...['+@read', '+@write', '+@scripting', '+@pubsub', '+@transaction'],
        ...['+ping', '+info', '+client|setname', '+time', '+select'],
      ],
    });
    const check = new Redis({ port: server.port, username: 'tally', password: 'pa:ss@w', db: 3 });
    check.on('error', () => {});
    try {
      const url = `redis://tally:${encodeURIComponent('pa:ss@w')}@127.0.0.1:${server.port}`;
      const db3 = await openRedisStore({ url: `${url}/3`, keyPrefix: 'acl:' });
      const db3Watcher = await openRedisStore({ url: `${url}/3`, keyPrefix: 'acl:' });
      const db0 = await openRedisStore({ url, keyPrefix: 'acl:' });
      const atDb0: unknown[] = [];
      const atDb3: unknown[] = [];
      db0.watch?.((c) => atDb0.push(c));
      db3Watcher.watch?.((c) => atDb3.push(Object.fromEntries(c)));
      await eventually(async () => {
        const [, n0, , n3] = (await check.pubsub('NUMSUB', 'acl:changes', 'acl:changes@3')) as [
          string,
          number,
          string,
          number,
        ];
        return n0 === 1 && n3 === 1;
      });
      await db3.applyBatch(batch('i', 1, { n: 9 }));
      expect(await db3.claimKey('k', 'f', 1000, 1_000_000)).toEqual({ fresh: true });
      await db3.completeKey('k', 'r', 1000);
      await db3.releaseKey('k');
      await eventually(() => atDb3.length === 1);
      expect(atDb3).toEqual([{ n: 9 }]);
      expect(atDb0).toEqual([]);
      expect(await check.get('acl:c:n')).toBe('9');
      expect(await db0.get('n')).toBe(0);
      await Promise.all([db3.close(), db3Watcher.close(), db0.close()]);
      await expect(
        openRedisStore({ url: `redis://tally:wrong@127.0.0.1:${server.port}`, connectWaitMs: 500 }),
      ).rejects.toThrow(/WRONGPASS|invalid username-password/i);
    } finally {
      check.disconnect();
      await server.close();
    }
  });

  it('connects over TLS (rediss://) with an AUTH token, and refuses an untrusted server', async () => {
    const dir = tempDir('tally-redis-tls');
    const files = { ca: 'ca.pem', cert: 'server.pem', key: 'server-key.pem' };
    writeFileSync(join(dir.path, files.ca), TEST_CA);
    writeFileSync(join(dir.path, files.cert), TEST_SERVER_CERT);
    writeFileSync(join(dir.path, files.key), TEST_SERVER_KEY);
    const tlsPort = await freePort();
    const token = 'Elasti#Cache?token!0123456789';
    const server = await startRedis({
      args: [
        ...['--requirepass', token, '--tls-port', String(tlsPort)],
        ...['--tls-cert-file', join(dir.path, files.cert)],
        ...['--tls-key-file', join(dir.path, files.key)],
        ...['--tls-ca-cert-file', join(dir.path, files.ca), '--tls-auth-clients', 'no'],
      ],
    });
    try {
      const url = `rediss://:${token}@127.0.0.1:${tlsPort}`;
      const store = await openRedisStore({ url, keyPrefix: 'tls:', tls: { ca: TEST_CA } });
      await store.applyBatch(batch('i', 1, { secure: 3 }));
      expect(await store.get('secure')).toBe(3);
      await store.close();
      // Without the CA the certificate is not trusted: no connection, a clear reason.
      await expect(openRedisStore({ url, connectWaitMs: 500 })).rejects.toThrow(
        /cannot reach Redis at rediss:\/\/127\.0\.0\.1:\d+: .*(certificate|self.signed)/i,
      );
      // Plain redis:// to a TLS port does not get through either.
      await expect(
        openRedisStore({ url: `redis://:${token}@127.0.0.1:${tlsPort}`, connectWaitMs: 500 }),
      ).rejects.toThrow(/cannot reach Redis/);
    } finally {
      await server.close();
      dir.remove();
    }
  });
});
