/**
 * @module store/postgres/schema — Tally's tables and functions in PostgreSQL, created and brought
 * up to date at start by numbered migrations (recorded in `tally_migrations`), under an advisory
 * lock so that instances starting together apply each migration once.
 */
import type { Pool, QueryConfig } from 'pg';

/** Largest magnitude a counter may hold: 2^53 - 1, what JSON readers read exactly. */
const MAX = '9007199254740991';

/**
 * A query that gives up after `ms` (node-postgres then closes its pooled connection). The client
 * reads `query_timeout` from the query config; @types/pg does not declare it there.
 */
export function timed(text: string, values: unknown[], ms: number): QueryConfig {
  const config: QueryConfig & { query_timeout: number } = { text, values, query_timeout: ms };
  return config;
}

/** Quotes an identifier for SQL. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Schema names the store accepts: they become part of identifiers and of the channel. */
export const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,47}$/;

/** The qualified names of everything the store creates in its schema. */
export interface SchemaNames {
  readonly schema: string;
  readonly counters: string;
  readonly writers: string;
  readonly keys: string;
  readonly keyCount: string;
  readonly namespaces: string;
  readonly instances: string;
  /** HyperLogLogs of unique visitors (store/hll.ts encoding). */
  readonly visitors: string;
  readonly migrations: string;
  /** The sequence that orders every write (a regclass literal's text, for nextval). */
  readonly version: string;
  /** NOTIFY channel of change messages (a plain string; LISTEN needs it quoted). */
  readonly channel: string;
  /** A function's qualified name. */
  fn(name: string): string;
}

export function schemaNames(schema: string): SchemaNames {
  if (!SCHEMA_RE.test(schema)) {
    throw new Error(`PostgreSQL schema "${schema}" is not 1-48 characters of a-z, 0-9 and _`);
  }
  const s = quoteIdent(schema);
  return {
    schema,
    counters: `${s}.tally_counters`,
    writers: `${s}.tally_writers`,
    keys: `${s}.tally_keys`,
    keyCount: `${s}.tally_key_count`,
    namespaces: `${s}.tally_namespaces`,
    instances: `${s}.tally_instances`,
    visitors: `${s}.tally_visitors`,
    migrations: `${s}.tally_migrations`,
    version: `${s}.tally_version`,
    channel: `${schema}.tally_changes`,
    fn: (name) => `${s}.${name}`,
  };
}

/** One step of the schema; applied once, in order, in the transaction that records it. */
export interface Migration {
  readonly version: number;
  readonly name: string;
  sql(n: SchemaNames): string;
}

/**
 * Every write takes its version from one sequence (`tally_version`, no cache, so values follow
 * the order they are taken in) after it holds the row locks of the counters it writes. Two
 * transactions writing one counter take the lock in turn, so the later one's version is higher:
 * per counter, versions follow commit order, and a reader that keeps the highest version it has
 * seen never steps back. A row keeps the version of its last write. An update takes its
 * row's version while holding the lock (nextval in SET); a new row is inserted at 0 and gets the
 * transaction's version once the transaction holds all its locks, because an insert computes its
 * values before it waits (for a delete of the same name, say).
 *
 * Batches lock their counters in name order ("C" collation), so two batches never deadlock.
 * Change messages (pg_notify, delivered at commit in commit order) are
 * `<origin> <version>\n<name> <value>\n…`, cut into chunks below the 8000-byte payload limit.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'counters, writers, idempotency keys, namespaces, instances, change messages',
    sql: (n) => `
CREATE TABLE ${n.counters} (
  name       text COLLATE "C" PRIMARY KEY,
  value      bigint NOT NULL CHECK (value BETWEEN -${MAX} AND ${MAX}),
  meta       text,
  touched_at timestamptz,
  version    bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 80);

CREATE TABLE ${n.writers} (
  writer text PRIMARY KEY,
  seq    bigint NOT NULL
);

CREATE TABLE ${n.keys} (
  key         text PRIMARY KEY,
  fingerprint text NOT NULL,
  result      text,
  expires_at  timestamptz NOT NULL
);
CREATE INDEX tally_keys_expiry ON ${n.keys} (expires_at);

-- Rows in tally_keys (live and expired), kept by the key functions, so the cap needs no count(*).
CREATE TABLE ${n.keyCount} (
  id int PRIMARY KEY CHECK (id = 1),
  n  bigint NOT NULL
);
INSERT INTO ${n.keyCount} (id, n) VALUES (1, 0);

CREATE TABLE ${n.namespaces} (
  namespace text PRIMARY KEY,
  record    text NOT NULL
);

CREATE TABLE ${n.instances} (
  instance_id text PRIMARY KEY,
  epoch       bigint NOT NULL,
  holder      text NOT NULL,
  expires_at  timestamptz NOT NULL
);

CREATE SEQUENCE ${n.version} AS bigint NO CYCLE CACHE 1;

CREATE FUNCTION ${n.fn('tally_publish')}(p_origin text, p_version bigint, p_names text[], p_values bigint[])
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM pg_notify('${n.channel}',
                    p_origin || ' ' || p_version || E'\\n' || string_agg(x.line, E'\\n' ORDER BY x.i))
  FROM (
    SELECT t.i, t.line, sum(octet_length(t.line) + 1) OVER (ORDER BY t.i) / 7000 AS chunk
    FROM (SELECT u.i, u.n || ' ' || u.v AS line
          FROM unnest(p_names, p_values) WITH ORDINALITY AS u(n, v, i)) AS t
  ) AS x
  GROUP BY x.chunk;
END
$fn$;

-- r_state: 0 applied, 1 refused (would leave the range), 2 duplicate batch (nothing changed).
CREATE FUNCTION ${n.fn('tally_apply_batch')}(p_writer text, p_seq bigint, p_names text[],
                                             p_deltas bigint[], p_origin text)
RETURNS TABLE (r_name text, r_value bigint, r_version bigint, r_state smallint)
LANGUAGE plpgsql AS $fn$
DECLARE
  v_fresh   boolean;
  v_now     timestamptz := clock_timestamp();
  v_version bigint;
  v_names   text[];
  v_values  bigint[];
  v_new     text[];
BEGIN
  INSERT INTO ${n.writers} AS w (writer, seq) VALUES (p_writer, p_seq)
  ON CONFLICT (writer) DO UPDATE SET seq = excluded.seq WHERE w.seq < excluded.seq
  RETURNING true INTO v_fresh;
  IF v_fresh IS NULL THEN
    RETURN QUERY
      SELECT t.n, coalesce(c.value, 0), coalesce(c.version, 0), 2::smallint
      FROM unnest(p_names) AS t(n)
      LEFT JOIN (SELECT * FROM ${n.counters} WHERE name = ANY(p_names)) AS c ON c.name = t.n;
    RETURN;
  END IF;

  WITH up AS (
    INSERT INTO ${n.counters} AS c (name, value, touched_at)
    SELECT t.n, t.d, v_now FROM unnest(p_names, p_deltas) AS t(n, d)
    WHERE t.d BETWEEN -${MAX} AND ${MAX}
    ORDER BY t.n COLLATE "C"
    ON CONFLICT (name) DO UPDATE
      SET value = c.value + excluded.value,
          touched_at = excluded.touched_at,
          version = nextval('${n.version}')
      WHERE c.value + excluded.value BETWEEN -${MAX} AND ${MAX}
    RETURNING c.name, c.value, c.version = 0 AS inserted
  )
  SELECT coalesce(array_agg(up.name), '{}'), coalesce(array_agg(up.value), '{}'),
         coalesce(array_agg(up.name) FILTER (WHERE up.inserted), '{}')
  INTO v_names, v_values, v_new
  FROM up;

  v_version := nextval('${n.version}');
  IF cardinality(v_new) > 0 THEN
    UPDATE ${n.counters} SET version = v_version WHERE name = ANY(v_new);
  END IF;
  PERFORM ${n.fn('tally_publish')}(p_origin, v_version, v_names, v_values);

  RETURN QUERY SELECT u.n, u.v, v_version, 0::smallint FROM unnest(v_names, v_values) AS u(n, v);
  IF cardinality(v_names) < cardinality(p_names) THEN
    -- Refused: the row (if any) is locked and unchanged; report its current value.
    RETURN QUERY
      SELECT r.n, coalesce(c.value, 0), coalesce(c.version, 0), 1::smallint
      FROM (SELECT unnest(p_names) EXCEPT SELECT unnest(v_names)) AS r(n)
      LEFT JOIN ${n.counters} AS c ON c.name = r.n;
  END IF;
END
$fn$;

CREATE FUNCTION ${n.fn('tally_set')}(p_name text, p_value bigint, p_origin text)
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
  v_version bigint;
BEGIN
  INSERT INTO ${n.counters} AS c (name, value, touched_at) VALUES (p_name, p_value, clock_timestamp())
  ON CONFLICT (name) DO UPDATE SET value = excluded.value, touched_at = excluded.touched_at;
  v_version := nextval('${n.version}');
  UPDATE ${n.counters} SET version = v_version WHERE name = p_name;
  PERFORM ${n.fn('tally_publish')}(p_origin, v_version, ARRAY[p_name], ARRAY[p_value]);
  RETURN v_version;
END
$fn$;

-- The version of the delete, or NULL when there was no such counter.
CREATE FUNCTION ${n.fn('tally_delete')}(p_name text, p_origin text)
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
  v_version bigint;
BEGIN
  DELETE FROM ${n.counters} WHERE name = p_name;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  v_version := nextval('${n.version}');
  PERFORM ${n.fn('tally_publish')}(p_origin, v_version, ARRAY[p_name], ARRAY[0::bigint]);
  RETURN v_version;
END
$fn$;

-- The version of the new counter, or NULL when the name exists already.
CREATE FUNCTION ${n.fn('tally_create')}(p_name text, p_value bigint, p_meta text, p_origin text)
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
  v_version bigint;
BEGIN
  INSERT INTO ${n.counters} (name, value, meta, touched_at)
  VALUES (p_name, p_value, p_meta, clock_timestamp())
  ON CONFLICT (name) DO NOTHING;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  v_version := nextval('${n.version}');
  UPDATE ${n.counters} SET version = v_version WHERE name = p_name;
  PERFORM ${n.fn('tally_publish')}(p_origin, v_version, ARRAY[p_name], ARRAY[p_value]);
  RETURN v_version;
END
$fn$;

-- Deletes up to p_limit counters last written before p_cutoff. Rows another transaction holds
-- are skipped (they are being written), and the cutoff is checked again on the latest row.
CREATE FUNCTION ${n.fn('tally_expire')}(p_cutoff timestamptz, p_limit int, p_origin text)
RETURNS TABLE (r_name text, r_version bigint) LANGUAGE plpgsql AS $fn$
DECLARE
  v_gone    text[];
  v_version bigint;
BEGIN
  WITH gone AS (
    DELETE FROM ${n.counters} AS c
    WHERE c.name IN (SELECT i.name FROM ${n.counters} AS i WHERE i.touched_at < p_cutoff
                     ORDER BY i.touched_at LIMIT p_limit FOR UPDATE SKIP LOCKED)
      AND c.touched_at < p_cutoff
    RETURNING c.name
  )
  SELECT coalesce(array_agg(gone.name), '{}') INTO v_gone FROM gone;
  IF cardinality(v_gone) = 0 THEN
    RETURN;
  END IF;
  v_version := nextval('${n.version}');
  PERFORM ${n.fn('tally_publish')}(p_origin, v_version, v_gone,
                                   array_fill(0::bigint, ARRAY[cardinality(v_gone)]));
  RETURN QUERY SELECT g.n, v_version FROM unnest(v_gone) AS g(n);
END
$fn$;

-- r_state: 0 held by a live claim (its fingerprint and result), 1 claimed now, 2 refused: the
-- store holds p_max live keys. The count row is always locked before any key row is deleted or
-- added (here and in tally_release_key), so claims of new keys queue and never deadlock.
CREATE FUNCTION ${n.fn('tally_claim_key')}(p_key text, p_fingerprint text, p_lease_ms bigint,
                                           p_max bigint)
RETURNS TABLE (r_state smallint, r_fingerprint text, r_result text)
LANGUAGE plpgsql AS $fn$
DECLARE
  v_now     timestamptz := clock_timestamp();
  v_expires timestamptz := clock_timestamp() + p_lease_ms * interval '1 millisecond';
  v_key     record;
  v_rows    bigint;
BEGIN
  LOOP
    SELECT k.fingerprint, k.result, k.expires_at INTO v_key
    FROM ${n.keys} AS k WHERE k.key = p_key FOR UPDATE;
    IF FOUND THEN
      IF v_key.expires_at > v_now THEN
        RETURN QUERY SELECT 0::smallint, v_key.fingerprint, v_key.result;
        RETURN;
      END IF;
      -- Expired: reused in place, so it takes no more room.
      UPDATE ${n.keys} SET fingerprint = p_fingerprint, result = NULL, expires_at = v_expires
      WHERE key = p_key;
      RETURN QUERY SELECT 1::smallint, NULL::text, NULL::text;
      RETURN;
    END IF;

    SELECT c.n INTO v_rows FROM ${n.keyCount} AS c WHERE c.id = 1 FOR UPDATE;
    IF v_rows >= p_max THEN
      -- Expired keys never count: sweep enough of them (at least 1000 at a time), then look again.
      WITH gone AS (
        DELETE FROM ${n.keys}
        WHERE key IN (SELECT e.key FROM ${n.keys} AS e WHERE e.expires_at <= v_now
                      ORDER BY e.expires_at LIMIT greatest(v_rows - p_max + 1, 1000)
                      FOR UPDATE SKIP LOCKED)
        RETURNING 1
      )
      SELECT v_rows - count(*) INTO v_rows FROM gone;
      UPDATE ${n.keyCount} SET n = v_rows WHERE id = 1;
      IF v_rows >= p_max THEN
        RETURN QUERY SELECT 2::smallint, NULL::text, NULL::text;
        RETURN;
      END IF;
    END IF;

    INSERT INTO ${n.keys} (key, fingerprint, result, expires_at)
    VALUES (p_key, p_fingerprint, NULL, v_expires)
    ON CONFLICT (key) DO NOTHING;
    IF FOUND THEN
      UPDATE ${n.keyCount} SET n = n + 1 WHERE id = 1;
      RETURN QUERY SELECT 1::smallint, NULL::text, NULL::text;
      RETURN;
    END IF;
    -- Another claim added the key first (and has committed: it held the count row). Look again.
  END LOOP;
END
$fn$;

CREATE FUNCTION ${n.fn('tally_release_key')}(p_key text)
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM 1 FROM ${n.keyCount} WHERE id = 1 FOR UPDATE;
  DELETE FROM ${n.keys} WHERE key = p_key;
  IF FOUND THEN
    UPDATE ${n.keyCount} SET n = n - 1 WHERE id = 1;
  END IF;
END
$fn$;
`,
  },
  {
    version: 2,
    name: 'unique visitors',
    sql: (n) => `
CREATE TABLE ${n.visitors} (
  key       text PRIMARY KEY,
  registers bytea NOT NULL
);
`,
  },
];

/** The index `expireIdle` uses; made only when counters expire, as it costs every update. */
const TOUCHED_INDEX = 'tally_counters_touched';

/** Options for {@link migrate}. */
export interface MigrateOptions {
  /** Index counters by their last write (counters expire). @default false */
  readonly indexLastWrite?: boolean;
  /** Longest wait for one statement, in ms. @default 600_000 */
  readonly statementTimeoutMs?: number;
}

/**
 * Creates the schema if needed and applies the migrations it lacks, all in one transaction
 * under `pg_advisory_xact_lock`: instances starting together wait for each other, and the later
 * ones find the work done. Migrations only add, so an older Tally keeps working on a schema a
 * newer one migrated. Returns the schema version.
 */
export async function migrate(
  pool: Pool,
  names: SchemaNames,
  options: MigrateOptions = {},
): Promise<number> {
  const client = await pool.connect();
  let failed: Error | undefined;
  try {
    const q = (text: string, values: unknown[] = []) =>
      client.query(timed(text, values, options.statementTimeoutMs ?? 600_000));
    await q('BEGIN');
    // Waiting for another instance's migration, or building an index on a large table, may
    // take longer than any command should.
    await q('SET LOCAL statement_timeout = 0');
    await q("SELECT pg_advisory_xact_lock(hashtext('tally_migrations'), hashtext($1))", [
      names.schema,
    ]);
    const exists = await q('SELECT 1 FROM pg_namespace WHERE nspname = $1', [names.schema]);
    // Only when missing: CREATE SCHEMA needs the CREATE privilege on the database even with
    // IF NOT EXISTS.
    if (exists.rowCount === 0) await q(`CREATE SCHEMA ${quoteIdent(names.schema)}`);
    await q(`CREATE TABLE IF NOT EXISTS ${names.migrations} (
      version    int PRIMARY KEY,
      name       text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const done = new Set(
      (await q(`SELECT version FROM ${names.migrations}`)).rows.map((r) => Number(r.version)),
    );
    for (const migration of MIGRATIONS) {
      if (done.has(migration.version)) continue;
      // Several statements: without parameters node-postgres uses the simple query protocol.
      await q(migration.sql(names));
      await q(`INSERT INTO ${names.migrations} (version, name) VALUES ($1, $2)`, [
        migration.version,
        migration.name,
      ]);
      done.add(migration.version);
    }
    if (options.indexLastWrite === true) {
      const index = await q(
        `SELECT 1 FROM pg_indexes WHERE schemaname = $1 AND indexname = '${TOUCHED_INDEX}'`,
        [names.schema],
      );
      if (index.rowCount === 0) {
        await q(`CREATE INDEX ${TOUCHED_INDEX} ON ${names.counters} (touched_at)`);
      }
    }
    await q('COMMIT');
    return Math.max(...done);
  } catch (err) {
    failed = err instanceof Error ? err : new Error(String(err));
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release(failed);
  }
}
