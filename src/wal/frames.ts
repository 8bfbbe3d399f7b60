/** @module wal/frames — the log's on-disk framing: [u32 length][u32 crc32][payload], little-endian. */
import { open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';

const HEADER_BYTES = 8;
/** Largest payload a reader accepts; a longer length field can only be corruption. */
const MAX_PAYLOAD_BYTES = 256 * 1024 * 1024;

/** Frames one payload. One frame is one group commit: it is written whole or not at all. */
export function encodeFrame(payload: string): Buffer {
  const body = Buffer.from(payload, 'utf8');
  const frame = Buffer.allocUnsafe(HEADER_BYTES + body.length);
  frame.writeUInt32LE(body.length, 0);
  frame.writeUInt32LE(crc32(body), 4);
  body.copy(frame, HEADER_BYTES);
  return frame;
}

/** What reading one segment found. */
export interface DecodedSegment {
  readonly payloads: string[];
  /** Bytes after the last good frame: a torn or corrupt tail (crash mid-write), ignored. */
  readonly tornBytes: number;
}

/**
 * Checks the frame at `at` of `data`, whose byte 0 is at file offset `base` in a file of
 * `fileBytes`. Returns the frame's end offset in `data`, `-1` when `data` ends inside a frame
 * that the file still holds (read more), or `-2` when the log ends here: the frame is torn
 * (runs past the end of the file), fails its checksum, or has an impossible length.
 */
function frameEnd(data: Buffer, at: number, base: number, fileBytes: number): number {
  if (data.length - at < HEADER_BYTES) return base + at + HEADER_BYTES > fileBytes ? -2 : -1;
  const length = data.readUInt32LE(at);
  const end = at + HEADER_BYTES + length;
  if (length > MAX_PAYLOAD_BYTES || base + end > fileBytes) return -2;
  if (end > data.length) return -1;
  return crc32(data.subarray(at + HEADER_BYTES, end)) === data.readUInt32LE(at + 4) ? end : -2;
}

/** Reads frames until the end or the first frame that is incomplete or fails its checksum. */
export function decodeFrames(data: Buffer): DecodedSegment {
  const payloads: string[] = [];
  let at = 0;
  for (;;) {
    const end = frameEnd(data, at, 0, data.length);
    if (end < 0) break;
    payloads.push(data.toString('utf8', at + HEADER_BYTES, end));
    at = end;
  }
  return { payloads, tornBytes: data.length - at };
}

/**
 * Called with each good payload, in order. The buffer is only valid during the call (it is
 * reused for the next read). Return a promise to hold the reader until it settles.
 */
export type PayloadHandler = (payload: Buffer) => Promise<void> | undefined;

/** What streaming one segment found. */
export interface ScannedSegment {
  /** Bytes of good frames. */
  readonly bytes: number;
  /** Bytes after the last good frame: a torn or corrupt tail (crash mid-write), ignored. */
  readonly tornBytes: number;
}

/** Bytes read from a segment at a time by {@link readFrames}. @default 2 MiB */
export const READ_CHUNK_BYTES = 2 * 1024 * 1024;

/**
 * Streams the frames of one segment file to `onPayload`, reading `chunkBytes` at a time, so
 * memory stays at one chunk (or one frame, if a frame is larger) whatever the file's size. Ends,
 * like {@link decodeFrames}, at the end of the file or at the first torn or corrupt frame.
 */
export async function readFrames(
  path: string,
  onPayload: PayloadHandler,
  chunkBytes = READ_CHUNK_BYTES,
): Promise<ScannedSegment> {
  const handle = await open(path, 'r');
  try {
    const fileBytes = (await handle.stat()).size;
    let buffer = Buffer.allocUnsafe(Math.max(HEADER_BYTES, Math.min(chunkBytes, fileBytes)));
    // buffer[0, filled) holds file bytes [base, base + filled); frames before `at` are done.
    let base = 0;
    let filled = 0;
    let at = 0;
    for (;;) {
      const view = buffer.subarray(0, filled);
      let end = frameEnd(view, at, base, fileBytes);
      while (end >= 0) {
        const pending = onPayload(view.subarray(at + HEADER_BYTES, end));
        if (pending !== undefined) await pending;
        at = end;
        end = frameEnd(view, at, base, fileBytes);
      }
      if (end === -2 || base + filled >= fileBytes)
        return { bytes: base + at, tornBytes: fileBytes - base - at };
      // Keep the unfinished frame, and make room for all of it when it is larger than a chunk.
      const rest = filled - at;
      const need = rest >= HEADER_BYTES ? HEADER_BYTES + view.readUInt32LE(at) : HEADER_BYTES;
      if (need > buffer.length) {
        const bigger = Buffer.allocUnsafe(Math.max(need, chunkBytes));
        buffer.copy(bigger, 0, at, filled);
        buffer = bigger;
      } else buffer.copyWithin(0, at, filled);
      base += at;
      filled = rest;
      at = 0;
      const { bytesRead } = await handle.read(
        buffer,
        filled,
        buffer.length - filled,
        base + filled,
      );
      // The file shrank under us: what was read so far is all there is.
      if (bytesRead === 0) return { bytes: base, tornBytes: filled };
      filled += bytesRead;
    }
  } finally {
    await handle.close();
  }
}
