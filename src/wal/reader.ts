/**
 * @module wal/reader — reads a log left by a stopped or crashed process, streaming: memory grows
 * with the markers and with the distinct counters of one batch, never with the increments.
 *
 * Payload lines: `S <firstItem> [<writer>]` opens a segment (its items are numbered from there;
 * no writer: the instance id the directory is named after), `I <by> <name>` is one acknowledged
 * increment, `M <seq> <lastItem>` says batch `seq` holds every increment of its writer numbered
 * above the previous batch's lastItem and up to its own. An item frame can come before the
 * marker of a batch that does not hold it (group commit), so batches are found by item number,
 * never by position in the file.
 */
import { readdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { readFrames } from './frames.js';

/** Header item number of a segment that holds only markers (written by replay itself). */
export const MARKERS_ONLY = Number.MAX_SAFE_INTEGER;

const SEGMENT_RE = /^segment-(\d{12})\.log$/;
const LINE_I = 73;
const LINE_M = 77;
const LINE_S = 83;

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

/** Removes every segment in a directory (after a successful replay). */
export async function clearSegments(dir: string): Promise<void> {
  for (const s of await listSegments(dir)) await rm(s.path, { force: true });
}

/** One segment of a run, as the first pass found it. */
interface PlannedSegment {
  readonly path: string;
  readonly firstItem: number;
  /** Item lines in its good frames. */
  readonly items: number;
}

/**
 * A stretch of one writer's log with one item numbering: the markers (seq, lastItem) in file
 * order and the segments. A writer has one run, unless segments of an earlier process with the
 * same writer id survived a failed clear (logs from before writer ids): its numbering restarts.
 */
export interface LogRun {
  readonly writer: string;
  readonly segments: readonly PlannedSegment[];
  readonly seqs: readonly number[];
  readonly lasts: readonly number[];
  /** When each marked batch was cut (ms), from its marker; undefined in older logs. */
  readonly ats: readonly (number | undefined)[];
}

/** The first pass over a directory: everything but the increments themselves. */
export interface LogPlan {
  /** Runs in the order their first segment appears. */
  readonly runs: readonly LogRun[];
  /** Segment files read, oldest first. */
  readonly segments: readonly string[];
  /** Bytes ignored at torn segment tails. */
  readonly tornBytes: number;
  /** Number for the next segment file, above any that exists. */
  readonly nextSegment: number;
}

interface MutableRun {
  readonly writer: string;
  readonly segments: PlannedSegment[];
  readonly seqs: number[];
  readonly lasts: number[];
  readonly ats: (number | undefined)[];
  /** Highest item number or marker lastItem in the run so far. */
  top: number;
}

/**
 * Pass 1: reads every segment in `dir` keeping only markers, headers and item counts. Headers
 * without a writer belong to `defaultWriter`.
 */
export async function planLog(dir: string, defaultWriter: string): Promise<LogPlan> {
  const files = await listSegments(dir);
  const runs: MutableRun[] = [];
  const current = new Map<string, MutableRun>();
  let tornBytes = 0;
  for (const file of files) {
    let header: { firstItem: number; writer: string } | undefined;
    let seen = false;
    let items = 0;
    const seqs: number[] = [];
    const lasts: number[] = [];
    const ats: (number | undefined)[] = [];
    const scanned = await readFrames(file.path, (payload) => {
      let at = 0;
      while (at < payload.length) {
        let nl = payload.indexOf(10, at);
        if (nl < 0) nl = payload.length;
        const kind = payload[at];
        if (kind === LINE_I) items++;
        else if (kind === LINE_M) {
          const [, seq, last, cutAt] = payload.toString('latin1', at, nl).split(' ');
          const s = Number(seq);
          const l = Number(last);
          if (Number.isSafeInteger(s) && Number.isSafeInteger(l)) {
            seqs.push(s);
            lasts.push(l);
            const t = Number(cutAt);
            ats.push(cutAt !== undefined && Number.isSafeInteger(t) ? t : undefined);
          }
        } else if (kind === LINE_S && !seen) header = parseHeader(payload.toString('utf8', at, nl));
        seen = true;
        at = nl + 1;
      }
      return undefined;
    });
    tornBytes += scanned.tornBytes;
    // Nothing readable (a crash while the file was created): nothing to replay.
    if (!seen) continue;
    const writer = header?.writer || defaultWriter;
    const firstItem = header?.firstItem ?? 1;
    let run = current.get(writer);
    // Numbers only grow within a run: a lower start is an earlier process's log ending.
    if (run === undefined || (firstItem !== MARKERS_ONLY && firstItem <= run.top)) {
      run = { writer, segments: [], seqs: [], lasts: [], ats: [], top: 0 };
      runs.push(run);
      current.set(writer, run);
    }
    run.segments.push({ path: file.path, firstItem, items });
    for (let i = 0; i < seqs.length; i++) {
      run.seqs.push(seqs[i] as number);
      run.lasts.push(lasts[i] as number);
      run.ats.push(ats[i]);
      run.top = Math.max(run.top, lasts[i] as number);
    }
    if (items > 0) run.top = Math.max(run.top, firstItem + items - 1);
  }
  return {
    runs,
    segments: files.map((f) => f.path),
    tornBytes,
    nextSegment: (files[files.length - 1]?.n ?? 0) + 1,
  };
}

function parseHeader(line: string): { firstItem: number; writer: string } | undefined {
  const [, first, writer] = line.split(' ');
  const firstItem = Number(first);
  return Number.isSafeInteger(firstItem) ? { firstItem, writer: writer ?? '' } : undefined;
}

/** A batch the log says was cut (marker), or a chunk of the increments after the last cut. */
export interface RecoveredBatch {
  /** The writer id the batch was (or is to be) sent under. */
  readonly writer: string;
  /** The seq the batch was sent with; undefined for increments never cut into a batch. */
  readonly seq: number | undefined;
  readonly deltas: Map<string, number>;
  /** Increments in the batch. */
  readonly items: number;
  /** Highest item number the batch holds (marked: its marker's lastItem). */
  readonly lastItem: number;
  /** When the batch was cut (ms), as its marker says; undefined for the remainder. */
  readonly at: number | undefined;
}

/** What {@link foldRun} does with a run. */
export interface FoldOptions {
  /** Marked batches with a seq up to this one are already applied: skipped, never summed. */
  readonly appliedSeq: number;
  /**
   * Cut the uncut remainder into batches of at most this many distinct counters.
   * @default Infinity
   */
  readonly chunkCounters?: number;
  /** Takes each batch in order; the log is not read on until it resolves. */
  readonly onBatch: (batch: RecoveredBatch) => Promise<void>;
  /** Told the seq of each marked batch skipped. */
  readonly onSkip?: (seq: number) => void;
}

/**
 * Pass 2: streams the run's increments and sums each into the one batch its item number falls
 * in. Items arrive in number order, so only the batch being built is held.
 */
export async function foldRun(run: LogRun, options: FoldOptions): Promise<void> {
  const folder = new Folder(run, options);
  // Segments whose items all belong to skipped batches need not be read at all.
  let skipThrough = 0;
  for (let i = 0; i < run.seqs.length && (run.seqs[i] as number) <= options.appliedSeq; i++) {
    skipThrough = Math.max(skipThrough, run.lasts[i] as number);
  }
  for (const segment of run.segments) {
    if (segment.items === 0 || segment.firstItem + segment.items - 1 <= skipThrough) continue;
    folder.next = segment.firstItem;
    await readFrames(segment.path, folder.payload);
  }
  folder.finish();
  await folder.drain();
}

/** Pass 2's state for one run: the batch being built and the batches ready to hand over. */
class Folder {
  /** Number of the next item line. */
  next = 1;
  private readonly chunkCounters: number;
  /** Index of the marker whose batch is being built; seqs.length: the remainder. */
  private at = -1;
  /** Last item of the batch being built. */
  private limit = 0;
  /** Deltas of the batch being built; null while skipping an applied batch. */
  private deltas: Map<string, Delta> | null = null;
  private items = 0;
  private lastFolded = 0;
  private readonly ready: RecoveredBatch[] = [];

  constructor(
    private readonly run: LogRun,
    private readonly options: FoldOptions,
  ) {
    this.chunkCounters = options.chunkCounters ?? Number.POSITIVE_INFINITY;
    this.enter(0);
  }

  /** A frame's payload: numbers its item lines and sums them. */
  readonly payload = (payload: Buffer): Promise<void> | undefined => {
    const text = payload.toString('utf8');
    const end = text.length;
    let at = 0;
    while (at < end) {
      let nl = text.indexOf('\n', at);
      if (nl < 0) nl = end;
      if (text.charCodeAt(at) === LINE_I) {
        const item = this.next++;
        while (item > this.limit) this.close();
        if (this.deltas !== null) this.fold(text, at, nl, item);
      }
      at = nl + 1;
    }
    return this.ready.length > 0 ? this.drain() : undefined;
  };

  /** Closes every batch still open once the run is read. */
  finish(): void {
    while (this.at < this.run.seqs.length) this.close();
    if (this.items > 0) this.cut();
  }

  async drain(): Promise<void> {
    for (let batch = this.ready.shift(); batch !== undefined; batch = this.ready.shift()) {
      await this.options.onBatch(batch);
    }
  }

  private enter(at: number): void {
    this.at = at;
    this.items = 0;
    if (at < this.run.seqs.length) {
      this.limit = this.run.lasts[at] as number;
      const skipped = (this.run.seqs[at] as number) <= this.options.appliedSeq;
      this.deltas = skipped ? null : new Map();
    } else {
      this.limit = Number.POSITIVE_INFINITY;
      this.deltas = new Map();
    }
  }

  /** Ends the marked batch being built and starts the next one. */
  private close(): void {
    const seq = this.run.seqs[this.at] as number;
    if (this.deltas === null) this.options.onSkip?.(seq);
    else {
      this.ready.push({
        writer: this.run.writer,
        seq,
        deltas: sums(this.deltas),
        items: this.items,
        lastItem: this.limit,
        at: this.run.ats[this.at],
      });
    }
    this.enter(this.at + 1);
  }

  /** Ends a chunk of the remainder. */
  private cut(): void {
    this.ready.push({
      writer: this.run.writer,
      seq: undefined,
      deltas: sums(this.deltas as Map<string, Delta>),
      items: this.items,
      lastItem: this.lastFolded,
      at: undefined,
    });
    this.enter(this.at);
  }

  /** Adds the item line text[at, nl) to the batch being built. */
  private fold(text: string, at: number, nl: number, item: number): void {
    const space = text.indexOf(' ', at + 2);
    if (space < 0 || space >= nl) return;
    let i = at + 2;
    const negative = text.charCodeAt(i) === 45;
    if (negative) i++;
    if (i === space) return;
    let by = 0;
    for (; i < space; i++) {
      const digit = text.charCodeAt(i) - 48;
      if (digit < 0 || digit > 9) return;
      by = by * 10 + digit;
    }
    if (negative) by = -by;
    const name = text.slice(space + 1, nl);
    let deltas = this.deltas as Map<string, Delta>;
    const delta = deltas.get(name);
    // One lookup per increment: the sum lives in a box the map points to.
    if (delta !== undefined) delta.sum += by;
    else {
      if (deltas.size >= this.chunkCounters && this.at === this.run.seqs.length) {
        this.cut();
        deltas = this.deltas as Map<string, Delta>;
      }
      // A copy: a slice would keep the whole frame's text alive as long as the key lives.
      deltas.set(Buffer.from(name, 'utf8').toString('utf8'), { sum: by });
    }
    this.items++;
    this.lastFolded = item;
  }
}

interface Delta {
  sum: number;
}

/** The batch's deltas as the store takes them: counters that summed to zero left out. */
function sums(deltas: Map<string, Delta>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [name, delta] of deltas) if (delta.sum !== 0) out.set(name, delta.sum);
  return out;
}

/** Everything read from a log directory (tests and tools; replay itself streams). */
export interface RecoveredLog {
  /** Each run's batches in log order, then its uncut remainder (if any). */
  readonly batches: RecoveredBatch[];
  /** Segment files read, oldest first. */
  readonly segments: readonly string[];
  /** Bytes ignored at torn segment tails. */
  readonly tornBytes: number;
}

/**
 * Reads a whole log into memory, one entry per batch: for tests and inspection. Replay uses
 * {@link planLog} and {@link foldRun}, which never hold more than one batch.
 */
export async function readLog(dir: string, defaultWriter = basename(dir)): Promise<RecoveredLog> {
  const plan = await planLog(dir, defaultWriter);
  const batches: RecoveredBatch[] = [];
  for (const run of plan.runs) {
    await foldRun(run, {
      appliedSeq: 0,
      onBatch: async (batch) => {
        batches.push(batch);
      },
    });
  }
  return { batches, segments: plan.segments, tornBytes: plan.tornBytes };
}
