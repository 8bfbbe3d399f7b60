/**
 * @module bench/sections/memory — RSS of one process holding a million distinct counters pending
 * within one flush interval, then a clean stop that must write every one of them.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import type { BenchContext } from '../lib/context.js';
import { call } from '../lib/http.js';
import { sqlitePathOf, startTally } from '../lib/procs.js';
import { check, type MemoryResult } from '../lib/results.js';

const FLUSH_INTERVAL_MS = 60_000;
const ITEMS = 1000;
/** Requests in flight while pushing. */
const PARALLEL = 4;

/** A realistic name: ~24 characters, like a page or item id. */
function nameOf(i: number): string {
  return `mem:article-${String(i).padStart(8, '0')}`;
}

export async function memory(ctx: BenchContext): Promise<MemoryResult> {
  const total = ctx.settings.memoryCounters;
  const name = 'memory-sqlite-accumulate';
  ctx.log(`memory: ${total.toLocaleString('en-US')} distinct counters pending`);
  const server = await startTally({
    name,
    env: {
      TALLY_STORE: 'sqlite',
      TALLY_AGGREGATOR: 'accumulate',
      TALLY_FLUSH_INTERVAL_MS: String(FLUSH_INTERVAL_MS),
      TALLY_MAX_PENDING: String(Math.ceil(total * 1.1)),
      TALLY_DRAIN_TIMEOUT_MS: '120000',
    },
    ...ctx.spawn(name),
  });
  let stopped = false;
  try {
    await sleep(300);
    const rssIdleBytes = server.rssBytes() ?? Number.NaN;
    const started = performance.now();
    let next = 0;
    let acknowledged = 0;
    const worker = async () => {
      for (;;) {
        const first = next;
        if (first >= total) return;
        next = Math.min(total, first + ITEMS);
        const increments = [];
        for (let i = first; i < next; i++) increments.push({ name: nameOf(i), by: 1 });
        const r = await call<{ accepted: number }>(`${server.url}/api/v1/increments`, 'POST', {
          increments,
        });
        acknowledged += r.accepted;
      }
    };
    await Promise.all(Array.from({ length: PARALLEL }, worker));
    const pushSeconds = (performance.now() - started) / 1000;
    if (pushSeconds * 1000 > FLUSH_INTERVAL_MS * 0.9 - 2000) {
      ctx.fail(`memory: pushing took ${pushSeconds.toFixed(1)} s, longer than one flush interval`);
    }
    await sleep(500);
    const rssPendingBytes = server.rssBytes() ?? Number.NaN;

    const stopAt = performance.now();
    const exitCode = await server.stop('SIGTERM');
    stopped = true;
    const drainSeconds = (performance.now() - stopAt) / 1000;
    if (exitCode !== 0) ctx.fail(`memory: server exited with ${exitCode} after SIGTERM`);

    const db = new Database(sqlitePathOf(name), { readonly: true });
    const row = db
      .prepare(
        "SELECT count(*) AS n, coalesce(sum(value), 0) AS total FROM counters WHERE name >= 'mem:' AND name < 'mem;'",
      )
      .get() as { n: number; total: number };
    db.close();
    const result = check(
      `sum of ${total} counters read from the SQLite file after SIGTERM (${row.n} rows)`,
      acknowledged,
      row.total,
    );
    if (!result.ok || row.n !== total) {
      ctx.fail(`memory: SQLite holds ${row.n} counters summing ${row.total}, expected ${total}`);
    }
    return {
      counters: total,
      nameExample: nameOf(0),
      flushIntervalMs: FLUSH_INTERVAL_MS,
      rssIdleBytes,
      rssPendingBytes,
      pushSeconds,
      drainSeconds,
      exitCode,
      check: result,
    };
  } finally {
    if (!stopped) await server.stop('SIGKILL');
  }
}
