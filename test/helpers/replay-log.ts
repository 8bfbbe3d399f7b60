// Writes a large write-ahead log straight to disk in the on-disk format, for replay tests and the
// replay bench: segments of frames, headers, item lines, markers, and the exact sums to expect.
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { encodeFrame } from '../../src/wal/frames.js';
import { segmentName } from '../../src/wal/reader.js';

/** What to write. */
export interface SyntheticLogOptions {
  /** The log directory, `<dataDir>/wal/<instanceId>`; created if missing. */
  readonly dir: string;
  /** Increments (item lines) in the whole log. */
  readonly increments: number;
  /** Distinct counter names the increments spread over. */
  readonly counters: number;
  /** How many of the first batches get a marker; every later item is the uncut remainder. */
  readonly markedBatches: number;
  /** Items per marked batch, at most; each batch gets a random size up to this. @default 50000 */
  readonly maxBatchItems?: number;
  /** Writer id in each header; omitted: `S <firstItem>` (a log from before writer ids). */
  readonly writer?: string;
  /** Start a new segment past this size, bytes. @default 67108864 (the server's default) */
  readonly segmentBytes?: number;
  /** Most items one frame (one group commit) holds. @default 2000 */
  readonly maxFrameItems?: number;
  /** Seed of the pseudo-random choices, so a run can be repeated. @default 1 */
  readonly seed?: number;
}

/** What was written. */
export interface SyntheticLog {
  /** Counter name → the value replay must produce (every increment counted once). */
  readonly expected: Map<string, number>;
  /** Deltas of each marked batch, by seq, for tests that pre-apply some of them. */
  readonly marked: Array<{ readonly seq: number; readonly deltas: Map<string, number> }>;
  readonly segments: number;
  readonly bytes: number;
}

const MIB = 1024 * 1024;
/** Amounts an increment adds; mostly 1, some decrements. */
const AMOUNTS = [1, 1, 1, 1, 1, 2, 3, -1, 7, 1];

/** A small deterministic generator (mulberry32); tests must not depend on Math.random. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The name of counter `k`, like a page id. */
export function syntheticName(k: number): string {
  return `replay:page-${String(k).padStart(5, '0')}`;
}

/**
 * Writes the log the way the server would have: frames of up to `maxFrameItems` lines (markers
 * inside frames, as group commit mixes them), a marker written only after its last item, and
 * often after items of the next batch too (the straddle replay must get right). Memory stays
 * small: frames are written out every few MiB.
 */
export function writeSyntheticLog(options: SyntheticLogOptions): SyntheticLog {
  const rand = random(options.seed ?? 1);
  const segmentBytes = options.segmentBytes ?? 64 * MIB;
  const maxFrameItems = options.maxFrameItems ?? 2000;
  const maxBatchItems = options.maxBatchItems ?? 50_000;
  const names = Array.from({ length: options.counters }, (_, k) => syntheticName(k));
  const expected = new Map<string, number>();
  const marked: Array<{ seq: number; deltas: Map<string, number> }> = [];
  mkdirSync(options.dir, { recursive: true });

  let segment = 0;
  let fd = -1;
  let segmentSize = 0;
  let bytes = 0;
  let buffered: Buffer[] = [];
  let bufferedBytes = 0;
  const flushBuffered = () => {
    for (const b of buffered) {
      let done = 0;
      while (done < b.length) done += writeSync(fd, b, done);
    }
    buffered = [];
    bufferedBytes = 0;
  };
  const writeFrame = (payload: string) => {
    const frame = encodeFrame(payload);
    buffered.push(frame);
    bufferedBytes += frame.length;
    segmentSize += frame.length;
    bytes += frame.length;
    if (bufferedBytes >= 4 * MIB) flushBuffered();
  };
  const openSegment = (firstItem: number) => {
    if (fd >= 0) {
      flushBuffered();
      closeSync(fd);
    }
    segment++;
    fd = openSync(join(options.dir, segmentName(segment)), 'w');
    segmentSize = 0;
    const writer = options.writer === undefined ? '' : ` ${options.writer}`;
    writeFrame(`S ${firstItem}${writer}\n`);
  };

  // Batch boundaries: batch s holds items (last[s-1], last[s]].
  const lasts: number[] = [];
  for (let at = 0; lasts.length < options.markedBatches; ) {
    at += 1 + Math.floor(rand() * maxBatchItems);
    if (at >= options.increments) break;
    lasts.push(at);
  }
  let nextMarker = 0; // index into lasts of the next marker to write
  let batchDeltas = new Map<string, number>();

  openSegment(1);
  let item = 0;
  while (item < options.increments) {
    if (segmentSize >= segmentBytes) openSegment(item + 1);
    const frameItems = Math.min(
      options.increments - item,
      rand() < 0.1 ? 1 : 1 + Math.floor(rand() * maxFrameItems),
    );
    let lines = '';
    for (let i = 0; i < frameItems; i++) {
      // A marker whose last item is already out may come now, or a few lines later.
      if (nextMarker < lasts.length && (lasts[nextMarker] as number) <= item && rand() < 0.05) {
        lines += `M ${nextMarker + 1} ${lasts[nextMarker]}\n`;
        nextMarker++;
      }
      item++;
      const name = names[Math.floor(rand() * names.length)] as string;
      const by = AMOUNTS[Math.floor(rand() * AMOUNTS.length)] as number;
      lines += `I ${by} ${name}\n`;
      expected.set(name, (expected.get(name) ?? 0) + by);
      if (marked.length < lasts.length) {
        batchDeltas.set(name, (batchDeltas.get(name) ?? 0) + by);
        if (item === lasts[marked.length]) {
          marked.push({ seq: marked.length + 1, deltas: batchDeltas });
          batchDeltas = new Map();
        }
      }
    }
    writeFrame(lines);
  }
  // Markers still owed (their batch ended in the last frames) close the log.
  let tail = '';
  while (nextMarker < lasts.length) {
    tail += `M ${nextMarker + 1} ${lasts[nextMarker]}\n`;
    nextMarker++;
  }
  if (tail !== '') writeFrame(tail);
  flushBuffered();
  closeSync(fd);
  for (const [name, value] of expected) if (value === 0) expected.delete(name);
  return { expected, marked, segments: segment, bytes };
}
