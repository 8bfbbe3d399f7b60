/** @module store/sqlite — the embedded default store: one SQLite file, one transaction per batch. */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
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

/** Options for {@link SqliteStore}. */
export interface SqliteStoreOptions {
  /** Database file; `:memory:` for a private in-memory database. */
  readonly path: string;
  /**
   * How long one attempt waits for another connection's lock, in ms. better-sqlite3 waits on the
   * event loop's thread, so keep it short; a locked database is retried on a timer instead.
   * @default 10
   */
  readonly busyTimeoutMs?: number;
  /**
   * How long an operation keeps retrying (asynchronously, with jittered pauses) while another
   * connection holds the lock, in ms; then it rejects and the caller retries as after any store
   * failure. @default 2000
   */
  readonly busyRetryMs?: number;
  /** How long opening retries (synchronously) while the database is locked, in ms. @default 5000 */
  readonly openRetryMs?: number;
  /**
   * Index counters by their last write, so `expireIdle` finds idle ones without a full scan.
   * Costs an index update per counter per batch: set it only when counters expire.
   * @default false
   */
  readonly indexLastWrite?: boolean;
}

/**
 * SQLite via better-sqlite3 in WAL mode. Calls are synchronous under the hood; a batch of a few
 * thousand counters takes a few milliseconds of the event loop. Several processes may share the
 * file (each `tally serve --workers` process does); SQLite serialises their writes. While another
 * connection holds the write lock, an attempt waits at most `busyTimeoutMs` on the event loop and
 * the operation is retried on a timer (another process holding the lock for 8 s used to stall the
 * whole process, /healthz included, for 5 s at a time: the old 5 s busy timeout).
 */
export class SqliteStore implements Store {
  readonly kind = 'sqlite';
  private readonly db: Database.Database;
  private readonly stmt: {
    getValue: Database.Statement<[string], { value: number }>;
    addDelta: Database.Statement<[string, number, number]>;
    getSeq: Database.Statement<[string], { seq: number }>;
    putSeq: Database.Statement<[string, number]>;
    setValue: Database.Statement<[string, number, number]>;
    deleteValue: Database.Statement<[string]>;
    create: Database.Statement<[string, number, string, number]>;
    describe: Database.Statement<
      [string],
      { value: number; meta: string | null; touched_at: number | null }
    >;
    expire: Database.Statement<[number, number], { name: string }>;
    putNamespace: Database.Statement<[string, string]>;
    getNamespace: Database.Statement<[string], { record: string }>;
    list: Database.Statement<[string, string, string, number], { name: string; value: number }>;
    getKey: Database.Statement<
      [string],
      { fingerprint: string; result: string | null; expires_at: number }
    >;
    putKey: Database.Statement<[string, string, number]>;
    completeKey: Database.Statement<[string, number, string]>;
    deleteKey: Database.Statement<[string]>;
    countKeys: Database.Statement<[]>;
    sweepKeys: Database.Statement<[number]>;
    getInstance: Database.Statement<
      [string],
      { epoch: number; holder: string; expires_at: number }
    >;
    putInstance: Database.Statement<[string, number, string, number]>;
    renewInstance: Database.Statement<[number, string, number]>;
  };
  private readonly claimTx: (
    key: string,
    fingerprint: string,
    leaseMs: number,
    maxKeys: number,
  ) => KeyClaim;
  private readonly claimInstanceTx: (
    instanceId: string,
    holder: string,
    leaseMs: number,
    takeoverEpoch: number | undefined,
  ) => InstanceClaim;
  private claims = 0;
  private readonly applyTx: (batch: Batch) => BatchResult;
  private readonly addVisitorsTx: (sets: ReadonlyMap<string, readonly string[]>) => void;
  private readonly countVisitorsOf: (keys: readonly string[]) => number[];
  private readonly deleteVisitorsTx: (keys: readonly string[]) => void;
  private readonly path: string;
  private readonly busyRetryMs: number;

  constructor(options: SqliteStoreOptions) {
    if (options.path !== ':memory:') mkdirSync(dirname(options.path), { recursive: true });
    this.path = options.path;
    this.busyRetryMs = options.busyRetryMs ?? 2000;
    const openRetryMs = options.openRetryMs ?? 5000;
    this.db = new Database(options.path, { timeout: options.busyTimeoutMs ?? 10 });
    // Several workers open the file at once on `tally serve`: switching to WAL (and creating
    // the tables) can answer SQLITE_BUSY at once, without the busy handler waiting, so retry.
    // Blocking is acceptable here: nothing is served before the store is open.
    whileBusy(openRetryMs, () => this.db.pragma('journal_mode = WAL'));
    // NORMAL in WAL mode: a committed batch survives a process crash; an OS crash or power loss
    // may lose the last transactions (docs/reliability.md).
    this.db.pragma('synchronous = NORMAL');
    whileBusy(openRetryMs, () =>
      this.db.exec(`
      CREATE TABLE IF NOT EXISTS counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS batches (
        instance_id TEXT PRIMARY KEY,
        seq         INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS idempotency_keys (
        key         TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        result      TEXT,
        expires_at  INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS idempotency_keys_expiry ON idempotency_keys (expires_at);
      -- Rows in idempotency_keys, kept by triggers so the cap needs no count(*) per claim.
      CREATE TABLE IF NOT EXISTS idempotency_count (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        n  INTEGER NOT NULL
      );
      INSERT OR IGNORE INTO idempotency_count (id, n) SELECT 1, count(*) FROM idempotency_keys;
      CREATE TRIGGER IF NOT EXISTS idempotency_key_added AFTER INSERT ON idempotency_keys
        BEGIN UPDATE idempotency_count SET n = n + 1 WHERE id = 1; END;
      CREATE TRIGGER IF NOT EXISTS idempotency_key_removed AFTER DELETE ON idempotency_keys
        BEGIN UPDATE idempotency_count SET n = n - 1 WHERE id = 1; END;
      CREATE TABLE IF NOT EXISTS namespaces (
        namespace TEXT PRIMARY KEY,
        record    TEXT NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS visitors (
        key       TEXT PRIMARY KEY,
        registers BLOB NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS instances (
        instance_id TEXT PRIMARY KEY,
        epoch       INTEGER NOT NULL,
        holder      TEXT NOT NULL,
        expires_at  INTEGER NOT NULL
      ) WITHOUT ROWID;
    `),
    );
    whileBusy(openRetryMs, () => this.migrate(options.indexLastWrite === true));
    this.stmt = {
      getValue: this.db.prepare('SELECT value FROM counters WHERE name = ?'),
      addDelta: this.db.prepare(
        'INSERT INTO counters (name, value, touched_at) VALUES (?, ?, ?) ' +
          'ON CONFLICT (name) DO UPDATE SET value = value + excluded.value, ' +
          'touched_at = excluded.touched_at',
      ),
      getSeq: this.db.prepare('SELECT seq FROM batches WHERE instance_id = ?'),
      putSeq: this.db.prepare(
        'INSERT INTO batches (instance_id, seq) VALUES (?, ?) ' +
          'ON CONFLICT (instance_id) DO UPDATE SET seq = excluded.seq',
      ),
      setValue: this.db.prepare(
        'INSERT INTO counters (name, value, touched_at) VALUES (?, ?, ?) ' +
          'ON CONFLICT (name) DO UPDATE SET value = excluded.value, touched_at = excluded.touched_at',
      ),
      deleteValue: this.db.prepare('DELETE FROM counters WHERE name = ?'),
      create: this.db.prepare(
        'INSERT INTO counters (name, value, meta, touched_at) VALUES (?, ?, ?, ?) ' +
          'ON CONFLICT (name) DO NOTHING',
      ),
      describe: this.db.prepare('SELECT value, meta, touched_at FROM counters WHERE name = ?'),
      // One statement: a counter written after the cutoff is no longer selected.
      expire: this.db.prepare(
        'DELETE FROM counters WHERE name IN ' +
          '(SELECT name FROM counters WHERE touched_at < ? LIMIT ?) RETURNING name',
      ),
      putNamespace: this.db.prepare(
        'INSERT INTO namespaces (namespace, record) VALUES (?, ?) ON CONFLICT DO NOTHING',
      ),
      getNamespace: this.db.prepare('SELECT record FROM namespaces WHERE namespace = ?'),
      // prefix, upper bound of the prefix range, cursor (exclusive), limit
      list: this.db.prepare(
        'SELECT name, value FROM counters WHERE name >= ? AND name < ? AND name > ? ' +
          'ORDER BY name LIMIT ?',
      ),
      getKey: this.db.prepare(
        'SELECT fingerprint, result, expires_at FROM idempotency_keys WHERE key = ?',
      ),
      putKey: this.db.prepare(
        'INSERT INTO idempotency_keys (key, fingerprint, result, expires_at) VALUES (?, ?, NULL, ?) ' +
          'ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint, result = NULL, ' +
          'expires_at = excluded.expires_at',
      ),
      completeKey: this.db.prepare(
        'UPDATE idempotency_keys SET result = ?, expires_at = ? WHERE key = ?',
      ),
      deleteKey: this.db.prepare('DELETE FROM idempotency_keys WHERE key = ?'),
      countKeys: this.db.prepare('SELECT n FROM idempotency_count WHERE id = 1'),
      sweepKeys: this.db.prepare(
        'DELETE FROM idempotency_keys WHERE key IN ' +
          '(SELECT key FROM idempotency_keys WHERE expires_at <= ? LIMIT 1000)',
      ),
      getInstance: this.db.prepare(
        'SELECT epoch, holder, expires_at FROM instances WHERE instance_id = ?',
      ),
      putInstance: this.db.prepare(
        'INSERT INTO instances (instance_id, epoch, holder, expires_at) VALUES (?, ?, ?, ?) ' +
          'ON CONFLICT (instance_id) DO UPDATE SET epoch = excluded.epoch, ' +
          'holder = excluded.holder, expires_at = excluded.expires_at',
      ),
      // expires_at, instance_id, epoch: one statement, so atomic without a transaction.
      renewInstance: this.db.prepare(
        'UPDATE instances SET expires_at = ? WHERE instance_id = ? AND epoch = ?',
      ),
    };
    this.applyTx = this.db.transaction((batch: Batch) => this.applyInTx(batch)).immediate;
    const getVisitors = this.db.prepare<[string], { registers: Buffer }>(
      'SELECT registers FROM visitors WHERE key = ?',
    );
    const putVisitors = this.db.prepare(
      'INSERT INTO visitors (key, registers) VALUES (?, ?) ' +
        'ON CONFLICT (key) DO UPDATE SET registers = excluded.registers',
    );
    // Read, merge and write under the write lock: two processes adding at once both count.
    this.addVisitorsTx = this.db.transaction((sets: ReadonlyMap<string, readonly string[]>) => {
      for (const [key, hashes] of sets) {
        const hll = Hll.decode(getVisitors.get(key)?.registers);
        let grew = false;
        for (const hash of hashes) grew = hll.add(hash) || grew;
        if (grew) putVisitors.run(key, hll.encode());
      }
    }).immediate;
    this.countVisitorsOf = (keys) =>
      keys.map((key) => Hll.decode(getVisitors.get(key)?.registers).count());
    const deleteVisitors = this.db.prepare('DELETE FROM visitors WHERE key = ?');
    this.deleteVisitorsTx = this.db.transaction((keys: readonly string[]) => {
      for (const key of keys) deleteVisitors.run(key);
    }).immediate;
    this.claimTx = this.db.transaction(
      (key: string, fingerprint: string, leaseMs: number, maxKeys: number): KeyClaim => {
        const now = Date.now();
        // Expired keys are swept a little at a time, so no request pays for a large purge.
        if (++this.claims % 1000 === 0) this.stmt.sweepKeys.run(now);
        const found = this.stmt.getKey.get(key);
        if (found !== undefined && found.expires_at > now) {
          return { fresh: false, fingerprint: found.fingerprint, result: found.result };
        }
        // Reusing an expired row adds none; a new row must fit, counting expired rows only
        // until a sweep removes them.
        if (found === undefined && this.keyRows() >= maxKeys) {
          this.stmt.sweepKeys.run(now);
          if (this.keyRows() >= maxKeys) return { fresh: false, full: true };
        }
        this.stmt.putKey.run(key, fingerprint, now + leaseMs);
        return { fresh: true };
      },
    ).immediate;
    // Leases use this machine's clock: every process sharing the file runs on it.
    this.claimInstanceTx = this.db.transaction(
      (instanceId: string, holder: string, leaseMs: number, takeoverEpoch: number | undefined) => {
        const now = Date.now();
        const row = this.stmt.getInstance.get(instanceId);
        const found = row && { epoch: row.epoch, holder: row.holder, expiresAt: row.expires_at };
        const claim = decideClaim(found, now, takeoverEpoch);
        if (claim.granted)
          this.stmt.putInstance.run(instanceId, claim.epoch, holder, now + leaseMs);
        return claim;
      },
    ).immediate;
  }

  async applyBatch(batch: Batch): Promise<BatchResult> {
    return this.unlocked('applyBatch', () => this.applyTx(batch));
  }

  private applyInTx(batch: Batch): BatchResult {
    const values = new Map<string, number>();
    const rejected: string[] = [];
    const last = this.stmt.getSeq.get(batch.instanceId)?.seq ?? 0;
    const duplicate = batch.seq <= last;
    const now = Date.now();
    for (const [name, delta] of batch.deltas) {
      const current = this.stmt.getValue.get(name)?.value ?? 0;
      if (duplicate) {
        values.set(name, current);
      } else if (inRange(current + delta)) {
        this.stmt.addDelta.run(name, delta, now);
        values.set(name, current + delta);
      } else {
        rejected.push(name);
        values.set(name, current);
      }
    }
    if (!duplicate) this.stmt.putSeq.run(batch.instanceId, batch.seq);
    return { values, duplicate, rejected };
  }

  async lastSeq(instanceId: string): Promise<number> {
    return this.unlocked('lastSeq', () => this.stmt.getSeq.get(instanceId)?.seq ?? 0);
  }

  async get(name: string): Promise<number> {
    return this.unlocked('get', () => this.stmt.getValue.get(name)?.value ?? 0);
  }

  async set(name: string, value: number): Promise<void> {
    await this.unlocked('set', () => this.stmt.setValue.run(name, value, Date.now()));
  }

  async create(name: string, value: number, meta: string): Promise<boolean> {
    return this.unlocked(
      'create',
      () => this.stmt.create.run(name, value, meta, Date.now()).changes === 1,
    );
  }

  async describe(name: string): Promise<CounterInfo | undefined> {
    const row = await this.unlocked('describe', () => this.stmt.describe.get(name));
    return row && { value: row.value, meta: row.meta, touchedAt: row.touched_at };
  }

  async claimNamespace(namespace: string, record: string): Promise<boolean> {
    return this.unlocked(
      'claimNamespace',
      () => this.stmt.putNamespace.run(namespace, record).changes === 1,
    );
  }

  async namespaceRecord(namespace: string): Promise<string | undefined> {
    return this.unlocked('namespaceRecord', () => this.stmt.getNamespace.get(namespace)?.record);
  }

  async expireIdle(cutoff: number, limit: number): Promise<string[]> {
    const rows = await this.unlocked('expireIdle', () => this.stmt.expire.all(cutoff, limit));
    return rows.map((r) => r.name);
  }

  /**
   * Brings a file from an older Tally up to this schema: counters gained `meta` (settings of
   * created counters) and `touched_at` (last write; counters that predate it start their idle
   * time now). Columns are added, never rewritten, so an older Tally still reads the file.
   */
  private migrate(indexLastWrite: boolean): void {
    this.db
      .transaction(() => {
        // Read under the write lock: processes opening one fresh file at once (the workers of
        // `tally serve`) each migrate, and must see what the one before them added.
        const columns = new Set(
          (this.db.pragma('table_info(counters)') as { name: string }[]).map((c) => c.name),
        );
        if (!columns.has('meta')) this.db.exec('ALTER TABLE counters ADD COLUMN meta TEXT');
        if (!columns.has('touched_at')) {
          this.db.exec('ALTER TABLE counters ADD COLUMN touched_at INTEGER');
          this.db.prepare('UPDATE counters SET touched_at = ?').run(Date.now());
        }
      })
      .immediate();
    if (indexLastWrite) {
      this.db.exec('CREATE INDEX IF NOT EXISTS counters_touched ON counters (touched_at)');
    }
  }

  async delete(name: string): Promise<boolean> {
    return this.unlocked('delete', () => this.stmt.deleteValue.run(name).changes > 0);
  }

  async list(options: ListOptions = {}): Promise<ListPage> {
    const prefix = options.prefix ?? '';
    const limit = options.limit ?? 100;
    const after = decodeCursor(options.cursor) ?? '';
    // Names are ASCII below '~', so prefix + '\x7f' bounds the prefix range and uses the index.
    const rows = await this.unlocked('list', () =>
      this.stmt.list.all(prefix, `${prefix}\x7f`, after, limit + 1),
    );
    const items = rows.slice(0, limit);
    const last = items[items.length - 1];
    return { items, nextCursor: rows.length > limit && last ? encodeCursor(last.name) : null };
  }

  async claimKey(
    key: string,
    fingerprint: string,
    leaseMs: number,
    maxKeys: number,
  ): Promise<KeyClaim> {
    return this.unlocked('claimKey', () => this.claimTx(key, fingerprint, leaseMs, maxKeys));
  }

  private keyRows(): number {
    return (this.stmt.countKeys.get() as { n: number }).n;
  }

  async completeKey(key: string, result: string, ttlMs: number): Promise<void> {
    await this.unlocked('completeKey', () =>
      this.stmt.completeKey.run(result, Date.now() + ttlMs, key),
    );
  }

  async releaseKey(key: string): Promise<void> {
    await this.unlocked('releaseKey', () => this.stmt.deleteKey.run(key));
  }

  async claimInstance(
    instanceId: string,
    holder: string,
    leaseMs: number,
    takeoverEpoch?: number,
  ): Promise<InstanceClaim> {
    return this.unlocked('claimInstance', () =>
      this.claimInstanceTx(instanceId, holder, leaseMs, takeoverEpoch),
    );
  }

  async renewInstance(instanceId: string, epoch: number, leaseMs: number): Promise<boolean> {
    return this.unlocked(
      'renewInstance',
      () => this.stmt.renewInstance.run(Date.now() + leaseMs, instanceId, epoch).changes > 0,
    );
  }

  async releaseInstance(instanceId: string, epoch: number): Promise<void> {
    // Expiry 0 rather than deleting the row: the epoch must survive, so the next one is new.
    await this.unlocked('releaseInstance', () => this.stmt.renewInstance.run(0, instanceId, epoch));
  }

  async addVisitors(sets: ReadonlyMap<string, readonly string[]>): Promise<void> {
    await this.unlocked('addVisitors', () => this.addVisitorsTx(sets));
  }

  async countVisitors(keys: readonly string[]): Promise<number[]> {
    return this.unlocked('countVisitors', () => this.countVisitorsOf(keys));
  }

  async deleteVisitors(keys: readonly string[]): Promise<void> {
    await this.unlocked('deleteVisitors', () => this.deleteVisitorsTx(keys));
  }

  async ping(): Promise<void> {
    this.db.prepare('SELECT 1').get();
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  /**
   * Runs `fn` (synchronous, at most `busyTimeoutMs` of waiting for a lock) and, while another
   * connection holds the lock, runs it again after a jittered pause, until `busyRetryMs` have
   * passed; then rejects with an error naming the database. The pauses are timers, so the event
   * loop serves requests meanwhile. A failed attempt changed nothing: transactions roll back.
   */
  private async unlocked<T>(what: string, fn: () => T): Promise<T> {
    const started = performance.now();
    for (let attempt = 1; ; attempt++) {
      try {
        return fn();
      } catch (err) {
        if (!isBusy(err)) throw err;
        const left = this.busyRetryMs - (performance.now() - started);
        if (left <= 0) {
          const waited = Math.round(performance.now() - started);
          throw new Error(
            `SQLite ${this.path} stayed locked by another connection for ${waited} ms ` +
              `(${what}, ${attempt} attempts)`,
            { cause: err },
          );
        }
        // 2, 4, 8 … 50 ms, each between half and all of it, so processes do not retry in step.
        const pause = Math.min(50, 2 ** attempt);
        await sleep(Math.min(left, pause / 2 + Math.random() * (pause / 2)));
      }
    }
  }
}

/** SQLITE_BUSY and its extended codes (SQLITE_BUSY_SNAPSHOT, _RECOVERY, _TIMEOUT). */
function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_BUSY');
}

/** Runs `fn`, retrying for up to `timeoutMs` while SQLite answers SQLITE_BUSY (startup only). */
function whileBusy<T>(timeoutMs: number, fn: () => T): T {
  const deadline = performance.now() + timeoutMs;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      return fn();
    } catch (err) {
      if (!isBusy(err) || performance.now() >= deadline) throw err;
      Atomics.wait(pause, 0, 0, 10 + Math.floor(Math.random() * 20));
    }
  }
}
