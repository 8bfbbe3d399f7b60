/** @module store/postgres/store — counters in PostgreSQL, shared by any number of instances. */
import { randomBytes } from 'node:crypto';
import type { Client, Pool, PoolClient, QueryResult, QueryResultRow } from 'pg';
import { Hll } from '../hll.js';
import {
  type Batch,
  type BatchResult,
  type ChangeListener,
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
import { PostgresFeed, type StoredVersion } from './feed.js';
import { type SchemaNames, timed } from './schema.js';

/** Options for {@link PostgresStore}. */
export interface PostgresStoreOptions {
  /** node-postgres pool, for every command. */
  readonly pool: Pool;
  /** Makes the LISTEN connection for `watch` (a client of its own, reconnected by the feed). */
  readonly createListener: () => Client;
  /** Names in the (migrated) schema. */
  readonly names: SchemaNames;
  /** Where the pool points, without credentials, for error messages. */
  readonly target: string;
  /**
   * Longest wait for one command, in ms; a batch gets `batchTimeoutPerCounterMs` more per
   * counter. A connection whose command timed out is closed, not reused. @default 5000
   */
  readonly commandTimeoutMs?: number;
  /** Extra time allowed per counter in a batch, in ms. @default 0.05 */
  readonly batchTimeoutPerCounterMs?: number;
  /** How often the LISTEN connection is checked, in ms. @default 15_000 */
  readonly listenerHeartbeatMs?: number;
  /** Longest pause between reconnections of the LISTEN connection, in ms. @default 2000 */
  readonly maxReconnectDelayMs?: number;
  /** Newest versions remembered to keep live values from stepping back. @default 100_000 */
  readonly maxTrackedNames?: number;
  /** Told when the LISTEN connection is up, and whether it was a reconnect. */
  readonly onListening?: (reconnected: boolean) => void;
  /** Last error of an idle pooled connection, for messages. */
  readonly lastError?: () => Error | undefined;
}

/** One statement inside {@link PostgresStore.transaction}. */
type TxQuery = <R extends QueryResultRow>(
  text: string,
  values: unknown[],
) => Promise<QueryResult<R>>;

/** A delta that is not a safe integer: sent as one that always leaves the range (refused). */
const OUT_OF_RANGE = 2 ** 54;

/**
 * Counters in one table, written by PL/pgSQL functions (docs/postgres.md has the schema): a
 * batch is one call of `tally_apply_batch`, so one statement, one transaction, one round trip.
 *
 * Every write takes a version from one sequence once it holds its rows and NOTIFYs
 * `origin version` plus the new values at commit; the same version comes back in the reply, and
 * the feed (feed.ts) keeps both in version order, so the store never returns a value older than
 * one it already let out.
 */
export class PostgresStore implements Store {
  readonly kind = 'postgres';
  private readonly pool: Pool;
  private readonly n: SchemaNames;
  private readonly commandTimeoutMs: number;
  private readonly perCounterMs: number;
  /** Tags this store's messages so `watch` skips them. */
  private readonly origin = randomBytes(6).toString('hex');
  private readonly feed: PostgresFeed;
  private closed = false;

  constructor(private readonly options: PostgresStoreOptions) {
    this.pool = options.pool;
    this.n = options.names;
    this.commandTimeoutMs = options.commandTimeoutMs ?? 5000;
    this.perCounterMs = options.batchTimeoutPerCounterMs ?? 0.05;
    this.feed = new PostgresFeed({
      createClient: options.createListener,
      channel: this.n.channel,
      origin: this.origin,
      read: (names) => this.readVersions(names),
      ...(options.listenerHeartbeatMs === undefined
        ? {}
        : { heartbeatMs: options.listenerHeartbeatMs }),
      ...(options.maxReconnectDelayMs === undefined
        ? {}
        : { maxReconnectDelayMs: options.maxReconnectDelayMs }),
      ...(options.maxTrackedNames === undefined ? {} : { maxTracked: options.maxTrackedNames }),
      ...(options.onListening === undefined ? {} : { onListening: options.onListening }),
    });
  }

  async applyBatch(batch: Batch): Promise<BatchResult> {
    const names: string[] = [];
    const deltas: string[] = [];
    for (const [name, delta] of batch.deltas) {
      names.push(name);
      deltas.push(
        String(Number.isSafeInteger(delta) ? delta : delta < 0 ? -OUT_OF_RANGE : OUT_OF_RANGE),
      );
    }
    const { rows } = await this.query<{
      r_name: string;
      r_value: string;
      r_version: string;
      r_state: number;
    }>(
      'applyBatch',
      `SELECT r_name, r_value, r_version, r_state
       FROM ${this.n.fn('tally_apply_batch')}($1, $2, $3::text[], $4::bigint[], $5)`,
      [batch.instanceId, batch.seq, names, deltas, this.origin],
      this.commandTimeoutMs + Math.ceil(names.length * this.perCounterMs),
    );
    const values = new Map<string, number>();
    const rejected: string[] = [];
    for (const row of rows) {
      const value = toInt(row.r_value, row.r_name);
      // A refused counter's row was not written: its version says nothing about this batch.
      const version = row.r_state === 1 ? 0 : Number(row.r_version);
      values.set(row.r_name, this.feed.newest(row.r_name, version, value));
      if (row.r_state === 1) rejected.push(row.r_name);
    }
    return { values, duplicate: rows[0]?.r_state === 2, rejected };
  }

  async lastSeq(instanceId: string): Promise<number> {
    const { rows } = await this.query<{ seq: string }>(
      'lastSeq',
      `SELECT seq FROM ${this.n.writers} WHERE writer = $1`,
      [instanceId],
    );
    return rows[0] === undefined ? 0 : toInt(rows[0].seq, 'seq');
  }

  async get(name: string): Promise<number> {
    const { rows } = await this.query<{ value: string; version: string }>(
      'get',
      `SELECT value, version FROM ${this.n.counters} WHERE name = $1`,
      [name],
    );
    const row = rows[0];
    if (row === undefined) {
      // Remembered at version 0 (older than any write), so a resync covers counters only read.
      if (this.feed.active && !this.feed.tracks(name)) this.feed.newest(name, 0, 0);
      return 0;
    }
    return this.feed.newest(name, Number(row.version), toInt(row.value, name));
  }

  async set(name: string, value: number): Promise<void> {
    assertValue(value);
    const { rows } = await this.query<{ version: string }>(
      'set',
      `SELECT ${this.n.fn('tally_set')}($1, $2, $3) AS version`,
      [name, value, this.origin],
    );
    this.feed.newest(name, Number(rows[0]?.version), value);
  }

  async delete(name: string): Promise<boolean> {
    const { rows } = await this.query<{ version: string | null }>(
      'delete',
      `SELECT ${this.n.fn('tally_delete')}($1, $2) AS version`,
      [name, this.origin],
    );
    const version = rows[0]?.version ?? null;
    if (version === null) return false;
    this.feed.newest(name, Number(version), 0);
    return true;
  }

  async create(name: string, value: number, meta: string): Promise<boolean> {
    assertValue(value);
    const { rows } = await this.query<{ version: string | null }>(
      'create',
      `SELECT ${this.n.fn('tally_create')}($1, $2, $3, $4) AS version`,
      [name, value, meta, this.origin],
    );
    const version = rows[0]?.version ?? null;
    if (version === null) return false;
    this.feed.newest(name, Number(version), value);
    return true;
  }

  async describe(name: string): Promise<CounterInfo | undefined> {
    const { rows } = await this.query<{
      value: string;
      meta: string | null;
      touched: string | null;
    }>(
      'describe',
      `SELECT value, meta, floor(extract(epoch FROM touched_at) * 1000) AS touched
       FROM ${this.n.counters} WHERE name = $1`,
      [name],
    );
    const row = rows[0];
    if (row === undefined) return undefined;
    return {
      value: toInt(row.value, name),
      meta: row.meta,
      touchedAt: row.touched === null ? null : Number(row.touched),
    };
  }

  async claimNamespace(namespace: string, record: string): Promise<boolean> {
    const { rowCount } = await this.query(
      'claimNamespace',
      `INSERT INTO ${this.n.namespaces} (namespace, record) VALUES ($1, $2)
       ON CONFLICT (namespace) DO NOTHING`,
      [namespace, record],
    );
    return rowCount === 1;
  }

  async namespaceRecord(namespace: string): Promise<string | undefined> {
    const { rows } = await this.query<{ record: string }>(
      'namespaceRecord',
      `SELECT record FROM ${this.n.namespaces} WHERE namespace = $1`,
      [namespace],
    );
    return rows[0]?.record;
  }

  async addVisitors(sets: ReadonlyMap<string, readonly string[]>): Promise<void> {
    if (sets.size === 0) return;
    // Keys in order, each row locked while it is merged: concurrent adds never deadlock or
    // overwrite each other.
    const keys = [...sets.keys()].sort();
    await this.transaction('addVisitors', async (q) => {
      await q(
        `INSERT INTO ${this.n.visitors} (key, registers)
         SELECT k, '\\x00'::bytea FROM unnest($1::text[]) AS k ORDER BY k
         ON CONFLICT (key) DO NOTHING`,
        [keys],
      );
      const { rows } = await q<{ key: string; registers: Buffer }>(
        `SELECT key, registers FROM ${this.n.visitors} WHERE key = ANY($1::text[])
         ORDER BY key FOR UPDATE`,
        [keys],
      );
      const changed: string[] = [];
      const encoded: Buffer[] = [];
      for (const row of rows) {
        const hll = Hll.decode(row.registers);
        let grew = false;
        for (const hash of sets.get(row.key) ?? []) grew = hll.add(hash) || grew;
        if (!grew) continue;
        changed.push(row.key);
        encoded.push(hll.encode());
      }
      if (changed.length === 0) return;
      await q(
        `UPDATE ${this.n.visitors} AS v SET registers = u.r
         FROM unnest($1::text[], $2::bytea[]) AS u(k, r) WHERE v.key = u.k`,
        [changed, encoded],
      );
    });
  }

  async countVisitors(keys: readonly string[]): Promise<number[]> {
    if (keys.length === 0) return [];
    const { rows } = await this.query<{ key: string; registers: Buffer }>(
      'countVisitors',
      `SELECT key, registers FROM ${this.n.visitors} WHERE key = ANY($1::text[])`,
      [[...keys]],
    );
    const found = new Map(rows.map((r) => [r.key, r.registers]));
    return keys.map((key) => Hll.decode(found.get(key)).count());
  }

  async deleteVisitors(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    await this.query(
      'deleteVisitors',
      `DELETE FROM ${this.n.visitors} WHERE key = ANY($1::text[])`,
      [[...keys]],
    );
  }

  async expireIdle(cutoff: number, limit: number): Promise<string[]> {
    const { rows } = await this.query<{ r_name: string; r_version: string }>(
      'expireIdle',
      `SELECT r_name, r_version
       FROM ${this.n.fn('tally_expire')}(to_timestamp($1::float8 / 1000), $2, $3)`,
      [cutoff, limit, this.origin],
    );
    for (const row of rows) this.feed.newest(row.r_name, Number(row.r_version), 0);
    return rows.map((r) => r.r_name);
  }

  async list(options: ListOptions = {}): Promise<ListPage> {
    const prefix = options.prefix ?? '';
    const limit = options.limit ?? 100;
    const after = decodeCursor(options.cursor) ?? '';
    // Names are ASCII below DEL (0x7f) in "C" order, so prefix + DEL bounds the prefix's range.
    const { rows } = await this.query<{ name: string; value: string }>(
      'list',
      `SELECT name, value FROM ${this.n.counters}
       WHERE name >= $1 AND name < $2 AND name > $3 ORDER BY name LIMIT $4`,
      [prefix, `${prefix}\x7f`, after, limit + 1],
    );
    const items = rows
      .slice(0, limit)
      .map((r) => ({ name: r.name, value: toInt(r.value, r.name) }));
    const last = items[items.length - 1];
    return { items, nextCursor: rows.length > limit && last ? encodeCursor(last.name) : null };
  }

  async claimKey(
    key: string,
    fingerprint: string,
    leaseMs: number,
    maxKeys: number,
  ): Promise<KeyClaim> {
    const { rows } = await this.query<{
      r_state: number;
      r_fingerprint: string | null;
      r_result: string | null;
    }>(
      'claimKey',
      `SELECT r_state, r_fingerprint, r_result FROM ${this.n.fn('tally_claim_key')}($1, $2, $3, $4)`,
      [key, fingerprint, Math.max(0, Math.round(leaseMs)), maxKeys],
    );
    const row = rows[0];
    if (row?.r_state === 1) return { fresh: true };
    if (row?.r_state === 2) return { fresh: false, full: true };
    if (row?.r_state === 0 && row.r_fingerprint !== null) {
      return { fresh: false, fingerprint: row.r_fingerprint, result: row.r_result };
    }
    throw new Error(`unexpected answer from PostgreSQL to claimKey: ${JSON.stringify(rows)}`);
  }

  async completeKey(key: string, result: string, ttlMs: number): Promise<void> {
    await this.query(
      'completeKey',
      `UPDATE ${this.n.keys}
       SET result = $2, expires_at = clock_timestamp() + $3::float8 * interval '1 millisecond'
       WHERE key = $1`,
      [key, result, ttlMs],
    );
  }

  async releaseKey(key: string): Promise<void> {
    await this.query('releaseKey', `SELECT ${this.n.fn('tally_release_key')}($1)`, [key]);
  }

  /**
   * One transaction: make sure the id has a row (a placeholder at epoch 0, long expired, so
   * concurrent first claims queue on one row), lock it, decide by the shared rule on the
   * database's clock, write the grant.
   */
  async claimInstance(
    instanceId: string,
    holder: string,
    leaseMs: number,
    takeoverEpoch?: number,
  ): Promise<InstanceClaim> {
    return this.transaction('claimInstance', async (q) => {
      await q(
        `INSERT INTO ${this.n.instances} (instance_id, epoch, holder, expires_at)
         VALUES ($1, 0, '', to_timestamp(0)) ON CONFLICT (instance_id) DO NOTHING`,
        [instanceId],
      );
      const found = await q<{ epoch: string; holder: string; expires: string }>(
        `SELECT epoch, holder, floor(extract(epoch FROM expires_at) * 1000) AS expires
         FROM ${this.n.instances} WHERE instance_id = $1 FOR UPDATE`,
        [instanceId],
      );
      // Read after the lock is held: a claim that waited for another decides on the time now.
      const clock = await q<{ now: string }>(
        'SELECT floor(extract(epoch FROM clock_timestamp()) * 1000) AS now',
        [],
      );
      const row = found.rows[0];
      if (row === undefined) throw new Error(`instance ${instanceId} has no row after insert`);
      const record = {
        epoch: Number(row.epoch),
        holder: row.holder,
        expiresAt: Number(row.expires),
      };
      const claim = decideClaim(record, Number(clock.rows[0]?.now), takeoverEpoch);
      if (claim.granted) {
        await q(
          `UPDATE ${this.n.instances}
           SET epoch = $2, holder = $3,
               expires_at = clock_timestamp() + $4::float8 * interval '1 millisecond'
           WHERE instance_id = $1`,
          [instanceId, claim.epoch, holder, leaseMs],
        );
      }
      return claim;
    });
  }

  async renewInstance(instanceId: string, epoch: number, leaseMs: number): Promise<boolean> {
    const { rowCount } = await this.query(
      'renewInstance',
      `UPDATE ${this.n.instances}
       SET expires_at = clock_timestamp() + $3::float8 * interval '1 millisecond'
       WHERE instance_id = $1 AND epoch = $2`,
      [instanceId, epoch, leaseMs],
    );
    return (rowCount ?? 0) > 0;
  }

  async releaseInstance(instanceId: string, epoch: number): Promise<void> {
    // The lease ends; the row (and its epoch) stays, so the next claim gets a new epoch.
    await this.query(
      'releaseInstance',
      `UPDATE ${this.n.instances} SET expires_at = to_timestamp(0)
       WHERE instance_id = $1 AND epoch = $2`,
      [instanceId, epoch],
    );
  }

  async ping(): Promise<void> {
    await this.query('ping', 'SELECT 1', [], Math.min(this.commandTimeoutMs, 2000));
  }

  watch(listener: ChangeListener): () => void {
    return this.feed.watch(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.feed.close();
    await this.pool.end();
  }

  /** A resync's read: rows of these counters with their versions, 1000 names per query. */
  private async readVersions(names: string[]): Promise<Map<string, StoredVersion>> {
    const rows = new Map<string, StoredVersion>();
    for (let i = 0; i < names.length; i += 1000) {
      const chunk = names.slice(i, i + 1000);
      const result = await this.query<{ name: string; value: string; version: string }>(
        'resync',
        `SELECT name, value, version FROM ${this.n.counters} WHERE name = ANY($1::text[])`,
        [chunk],
      );
      for (const r of result.rows) {
        rows.set(r.name, { version: Number(r.version), value: toInt(r.value, r.name) });
      }
    }
    return rows;
  }

  /**
   * One statement on a pooled connection, bounded in time. A statement that timed out may still
   * complete on the server: batches are safe, as they are deduped by (writer id, seq).
   */
  private async query<R extends QueryResultRow = QueryResultRow>(
    what: string,
    text: string,
    values: unknown[],
    ms = this.commandTimeoutMs,
  ) {
    if (this.closed) throw new Error('postgres store is closed');
    try {
      return await this.pool.query<R>(timed(text, values, ms));
    } catch (err) {
      throw this.failure(what, err);
    }
  }

  /** Runs `body` in a transaction on one pooled connection; a failure rolls it back. */
  private async transaction<T>(what: string, body: (q: TxQuery) => Promise<T>): Promise<T> {
    if (this.closed) throw new Error('postgres store is closed');
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw this.failure(what, err);
    }
    const q = <R extends QueryResultRow>(text: string, values: unknown[]) =>
      client.query<R>(timed(text, values, this.commandTimeoutMs));
    try {
      await q('BEGIN', []);
      const result = await body(q);
      await q('COMMIT', []);
      client.release();
      return result;
    } catch (err) {
      // A connection in an unknown state (a timeout mid-transaction) is closed, not reused.
      client.release(err instanceof Error ? err : new Error(String(err)));
      throw this.failure(what, err);
    }
  }

  private failure(what: string, err: unknown): Error {
    const e = err instanceof Error ? err : new Error(String(err));
    const code = (e as { code?: unknown }).code;
    let why = reason(e);
    if (why === '') why = this.options.lastError?.()?.message ?? 'no reason given';
    // SQLSTATE codes (40P01, 57P01…) say more than their messages to whoever searches for them.
    const sqlstate = typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? ` (${code})` : '';
    return new Error(`PostgreSQL ${this.options.target}: ${what} failed: ${why}${sqlstate}`, {
      cause: e,
    });
  }
}

/**
 * An error's message; for a connection refused on every address of a host (an AggregateError
 * with an empty message), the first address's.
 */
export function reason(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  if (err.message !== '') return err.message;
  const first = err instanceof AggregateError ? err.errors[0] : undefined;
  const code = (err as { code?: unknown }).code;
  return first instanceof Error ? first.message : typeof code === 'string' ? code : '';
}

/** A bigint from node-postgres (a string) as a number; refuses one that is not exact. */
function toInt(raw: string, what: string): number {
  const value = Number(raw);
  if (!Number.isSafeInteger(value)) {
    throw new Error(`PostgreSQL holds ${raw} for "${what}", not an integer within ±(2^53-1)`);
  }
  return value;
}

function assertValue(value: number): void {
  if (!Number.isSafeInteger(value)) {
    throw new RangeError(`counter values are integers within ±(2^53-1), not ${value}`);
  }
}
