/** @module wal/replay — applies what a previous process left in its log, exactly once. */
import { open, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Store } from '../store/interface.js';
import { encodeFrame } from './frames.js';
import {
  clearSegments,
  foldRun,
  type LogPlan,
  MARKERS_ONLY,
  planLog,
  type RecoveredBatch,
  segmentName,
} from './reader.js';

/** What a replay did. */
export interface RecoveryResult {
  /** Segment files found. */
  readonly segments: number;
  /** Batches sent to the store (their seq was not applied before). */
  readonly applied: number;
  /** Batches the store had already applied (found by seq), skipped. */
  readonly skipped: number;
  /** Increments in the applied batches. */
  readonly increments: number;
  /** Bytes of torn frames ignored (a crash mid-write; those increments were never acknowledged). */
  readonly tornBytes: number;
  /** Number for the next segment file, above any that existed. */
  readonly nextSegment: number;
  /** Writer ids whose batches the log held, in the order found. */
  readonly writers: readonly string[];
}

/** Options for {@link recoverLog}. */
export interface RecoverOptions {
  /**
   * Most distinct counters in one batch cut from the uncut remainder. Bounds replay's memory
   * (about 100 B per counter) and the size of one store transaction.
   * @default 100000
   */
  readonly chunkCounters?: number;
}

/**
 * Replays `dir` into the store, then removes the segments. Each segment's batches go out under
 * the writer id in its header (`instanceId` for headers without one). Marked batches are re-sent
 * under their own seq, and those the store already holds are skipped without being summed; the
 * increments after the last marker are sent in chunks under the next seqs, each chunk's marker
 * written to disk before it is sent, so a crash during replay cannot apply a chunk twice.
 *
 * Two passes over the files: the first keeps only markers, the second sums each batch as it
 * reads and applies it before reading on, so memory grows with the distinct counters of one
 * batch and with the number of markers, not with the number of increments.
 */
export async function recoverLog(
  dir: string,
  store: Store,
  instanceId: string,
  options: RecoverOptions = {},
): Promise<RecoveryResult> {
  const plan = await planLog(dir, instanceId);
  const writers = [...new Set(plan.runs.map((run) => run.writer))];
  const result = {
    segments: plan.segments.length,
    applied: 0,
    skipped: 0,
    increments: 0,
    tornBytes: plan.tornBytes,
    nextSegment: plan.nextSegment,
    writers,
  };
  if (plan.segments.length === 0) return result;
  for (const writer of writers) {
    const appliedSeq = await store.lastSeq(writer);
    let lastSeq = appliedSeq;
    for (const seq of seqsOf(plan, writer)) if (seq > lastSeq) lastSeq = seq;
    const apply = async (batch: RecoveredBatch) => {
      let seq = batch.seq;
      // A batch keeps the time it was cut, so a replay adds to the same history buckets.
      let at = batch.at ?? Date.now();
      if (seq === undefined) {
        seq = ++lastSeq;
        at = Date.now();
        await writeMarker(dir, result.nextSegment++, writer, seq, batch.lastItem, at);
      }
      if (batch.deltas.size > 0)
        await store.applyBatch({ instanceId: writer, seq, deltas: batch.deltas, at });
      result.applied++;
      result.increments += batch.items;
    };
    for (const run of plan.runs) {
      if (run.writer !== writer) continue;
      // An earlier run of the same writer always ends fully marked (a process replays and marks
      // its directory before it writes to it), so only the last run can have a remainder.
      await foldRun(run, {
        appliedSeq,
        chunkCounters: options.chunkCounters ?? 100_000,
        onBatch: apply,
        onSkip: () => {
          result.skipped++;
        },
      });
    }
  }
  await clearSegments(dir);
  return result;
}

function* seqsOf(plan: LogPlan, writer: string): Generator<number> {
  for (const run of plan.runs) if (run.writer === writer) yield* run.seqs;
}

/**
 * Writes `M seq lastItem` for `writer` in a new segment numbered above every other one, and
 * makes it durable (file and directory entry) before the batch it announces is sent.
 */
async function writeMarker(
  dir: string,
  n: number,
  writer: string,
  seq: number,
  lastItem: number,
  at: number,
): Promise<void> {
  await writeFile(
    join(dir, segmentName(n)),
    Buffer.concat([
      encodeFrame(`S ${MARKERS_ONLY} ${writer}\n`),
      encodeFrame(`M ${seq} ${lastItem} ${at}\n`),
    ]),
    { flush: true },
  );
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Replays the logs that instances not running now left under `root` (one directory per instance
 * id), each under its own id, then removes them. This is how increments acknowledged by a
 * worker survive a crash followed by a smaller `TALLY_WORKERS`, a switch to one process, or
 * turning the log off: nothing else would ever read those directories again.
 */
export async function adoptOrphanLogs(
  root: string,
  store: Store,
  live: ReadonlySet<string>,
  /**
   * Locks a directory before it is read; undefined when a running process holds it (that log is
   * not left over, and is skipped).
   */
  lock: (dir: string) => { release(): void } | undefined = () => ({ release() {} }),
): Promise<Array<RecoveryResult & { readonly instanceId: string }>> {
  let names: string[];
  try {
    names = (await readdir(root, { withFileTypes: true }))
      .filter((entry) => entry.isDirectory() && !live.has(entry.name))
      .map((entry) => entry.name)
      .sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const adopted: Array<RecoveryResult & { readonly instanceId: string }> = [];
  for (const instanceId of names) {
    const dir = join(root, instanceId);
    const held = lock(dir);
    if (held === undefined) continue;
    try {
      const result = await recoverLog(dir, store, instanceId);
      await rm(dir, { recursive: true, force: true });
      if (result.segments > 0) adopted.push({ instanceId, ...result });
    } finally {
      held.release();
    }
  }
  return adopted;
}
