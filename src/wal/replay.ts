/** @module wal/replay — rebuilds unflushed batches from a log left by a stopped or crashed process. */
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeFrames } from './frames.js';

/** A batch the log says was cut (marker) or the increments after the last cut. */
export interface RecoveredBatch {
  /** The seq the batch was sent with; undefined for increments never cut into a batch. */
  readonly seq: number | undefined;
  readonly deltas: Map<string, number>;
  /** Increments in the batch. */
  readonly items: number;
}

/** Everything read from a log directory. */
export interface RecoveredLog {
  /** Batches in log order, then the uncut remainder (if any). */
  readonly batches: RecoveredBatch[];
  /** Segment files read, oldest first. */
  readonly segments: string[];
  /** Bytes ignored at torn segment tails. */
  readonly tornBytes: number;
}

const SEGMENT_RE = /^segment-(\d{12})\.log$/;

export function segmentName(n: number): string {
  return `segment-${String(n).padStart(12, '0')}.log`;
}

/** Segment files in a directory, oldest first. */
export async function listSegments(dir: string): Promise<Array<{ n: number; path: string }>> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return names
    .map((name) => ({ m: SEGMENT_RE.exec(name), name }))
    .filter((x): x is { m: RegExpExecArray; name: string } => x.m !== null)
    .map((x) => ({ n: Number(x.m[1]), path: join(dir, x.name) }))
    .sort((a, b) => a.n - b.n);
}

interface Item {
  readonly idx: number;
  readonly name: string;
  readonly by: number;
}

/**
 * Reads every segment. Payload lines: `S <firstItem>` opens a segment (items are numbered from
 * there), `I <by> <name>` is one acknowledged increment, `M <seq> <lastItem>` says batch `seq`
 * holds every increment numbered ≤ lastItem not in an earlier batch.
 */
export async function readLog(dir: string): Promise<RecoveredLog> {
  const segments = await listSegments(dir);
  const batches: RecoveredBatch[] = [];
  let fifo: Item[] = [];
  let tornBytes = 0;
  for (const segment of segments) {
    const decoded = decodeFrames(await readFile(segment.path));
    tornBytes += decoded.tornBytes;
    let next = 1;
    for (const payload of decoded.payloads) {
      for (const line of payload.split('\n')) {
        if (line === '') continue;
        const kind = line.charCodeAt(0);
        if (kind === 73 /* I */) {
          const space = line.indexOf(' ', 2);
          fifo.push({ idx: next++, by: Number(line.slice(2, space)), name: line.slice(space + 1) });
        } else if (kind === 77 /* M */) {
          const [, seq, last] = line.split(' ');
          const lastItem = Number(last);
          let cut = 0;
          while (cut < fifo.length && (fifo[cut] as Item).idx <= lastItem) cut++;
          batches.push(toBatch(Number(seq), fifo.slice(0, cut)));
          fifo = fifo.slice(cut);
        } else if (kind === 83 /* S */) {
          next = Number(line.slice(2));
        }
      }
    }
  }
  if (fifo.length > 0) batches.push(toBatch(undefined, fifo));
  return { batches, segments: segments.map((s) => s.path), tornBytes };
}

function toBatch(seq: number | undefined, items: Item[]): RecoveredBatch {
  const deltas = new Map<string, number>();
  for (const { name, by } of items) deltas.set(name, (deltas.get(name) ?? 0) + by);
  for (const [name, delta] of deltas) if (delta === 0) deltas.delete(name);
  return { seq, deltas, items: items.length };
}

/** Removes every segment in a directory (after a successful replay). */
export async function clearSegments(dir: string): Promise<void> {
  for (const s of await listSegments(dir)) await rm(s.path, { force: true });
}
