/**
 * @module bench/sections/workers — `tally serve` with one worker against one per core, same
 * route, interleaved; the totals are read from the SQLite file after a clean stop.
 */
import { availableParallelism } from 'node:os';
import Database from 'better-sqlite3';
import type { BenchContext } from '../lib/context.js';
import { compare, type Target } from '../lib/load.js';
import { childrenOf, type Service, sqlitePathOf, startTally } from '../lib/procs.js';
import { check, type WorkersRow } from '../lib/results.js';
import { incrementRequests } from './throughput.js';

export async function workers(ctx: BenchContext): Promise<{ cores: number; rows: WorkersRow[] }> {
  const cores = availableParallelism();
  const counts = cores > 1 ? [1, cores] : [1];
  const services: Service[] = [];
  const running = new Set<Service>();
  try {
    const targets: Target[] = [];
    for (const count of counts) {
      const id = `workers-${count}`;
      ctx.log(`starting tally ${id}`);
      const server = await startTally({
        name: id,
        env: {
          TALLY_STORE: 'sqlite',
          TALLY_AGGREGATOR: 'accumulate',
          TALLY_WORKERS: String(count),
        },
        ...ctx.spawn(id),
      });
      services.push(server);
      running.add(server);
      targets.push({
        id,
        label: id,
        url: server.url,
        connections: ctx.settings.connections,
        processes: Object.fromEntries(
          [server.pid, ...childrenOf(server.pid)].map((pid, i) => [
            i === 0 ? 'server' : `worker${i}`,
            pid,
          ]),
        ),
        requests: incrementRequests(id, ctx.settings.countersPerTarget),
      });
    }
    ctx.log(`workers: 1 vs ${cores} × ${ctx.settings.secondsPerTarget} s`);
    const meters = await compare(targets, {
      secondsPerTarget: ctx.settings.secondsPerTarget,
      rounds: ctx.settings.rounds,
      warmupSeconds: ctx.settings.warmupSeconds,
      progress: (t, s, round) =>
        ctx.verbose &&
        ctx.log(
          `  r${round + 1} ${t.id.padEnd(28)} ${Math.round((s.ok * 1000) / s.ms)
            .toString()
            .padStart(7)} req/s`,
        ),
    });
    const rows: WorkersRow[] = [];
    for (const [i, server] of services.entries()) {
      const count = counts[i] ?? 1;
      const id = `workers-${count}`;
      const meter = meters.get(id);
      if (meter === undefined) continue;
      // Each worker flushes only its own increments on a strong read: stop them all (every one
      // drains) and read the file instead.
      const code = await server.stop('SIGTERM');
      running.delete(server);
      if (code !== 0) ctx.fail(`${id}: exited with ${code} after SIGTERM`);
      const db = new Database(sqlitePathOf(id), { readonly: true });
      const row = db
        .prepare('SELECT coalesce(sum(value), 0) AS total FROM counters WHERE name LIKE ?')
        .get(`${id}.%`) as { total: number };
      db.close();
      const result = check(
        'sum of the counters read from the SQLite file after SIGTERM',
        meter.acknowledged,
        row.total,
        meter.uncertain,
      );
      if (!result.ok) ctx.fail(`${id}: stored ${row.total}, acknowledged ${meter.acknowledged}`);
      rows.push({
        workers: count,
        reqPerSec: meter.rate,
        p50Ms: meter.percentile(0.5),
        p99Ms: meter.percentile(0.99),
        coresUsed: serverCores(meter.coresUsed()),
        check: result,
      });
    }
    return { cores, rows };
  } finally {
    await Promise.all([...running].map((s) => s.stop()));
  }
}

/** Folds the primary's and workers' CPU into one `server` figure. */
function serverCores(cores: Record<string, number>): Record<string, number> {
  let server = 0;
  for (const [label, used] of Object.entries(cores)) {
    if (label === 'server' || label.startsWith('worker')) server += used;
  }
  return { generator: cores.generator ?? 0, server };
}
