/** @module wal/recover — applies what a previous process left in its log, exactly once. */
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Store } from '../store/interface.js';
import { encodeFrame } from './frames.js';
import { clearSegments, listSegments, readLog, segmentName } from './replay.js';

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
}

/**
 * Replays `dir` into the store for `instanceId`, then removes the segments. Marked batches are
 * re-sent under their own seq (the store skips those it holds); increments after the last marker
 * get the next seq, and that marker is written to disk before they are sent, so a crash during
 * replay cannot apply them twice either.
 */
export async function recoverLog(
  dir: string,
  store: Store,
  instanceId: string,
): Promise<RecoveryResult> {
  const existing = await listSegments(dir);
  const nextSegment = (existing[existing.length - 1]?.n ?? 0) + 1;
  if (existing.length === 0) {
    return { segments: 0, applied: 0, skipped: 0, increments: 0, tornBytes: 0, nextSegment };
  }
  const log = await readLog(dir);
  const lastApplied = await store.lastSeq(instanceId);
  let maxSeq = lastApplied;
  let applied = 0;
  let skipped = 0;
  let increments = 0;
  let markerSegment = nextSegment;
  for (const batch of log.batches) {
    let seq = batch.seq;
    if (seq === undefined) {
      seq = maxSeq + 1;
      await writeFile(
        join(dir, segmentName(markerSegment++)),
        Buffer.concat([
          encodeFrame(`S ${Number.MAX_SAFE_INTEGER}\n`),
          encodeFrame(`M ${seq} ${Number.MAX_SAFE_INTEGER}\n`),
        ]),
        { flush: true },
      );
    }
    if (seq > maxSeq) maxSeq = seq;
    if (seq <= lastApplied) {
      skipped++;
      continue;
    }
    if (batch.deltas.size > 0) await store.applyBatch({ instanceId, seq, deltas: batch.deltas });
    applied++;
    increments += batch.items;
  }
  await clearSegments(dir);
  return {
    segments: existing.length,
    applied,
    skipped,
    increments,
    tornBytes: log.tornBytes,
    nextSegment: markerSegment,
  };
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
    const result = await recoverLog(dir, store, instanceId);
    await rm(dir, { recursive: true, force: true });
    if (result.segments > 0) adopted.push({ instanceId, ...result });
  }
  return adopted;
}
