/**
 * @module bench/sections/replay — a restart on a log of millions of unflushed increments: time
 * from spawn to listening (the replay), peak RSS, under a 256 MB heap, and the exact counts.
 */
import { join } from 'node:path';
import { writeSyntheticLog } from '../../test/helpers/replay-log.js';
import type { BenchContext } from '../lib/context.js';
import { call } from '../lib/http.js';
import { startTally, workDir } from '../lib/procs.js';
import { check, type ReplayResult } from '../lib/results.js';

const COUNTERS = 300;
const MARKED_BATCHES = 40;
const INSTANCE_ID = 'bench-replay';
/** The heap the issue asks replay to fit in. */
const HEAP_LIMIT_MB = 256;
/** Replay time allowed before the start counts as failed. */
const START_TIMEOUT_MS = 300_000;

export async function replay(ctx: BenchContext): Promise<ReplayResult> {
  const increments = ctx.settings.replayIncrements;
  const env = { TALLY_STORE: 'sqlite', TALLY_INSTANCE_ID: INSTANCE_ID };
  const options = (name: string) => {
    const { nodeFlags, main } = ctx.spawn(name);
    return {
      name,
      env,
      nodeFlags: [`--max-old-space-size=${HEAP_LIMIT_MB}`, ...nodeFlags],
      startTimeoutMs: START_TIMEOUT_MS,
      ...(main ? { main } : {}),
    };
  };

  // The same start on an empty data directory: what a start costs without a log.
  const emptyAt = performance.now();
  const empty = await startTally(options('replay-empty'));
  const emptyStartSeconds = (performance.now() - emptyAt) / 1000;
  await empty.stop('SIGTERM');

  const name = 'replay-sqlite';
  ctx.log(`replay: writing a log of ${increments.toLocaleString('en-US')} increments`);
  const writeAt = performance.now();
  const log = writeSyntheticLog({
    dir: join(workDir(name), 'data', 'wal', INSTANCE_ID),
    increments,
    counters: COUNTERS,
    markedBatches: MARKED_BATCHES,
  });
  const writeSeconds = (performance.now() - writeAt) / 1000;
  ctx.log(`replay: ${(log.bytes / 2 ** 20).toFixed(0)} MiB in ${log.segments} segments; starting`);

  const startAt = performance.now();
  const server = await startTally(options(name));
  const startSeconds = (performance.now() - startAt) / 1000;
  try {
    // Peak RSS so far: the replay, since the process has done nothing else yet.
    const peakRssBytes = server.rssBytes('VmHWM') ?? Number.NaN;
    const page = await call<{ items: Array<{ name: string; value: number }> }>(
      `${server.url}/api/v1/counters?prefix=replay:&limit=1000`,
    );
    const stored = new Map(page.items.map((item) => [item.name, item.value]));
    let mismatched = 0;
    for (const key of new Set([...log.expected.keys(), ...stored.keys()])) {
      if ((stored.get(key) ?? 0) !== (log.expected.get(key) ?? 0)) mismatched++;
    }
    const sum = (values: Iterable<number>) => [...values].reduce((a, b) => a + b, 0);
    const summed = check(
      `sum of ${log.expected.size} counters via the API after replay (${mismatched} differ)`,
      sum(log.expected.values()),
      sum(stored.values()),
    );
    const result = { ...summed, ok: summed.ok && mismatched === 0 };
    if (!result.ok) {
      ctx.fail(`replay: ${mismatched} of ${log.expected.size} counters differ after replay`);
    }
    return {
      increments,
      counters: COUNTERS,
      markedBatches: log.marked.length,
      logBytes: log.bytes,
      segments: log.segments,
      heapLimitMb: HEAP_LIMIT_MB,
      writeSeconds,
      emptyStartSeconds,
      startSeconds,
      incrementsPerSec: increments / startSeconds,
      peakRssBytes,
      check: result,
    };
  } finally {
    const code = await server.stop('SIGTERM');
    if (code !== 0) ctx.fail(`replay: server exited with ${code} after SIGTERM`);
  }
}
