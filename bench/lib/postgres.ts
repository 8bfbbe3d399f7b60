/**
 * @module bench/lib/postgres — a database of the bench's own on the machine's PostgreSQL
 * (127.0.0.1:5432, or TALLY_BENCH_POSTGRES_URL), created for one run and dropped after it.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export interface BenchDatabase {
  /** postgres:// URL of the fresh database. */
  readonly url: string;
  drop(): Promise<void>;
}

/** Creates the database; undefined (with the reason) when no PostgreSQL answers. */
export async function benchDatabase(): Promise<BenchDatabase | { readonly missing: string }> {
  const admin = new URL(
    process.env.TALLY_BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  );
  const name = `tally_bench_${randomBytes(4).toString('hex')}`;
  const client = new pg.Client({ connectionString: admin.href, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query(`CREATE DATABASE ${name}`);
  } catch (err) {
    await client.end().catch(() => undefined);
    return { missing: `PostgreSQL at ${admin.host}: ${(err as Error).message}` };
  }
  const url = new URL(admin.href);
  url.pathname = `/${name}`;
  return {
    url: url.href,
    async drop() {
      // WITH (FORCE): a Tally that did not stop cleanly may still hold connections.
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
      await client.end().catch(() => undefined);
    },
  };
}

/** A counter of Tally's /metrics (summed over its labels), e.g. `tally_batches_flushed_total`. */
export async function metricTotal(baseUrl: string, metric: string): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(metric)) continue;
    const rest = line.slice(metric.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}
