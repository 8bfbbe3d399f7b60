import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StartRefusedError } from '../../src/errors.js';
import type { Batch } from '../../src/store/interface.js';
import {
  type OpenPostgresOptions,
  openPostgresStore,
  PostgresUrlError,
  parsePostgresUrl,
} from '../../src/store/postgres/index.js';
import type { PostgresStore } from '../../src/store/postgres/store.js';
import { createTestDatabase, startCutProxy, type TestDatabase } from '../helpers/postgres.js';
import { runStoreConformance } from './conformance.js';

// One database for this file (dropped at the end); each store gets a schema of its own, so every
// conformance test starts from an empty, freshly migrated store.
let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

const newSchema = () => `t_${randomBytes(5).toString('hex')}`;

runStoreConformance('postgres', {
  create: () => openPostgresStore({ url: db.url, schema: newSchema(), indexLastWrite: true }),
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const batch = (instanceId: string, seq: number, deltas: Record<string, number>): Batch => ({
  instanceId,
  seq,
  deltas: new Map(Object.entries(deltas)),
});

/** Resolves once `check` passes, retrying every 10 ms for up to `ms`. */
async function eventually(check: () => void | Promise<void>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(10);
    }
  }
}

describe('postgres url', () => {
  it('keeps credentials out of the target and TLS parameters out of the connection string', () => {
    const t = parsePostgresUrl('postgres://tally:s3cr%40t@db.example:6432/counts?sslmode=require');
    expect(t.target).toBe('postgres://db.example:6432/counts');
    expect(t.connectionString).toBe('postgres://tally:s3cr%40t@db.example:6432/counts');
    expect(t.sslMode).toBe('require');
    // libpq's require: encrypted, the certificate not checked.
    expect(t.ssl).toEqual({ rejectUnauthorized: false });
  });

  it('maps sslmode the way libpq does, and TALLY_POSTGRES_SSL wins over it', () => {
    expect(parsePostgresUrl('postgres://h/db').ssl).toBe(false);
    expect(parsePostgresUrl('postgres://h/db?sslmode=disable').ssl).toBe(false);
    expect(parsePostgresUrl('postgres://h/db?sslmode=verify-full').ssl).toEqual({});
    const ca = parsePostgresUrl('postgres://h/db?sslmode=verify-ca');
    expect(typeof (ca.ssl as { checkServerIdentity?: unknown }).checkServerIdentity).toBe(
      'function',
    );
    expect(parsePostgresUrl('postgres://h/db?sslmode=require', 'off').ssl).toBe(false);
    expect(parsePostgresUrl('postgres://h/db', 'verify-full').ssl).toEqual({});
    expect(parsePostgresUrl('postgresql://h/db?sslmode=disable', 'require').sslMode).toBe(
      'require',
    );
  });

  it('refuses what it cannot honour, saying what to use', () => {
    expect(() => parsePostgresUrl('mysql://h/db')).toThrow(PostgresUrlError);
    expect(() => parsePostgresUrl('not a url')).toThrow(/not a URL/);
    expect(() => parsePostgresUrl('postgres://h/db?sslmode=prefer')).toThrow(
      /sslmode=prefer is not supported; use disable, require/,
    );
    expect(() => parsePostgresUrl('postgres://h/db?sslmode=require&sslrootcert=/nope.pem')).toThrow(
      /cannot read sslrootcert \/nope\.pem/,
    );
  });
});

describe('postgres store', () => {
  const open = (options: Partial<OpenPostgresOptions> & { schema: string }) =>
    openPostgresStore({ url: db.url, ...options });
  const stores: PostgresStore[] = [];
  const track = async (p: Promise<PostgresStore>) => {
    const store = await p;
    stores.push(store);
    return store;
  };
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
  });

  it('migrates once, even when several instances start together, and reopens without work', async () => {
    const schema = newSchema();
    const started = await Promise.all(
      Array.from({ length: 5 }, () => track(open({ schema, indexLastWrite: true }))),
    );
    expect(started).toHaveLength(5);
    const { rows } = await db.query(`SELECT version FROM ${schema}.tally_migrations`);
    expect(rows.map((r) => r.version).sort()).toEqual([1, 2]);
    const tables = await db.query<{ tablename: string }>(
      'SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename',
      [schema],
    );
    expect(tables.rows.map((r) => r.tablename)).toEqual([
      'tally_counters',
      'tally_instances',
      'tally_key_count',
      'tally_keys',
      'tally_migrations',
      'tally_namespaces',
      'tally_visitors',
      'tally_writers',
    ]);
    const index = await db.query(
      'SELECT 1 FROM pg_indexes WHERE schemaname = $1 AND indexname = $2',
      [schema, 'tally_counters_touched'],
    );
    expect(index.rowCount).toBe(1);
    await (started[0] as PostgresStore).applyBatch(batch('w@1', 1, { kept: 3 }));
    const again = await track(open({ schema }));
    expect(await again.get('kept')).toBe(3);
    expect(
      (await db.query(`SELECT count(*)::int AS n FROM ${schema}.tally_migrations`)).rows[0],
    ).toEqual({
      n: 2,
    });
  });

  it('indexes last writes only when counters expire, and expires without the index too', async () => {
    const schema = newSchema();
    const store = await track(open({ schema }));
    const index = await db.query(
      'SELECT 1 FROM pg_indexes WHERE schemaname = $1 AND indexname = $2',
      [schema, 'tally_counters_touched'],
    );
    expect(index.rowCount).toBe(0);
    await store.applyBatch(batch('w@1', 1, { idle: 1 }));
    await sleep(15);
    expect(await store.expireIdle(Date.now(), 10)).toEqual(['idle']);
  });

  it('stores values as bigint, exact to ±(2^53-1), and refuses what would leave that range', async () => {
    const store = await track(open({ schema: newSchema() }));
    const max = Number.MAX_SAFE_INTEGER;
    await store.set('top', max);
    await store.set('bottom', -max);
    expect(await store.get('top')).toBe(max);
    expect(await store.get('bottom')).toBe(-max);
    // A delta that is not a safe integer is refused like an overflow; the rest applies.
    const r = await store.applyBatch({
      instanceId: 'w@1',
      seq: 1,
      deltas: new Map([
        ['fresh', 2 ** 60],
        ['top', 1],
        ['ok', 5],
      ]),
    });
    expect([...r.rejected].sort()).toEqual(['fresh', 'top']);
    expect(Object.fromEntries(r.values)).toEqual({ fresh: 0, top: max, ok: 5 });
    expect(await store.describe('fresh')).toBeUndefined();
    await expect(store.set('x', 2 ** 53)).rejects.toThrow(RangeError);
  });

  it('never deadlocks batches that list the same counters in other orders', async () => {
    const store = await track(open({ schema: newSchema(), poolSize: 8 }));
    const names = Array.from({ length: 50 }, (_, i) => `c${i}`);
    await Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        for (let seq = 1; seq <= 10; seq++) {
          // Each writer lists the counters in another order.
          const order = w % 2 === 0 ? names : [...names].reverse();
          await store.applyBatch(
            batch(`w${w}@1`, seq, Object.fromEntries(order.map((n) => [n, 1]))),
          );
        }
      }),
    );
    for (const name of names) expect(await store.get(name)).toBe(80);
  });

  it('holds exactly maxKeys live keys under concurrent claims of new keys', async () => {
    const store = await track(open({ schema: newSchema() }));
    const claims = await Promise.all(
      Array.from({ length: 30 }, (_, i) => store.claimKey(`k${i}`, 'fp', 60_000, 10)),
    );
    expect(claims.filter((c) => c.fresh)).toHaveLength(10);
    expect(claims.filter((c) => c.full)).toHaveLength(20);
    // The kept count is the row count.
    const schema = (store as unknown as { n: { schema: string } }).n.schema;
    const { rows } = await db.query(
      `SELECT (SELECT n FROM ${schema}.tally_key_count) AS kept, (SELECT count(*) FROM ${schema}.tally_keys) AS rows`,
    );
    expect(rows[0]).toEqual({ kept: '10', rows: '10' });
  });

  it('fails fast while the database is unreachable and recovers by itself', async () => {
    const proxy = await startCutProxy(db.url);
    try {
      const store = await track(
        open({
          schema: newSchema(),
          url: proxy.url,
          connectTimeoutMs: 500,
          commandTimeoutMs: 1000,
        }),
      );
      await store.applyBatch(batch('w@1', 1, { n: 1 }));
      proxy.cut();
      const started = Date.now();
      await expect(store.applyBatch(batch('w@1', 2, { n: 1 }))).rejects.toThrow(
        /^PostgreSQL postgres:\/\/127\.0\.0\.1:\d+\/tally_test_\w+: applyBatch failed: /,
      );
      await expect(store.ping()).rejects.toThrow(/ping failed/);
      expect(Date.now() - started).toBeLessThan(3000);
      proxy.restore();
      // The same batch again (as the aggregator retries it): applied once.
      await eventually(async () => {
        await store.applyBatch(batch('w@1', 2, { n: 1 }));
      });
      expect((await store.applyBatch(batch('w@1', 2, { n: 1 }))).duplicate).toBe(true);
      expect(await store.get('n')).toBe(2);
    } finally {
      await proxy.close();
    }
  });

  it('refuses a start it cannot fix by waiting, and gives up on a server that never answers', async () => {
    const quick = Date.now();
    await expect(
      openPostgresStore({ url: `${db.url}_missing`, connectWaitMs: 5000 }),
    ).rejects.toThrow(StartRefusedError);
    // This server has no TLS: asking for it is a setting to fix, not an outage to wait out.
    const tls = await db.query<{ ssl: string }>('SHOW ssl');
    if (tls.rows[0]?.ssl === 'off') {
      await expect(
        openPostgresStore({ url: db.url, ssl: 'require', connectWaitMs: 5000 }),
      ).rejects.toThrow(/does not support SSL/);
    }
    expect(Date.now() - quick).toBeLessThan(2000);
    const proxy = await startCutProxy(db.url);
    proxy.cut();
    const started = Date.now();
    try {
      await expect(
        openPostgresStore({
          url: proxy.url,
          schema: newSchema(),
          connectWaitMs: 600,
          connectTimeoutMs: 200,
        }),
      ).rejects.toThrow(
        /^cannot open PostgreSQL at postgres:\/\/127\.0\.0\.1:\d+\/tally_test_\w+: /,
      );
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      await proxy.close();
    }
  });
});

describe('postgres watch', () => {
  const stores: PostgresStore[] = [];
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
  });

  /** Two or more stores on one schema, the way several Tally instances share a database. */
  async function pair(options: Partial<OpenPostgresOptions>[] = [{}, {}]) {
    const schema = newSchema();
    const opened: PostgresStore[] = [];
    for (const o of options) {
      const store = await openPostgresStore({ url: db.url, schema, ...o });
      stores.push(store);
      opened.push(store);
    }
    return opened;
  }

  /** Watches `store`, collecting every delivery; resolves once its LISTEN connection is up. */
  async function watching(
    open: (onListening: (reconnected: boolean) => void) => Promise<PostgresStore>,
  ) {
    const seen: Map<string, number>[] = [];
    const ups: boolean[] = [];
    let up: () => void = () => {};
    const first = new Promise<void>((resolve) => {
      up = resolve;
    });
    const store = await open((reconnected) => {
      ups.push(reconnected);
      up();
    });
    store.watch((changes) => seen.push(new Map(changes)));
    await first;
    const latest = () => {
      const out = new Map<string, number>();
      for (const m of seen) for (const [k, v] of m) out.set(k, v);
      return out;
    };
    return { store, seen, ups, latest };
  }

  it("delivers another instance's batch, set, create, delete and expiry, never its own", async () => {
    const [a] = await pair([{}]);
    const writer = a as PostgresStore;
    const schema = (writer as unknown as { n: { schema: string } }).n.schema;
    const b = await watching((onListening) => {
      return openPostgresStore({ url: db.url, schema, onListening }).then((s) => {
        stores.push(s);
        return s;
      });
    });
    const own: Map<string, number>[] = [];
    writer.watch((changes) => own.push(new Map(changes)));

    await writer.applyBatch(batch('a@1', 1, { x: 5, y: -2 }));
    await eventually(() => expect(Object.fromEntries(b.latest())).toEqual({ x: 5, y: -2 }));
    await writer.set('x', 40);
    await writer.create('made', 7, '{}');
    await eventually(() => expect(b.latest().get('made')).toBe(7));
    expect(b.latest().get('x')).toBe(40);
    await writer.delete('y');
    await eventually(() => expect(b.latest().get('y')).toBe(0));
    await sleep(15);
    await writer.expireIdle(Date.now(), 10);
    await eventually(() => expect(b.latest().get('made')).toBe(0));
    expect(b.latest().get('x')).toBe(0);
    // A duplicate batch changes nothing and says nothing.
    const before = b.seen.length;
    await writer.applyBatch(batch('a@1', 1, { x: 5 }));
    await sleep(100);
    expect(b.seen.length).toBe(before);
    expect(own).toEqual([]);
  });

  it('splits a large batch over several notifications, all of which arrive', async () => {
    const [a] = await pair([{}]);
    const schema = (a as unknown as { n: { schema: string } }).n.schema;
    const b = await watching((onListening) =>
      openPostgresStore({ url: db.url, schema, onListening }).then((s) => {
        stores.push(s);
        return s;
      }),
    );
    const deltas: Record<string, number> = {};
    for (let i = 0; i < 5000; i++) deltas[`bulk:${'n'.repeat(40)}:${i}`] = i + 1;
    await (a as PostgresStore).applyBatch(batch('a@1', 1, deltas));
    await eventually(() => expect(b.latest().size).toBe(5000));
    expect(b.seen.length).toBeGreaterThan(10);
    expect(b.latest().get(`bulk:${'n'.repeat(40)}:4999`)).toBe(5000);
  });

  it('never lets a value step back while instances race on one counter', async () => {
    // B writes too: its replies and A's notifications travel on different connections, so a
    // notification of an older write can arrive after B's reply to a newer one.
    const [a] = await pair([{ poolSize: 4 }]);
    const schema = (a as unknown as { n: { schema: string } }).n.schema;
    const b = await watching((onListening) =>
      openPostgresStore({ url: db.url, schema, poolSize: 4, onListening }).then((s) => {
        stores.push(s);
        return s;
      }),
    );
    // Everything B lets out about `hot`, in the order it does: replies and deliveries.
    const out: number[] = [];
    b.store.watch((changes) => {
      const v = changes.get('hot');
      if (v !== undefined) out.push(v);
    });
    const writers = [a as PostgresStore, b.store];
    await Promise.all(
      writers.flatMap((w, wi) =>
        Array.from({ length: 4 }, async (_, k) => {
          for (let seq = 1; seq <= 40; seq++) {
            const r = await w.applyBatch(
              batch(`w${wi}-${k}@1`, seq, { hot: 1, [`own${wi}${k}`]: 1 }),
            );
            if (w === b.store) out.push(r.values.get('hot') as number);
            if (w === b.store && seq % 5 === 0) out.push(await b.store.get('hot'));
          }
        }),
      ),
    );
    expect(await b.store.get('hot')).toBe(320);
    // Late notifications of A's older writes land now; none may be let out.
    await sleep(300);
    for (let i = 1; i < out.length; i++) {
      if ((out[i] as number) < (out[i - 1] as number)) {
        throw new Error(`stepped back from ${out[i - 1]} to ${out[i]} at ${i} of ${out.length}`);
      }
    }
    expect(out[out.length - 1]).toBe(320);
  });

  it('reconnects after its LISTEN backend is terminated and resyncs what it missed', async () => {
    const [a] = await pair([{}]);
    const schema = (a as unknown as { n: { schema: string } }).n.schema;
    const b = await watching((onListening) =>
      openPostgresStore({ url: db.url, schema, onListening, maxReconnectDelayMs: 300 }).then(
        (s) => {
          stores.push(s);
          return s;
        },
      ),
    );
    const writer = a as PostgresStore;
    await writer.applyBatch(batch('a@1', 1, { r: 1, gone: 1 }));
    await eventually(() => expect(b.latest().get('gone')).toBe(1));

    const listeners = async () =>
      (
        await db.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %' AND query LIKE $1`,
          [`%${schema}.tally_changes%`],
        )
      ).rows.map((r) => r.pid);
    const [pid] = await listeners();
    expect(pid).toBeDefined();
    await db.query('SELECT pg_terminate_backend($1)', [pid]);
    await eventually(async () => expect(await listeners()).not.toContain(pid));
    // Written while B listens nowhere: these notifications never reach it.
    await writer.applyBatch(batch('a@1', 2, { r: 10 }));
    await writer.delete('gone');
    await eventually(() => expect(b.ups).toEqual([false, true]));
    await eventually(() => expect(Object.fromEntries(b.latest())).toEqual({ r: 11, gone: 0 }));
    // And it listens again.
    await writer.applyBatch(batch('a@1', 3, { r: 1 }));
    await eventually(() => expect(b.latest().get('r')).toBe(12));
  });

  it('resyncs after a longer cut of its connection, with every reconnect attempt refused meanwhile', async () => {
    const [a] = await pair([{}]);
    const schema = (a as unknown as { n: { schema: string } }).n.schema;
    const proxy = await startCutProxy(db.url);
    try {
      const b = await watching((onListening) =>
        openPostgresStore({
          url: db.url,
          listenerUrl: proxy.url,
          schema,
          onListening,
          maxReconnectDelayMs: 200,
        }).then((s) => {
          stores.push(s);
          return s;
        }),
      );
      const writer = a as PostgresStore;
      await writer.applyBatch(batch('a@1', 1, { p: 1, q: 2 }));
      await b.store.get('unseen-until-now');
      await eventually(() => expect(b.latest().get('q')).toBe(2));
      proxy.cut();
      const accepted = proxy.accepted();
      await writer.applyBatch(batch('a@1', 2, { p: 5, 'unseen-until-now': 3 }));
      await writer.set('q', 100);
      await sleep(500);
      expect(proxy.accepted()).toBe(accepted);
      expect(b.latest().get('p')).toBe(1);
      proxy.restore();
      await eventually(() =>
        expect(Object.fromEntries(b.latest())).toEqual({ p: 6, q: 100, 'unseen-until-now': 3 }),
      );
      expect(b.ups).toEqual([false, true]);
    } finally {
      await proxy.close();
    }
  });
});
