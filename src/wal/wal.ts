/**
 * @module wal/wal — the write-ahead log: every increment is in the log before it is acknowledged.
 *
 * Appends are group-committed: everything appended in one event-loop turn (or while a write is
 * in flight) goes out as one frame, so a request costs a string append and one await, and the
 * process makes one write(2) per turn, not one per request.
 */
import { writeSync } from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { TallyError } from '../errors.js';
import { encodeFrame } from './frames.js';
import { segmentName } from './reader.js';

/** When the log calls fdatasync. */
export type WalFsync = 'always' | 'interval' | 'never';

/** The file operations the log uses; tests substitute failing ones. */
export interface WalFile {
  write(data: Buffer): Promise<unknown>;
  datasync(): Promise<void>;
  /** Cuts the file to `size` bytes (takes back a frame whose sync failed). */
  truncate?(size: number): Promise<void>;
  close(): Promise<void>;
}

/** Options for {@link WriteAheadLog.open}. */
export interface WalOptions {
  /** Directory of this instance's segments. */
  readonly dir: string;
  /**
   * Id the batches in this log are sent under (`<instanceId>@<epoch>`), written in every
   * segment header so replay sends them under it too. No whitespace.
   */
  readonly writer: string;
  /**
   * always: acknowledge after fdatasync (survives power loss); interval: acknowledge after the
   * write reaches the OS, fdatasync every `syncIntervalMs` (survives kill -9); never: no fdatasync.
   * @default 'interval'
   */
  readonly fsync?: WalFsync;
  /** interval mode: ms between fdatasync calls. @default 10 */
  readonly syncIntervalMs?: number;
  /** Start a new segment once the current one passes this size, bytes. @default 67108864 */
  readonly segmentBytes?: number;
  /** Opens a segment for appending. @default {@link openSegment} */
  readonly openFile?: (path: string) => Promise<WalFile>;
  /** Number of the first segment to create (above any left on disk). @default 1 */
  readonly firstSegment?: number;
}

interface Segment {
  readonly n: number;
  readonly path: string;
  /** Highest item number written to this segment (0 = none yet). */
  lastItem: number;
}

/**
 * What one event-loop turn appended: one write, and one promise that every append of the turn
 * shares (a promise per append was a measurable share of the increment route, docs/benchmarks.md).
 */
class Group {
  lines = '';
  items = 0;
  appends = 0;
  readonly done: Promise<void>;
  resolve!: () => void;
  reject!: (err: unknown) => void;

  constructor() {
    this.done = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }
}

/** How often a broken log checks whether it can start again, in ms. */
const RECOVER_EVERY_MS = 1000;

/**
 * Item numbers are assigned when a frame is written, in order, so they equal the aggregator's
 * tickets (an increment enters the aggregator only after its frame is written). A batch marker
 * `M <seq> <lastTicket>` is written before the batch is sent to the store.
 */
export class WriteAheadLog {
  private readonly dir: string;
  private readonly writer: string;
  private readonly fsync: WalFsync;
  private readonly segmentBytes: number;
  private readonly openFile: (path: string) => Promise<WalFile>;
  private readonly segments: Segment[] = [];
  private file: WalFile | null = null;
  private segmentSize = 0;
  private nextSegment: number;
  /** Items written so far (the last item's number). */
  private written = 0;
  private durable = 0;
  private group = new Group();
  private writing = false;
  private dirty = false;
  private broken: Error | null = null;
  /** A batch was cut while the log was broken: its marker is missing from disk. */
  private unmarked = false;
  private syncTimer: NodeJS.Timeout | null = null;
  private recoverTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** A recovery attempt is running (the timer must not start a second one meanwhile). */
  private recovering = false;
  /** A pump is scheduled for the end of this event-loop turn. */
  private scheduled = false;

  private constructor(options: WalOptions) {
    this.dir = options.dir;
    this.writer = options.writer;
    if (!/^\S+$/.test(this.writer)) throw new Error(`invalid log writer id: "${this.writer}"`);
    this.fsync = options.fsync ?? 'interval';
    this.segmentBytes = options.segmentBytes ?? 64 * 1024 * 1024;
    this.openFile = options.openFile ?? openSegment;
    this.nextSegment = options.firstSegment ?? 1;
    if (this.fsync === 'interval') {
      this.syncTimer = setInterval(() => void this.syncNow(), options.syncIntervalMs ?? 10);
      this.syncTimer.unref();
    }
  }

  /** Opens a fresh log in `dir`. Old segments must have been replayed and removed first. */
  static async open(options: WalOptions): Promise<WriteAheadLog> {
    await mkdir(options.dir, { recursive: true });
    const wal = new WriteAheadLog(options);
    await wal.startSegment();
    return wal;
  }

  /** Why increments are refused, or undefined when the log is writable. */
  problem(): string | undefined {
    return this.broken === null ? undefined : `write-ahead log unavailable: ${this.broken.message}`;
  }

  /** Logs one increment; resolves once it is written (and synced, in `always` mode). */
  append(name: string, by: number): Promise<void> {
    return this.enqueue(`I ${by} ${name}\n`, 1);
  }

  /** Logs several increments as one unit. */
  appendMany(items: ReadonlyArray<{ name: string; by: number }>): Promise<void> {
    let lines = '';
    for (const { name, by } of items) lines += `I ${by} ${name}\n`;
    return this.enqueue(lines, items.length);
  }

  /**
   * Records that batch `seq` holds every increment up to item `lastItem`; resolves once written.
   * While the log is broken this resolves at once: the batch goes out unmarked, and the log
   * is cleared as soon as the store holds everything (see `markDurable`).
   */
  async seal(seq: number, lastItem: number, at = Date.now()): Promise<void> {
    if (this.broken !== null) {
      this.unmarked = true;
      return;
    }
    try {
      await this.enqueue(`M ${seq} ${lastItem} ${at}\n`, 0);
      // The store may apply the batch right after this; in interval mode the marker is synced
      // first, or a power loss could keep the batch in the store and lose its marker, and replay
      // would apply it again. One fdatasync per flush, off the event loop.
      if (this.fsync === 'interval' && this.file !== null) {
        this.dirty = false;
        await this.file.datasync().catch((err: unknown) => {
          this.fail(err as Error);
          throw err;
        });
      }
    } catch {
      this.unmarked = true;
    }
  }

  /** The store holds every item up to `ticket`: drop segments that hold nothing else. */
  markDurable(ticket: number): void {
    if (ticket > this.durable) this.durable = ticket;
    if (this.broken === null) void this.dropCovered();
    // Right after an unmarked batch lands, clear the log at once: until then a crash would
    // replay those increments a second time (docs/reliability.md).
    else void this.tryRecover();
  }

  /** Writes what is queued, syncs and closes; removes the segments when everything is durable. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.syncTimer !== null) clearInterval(this.syncTimer);
    if (this.recoverTimer !== null) clearInterval(this.recoverTimer);
    while (this.writing || this.group.appends > 0) await this.pump();
    const file = this.file;
    this.file = null;
    if (file !== null) {
      await file.datasync().catch(() => undefined);
      await file.close().catch(() => undefined);
    }
    if (this.durable >= this.written) {
      for (const s of this.segments.splice(0)) await rm(s.path, { force: true });
    }
  }

  private enqueue(lines: string, items: number): Promise<void> {
    if (this.broken !== null || this.closed) {
      return Promise.reject(
        new TallyError('LOG_UNAVAILABLE', undefined, { cause: this.broken, retryAfterS: 5 }),
      );
    }
    const group = this.group;
    group.lines += lines;
    group.items += items;
    group.appends++;
    if (!this.writing && !this.scheduled) {
      // One write per event-loop turn: every increment that arrived in this turn's I/O
      // shares it, and their answers leave together.
      this.scheduled = true;
      setImmediate(this.pumpSoon);
    }
    return group.done;
  }

  private readonly pumpSoon = (): void => {
    this.scheduled = false;
    void this.pump();
  };

  private async pump(): Promise<void> {
    if (this.writing) return;
    this.writing = true;
    try {
      while (this.group.appends > 0) {
        const g = this.group;
        this.group = new Group();
        await this.writeGroup(g);
      }
    } finally {
      this.writing = false;
    }
  }

  private async writeGroup(g: Group): Promise<void> {
    try {
      if (this.broken !== null || this.file === null) throw this.broken ?? new Error('log closed');
      if (this.segmentSize >= this.segmentBytes) await this.startSegment();
      const frame = encodeFrame(g.lines);
      const file = this.file as WalFile;
      const before = this.segmentSize;
      await file.write(frame);
      this.segmentSize += frame.length;
      this.written += g.items;
      const current = this.segments[this.segments.length - 1];
      if (current !== undefined) current.lastItem = this.written;
      if (this.fsync === 'always') {
        try {
          await file.datasync();
        } catch (err) {
          // These increments are refused, so they must not stay in the log: replay would count
          // them, and item numbers would run ahead of the aggregator's tickets for good.
          await this.unwrite(file, before, g.items);
          throw err;
        }
      } else this.dirty = true;
      g.resolve();
    } catch (err) {
      this.fail(err as Error);
      g.reject(new TallyError('LOG_UNAVAILABLE', undefined, { cause: err, retryAfterS: 5 }));
    }
  }

  /**
   * Takes the last frame back after its sync failed: truncates the segment to where the frame
   * began and rolls the numbering back. If even that fails, the frame stays (as it would after a
   * crash) and the log stays broken until a restart replays it.
   */
  private async unwrite(file: WalFile, size: number, items: number): Promise<void> {
    if (file.truncate === undefined) return;
    try {
      await file.truncate(size);
    } catch {
      return;
    }
    this.segmentSize = size;
    this.written -= items;
    const current = this.segments[this.segments.length - 1];
    if (current !== undefined) current.lastItem = this.written;
  }

  private async startSegment(): Promise<void> {
    const previous = this.file;
    const n = this.nextSegment++;
    const path = join(this.dir, segmentName(n));
    const file = await this.openFile(path);
    // The header numbers this segment's items, so older segments can be deleted independently,
    // and names the writer whose seqs its markers count.
    const header = encodeFrame(`S ${this.written + 1} ${this.writer}\n`);
    try {
      await file.write(header);
    } catch (err) {
      await file.close().catch(() => undefined);
      throw err;
    }
    this.file = file;
    this.segmentSize = header.length;
    this.segments.push({ n, path, lastItem: this.written });
    if (previous !== null) {
      await previous.datasync().catch(() => undefined);
      await previous.close().catch(() => undefined);
    }
  }

  private async dropCovered(): Promise<void> {
    // Never the live segment; older ones once every item in them is in the store.
    while (this.segments.length > 1) {
      const oldest = this.segments[0] as Segment;
      if (oldest.lastItem > this.durable) return;
      this.segments.shift();
      await rm(oldest.path, { force: true }).catch(() => undefined);
    }
  }

  private async syncNow(): Promise<void> {
    if (!this.dirty || this.file === null || this.broken !== null) return;
    this.dirty = false;
    try {
      await this.file.datasync();
    } catch (err) {
      this.fail(err as Error);
    }
  }

  /**
   * After a write error the current segment may end in a torn frame, so it is never appended to
   * again. Increments are refused until the store holds every acknowledged one; then all
   * segments are removed (nothing in them is needed) and a new segment is tried.
   */
  private fail(err: Error): void {
    if (this.broken !== null) return;
    this.broken = err;
    const file = this.file;
    this.file = null;
    void file?.close().catch(() => undefined);
    this.recoverTimer = setInterval(() => void this.tryRecover(), RECOVER_EVERY_MS);
    this.recoverTimer.unref();
  }

  private async tryRecover(): Promise<void> {
    if (this.closed || this.broken === null || this.durable < this.written || this.writing) return;
    if (this.recovering) return;
    this.recovering = true;
    try {
      for (const s of this.segments.splice(0)) await rm(s.path, { force: true });
      await this.startSegment();
      this.broken = null;
      this.unmarked = false;
      if (this.recoverTimer !== null) clearInterval(this.recoverTimer);
      this.recoverTimer = null;
    } catch (err) {
      this.broken = err as Error;
    } finally {
      this.recovering = false;
    }
  }

  /** Test and metrics view. */
  stats(): {
    written: number;
    durable: number;
    segments: number;
    broken: boolean;
    unmarked: boolean;
  } {
    return {
      written: this.written,
      durable: this.durable,
      segments: this.segments.length,
      broken: this.broken !== null,
      unmarked: this.unmarked,
    };
  }
}

/**
 * Opens a segment for appending. Appends are synchronous `write(2)`s to the page cache (a few
 * µs, one per event-loop turn): cheaper on the event loop than a thread-pool round trip per
 * write. fdatasync stays asynchronous.
 */
export async function openSegment(path: string): Promise<WalFile> {
  const handle = await open(path, 'a');
  return {
    write(data: Buffer): Promise<unknown> {
      try {
        let done = 0;
        while (done < data.length) done += writeSync(handle.fd, data, done);
        return Promise.resolve();
      } catch (err) {
        return Promise.reject(err);
      }
    },
    datasync: () => handle.datasync(),
    truncate: (size) => handle.truncate(size),
    close: () => handle.close(),
  };
}
