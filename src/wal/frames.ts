/** @module wal/frames — the log's on-disk framing: [u32 length][u32 crc32][payload], little-endian. */
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

/** Reads frames until the end or the first frame that is incomplete or fails its checksum. */
export function decodeFrames(data: Buffer): DecodedSegment {
  const payloads: string[] = [];
  let at = 0;
  while (at + HEADER_BYTES <= data.length) {
    const length = data.readUInt32LE(at);
    const sum = data.readUInt32LE(at + 4);
    const end = at + HEADER_BYTES + length;
    if (length > MAX_PAYLOAD_BYTES || end > data.length) break;
    const body = data.subarray(at + HEADER_BYTES, end);
    if (crc32(body) !== sum) break;
    payloads.push(body.toString('utf8'));
    at = end;
  }
  return { payloads, tornBytes: data.length - at };
}
