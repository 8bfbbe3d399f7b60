import { appendFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../src/store/memory.js';
import { decodeFrames, encodeFrame } from '../../src/wal/frames.js';
import { recoverLog } from '../../src/wal/recover.js';
import { readLog } from '../../src/wal/replay.js';
import { WriteAheadLog } from '../../src/wal/wal.js';
import { tempDir } from '../helpers/tmp.js';

const dirs: Array<{ remove(): void }> = [];
afterEach(() => {
  for (const d of dirs.splice(0)) d.remove();
});
function dir() {
  const d = tempDir('tally-wal');
  dirs.push(d);
  return d.path;
}

describe('frames', () => {
  it('round-trips and stops at a torn or corrupt tail', () => {
    const a = encodeFrame('I 1 a\n');
    const b = encodeFrame('I 2 b\n');
    const whole = Buffer.concat([a, b]);
    expect(decodeFrames(whole)).toEqual({ payloads: ['I 1 a\n', 'I 2 b\n'], tornBytes: 0 });
    const torn = whole.subarray(0, whole.length - 3);
    expect(decodeFrames(torn)).toEqual({ payloads: ['I 1 a\n'], tornBytes: b.length - 3 });
    const corrupt = Buffer.from(whole);
    corrupt[corrupt.length - 2] = (corrupt[corrupt.length - 2] ?? 0) ^ 0xff;
    expect(decodeFrames(corrupt).payloads).toEqual(['I 1 a\n']);
    // A length field pointing past the end is a torn header, never read as data.
    const lying = Buffer.concat([a, Buffer.from([0xff, 0xff, 0xff, 0x0f, 1, 2, 3, 4, 5])]);
    expect(decodeFrames(lying).payloads).toEqual(['I 1 a\n']);
  });
});

describe('write-ahead log', () => {
  it('logs increments and markers, and recovery applies each batch exactly once', async () => {
    const d = dir();
    const wal = await WriteAheadLog.open({ dir: d, fsync: 'never' });
    await wal.append('a', 1); // item 1
    await wal.appendMany([
      { name: 'a', by: 2 },
      { name: 'b', by: 5 },
    ]); // items 2, 3
    await wal.seal(1, 3); // batch 1 = items 1..3
    await wal.append('a', 10); // item 4
    await wal.seal(2, 4); // batch 2 = item 4
    await wal.append('c', 7); // item 5, never cut into a batch
    // Process "crashes" here: no close. The store had applied batch 1 only.
    const store = new MemoryStore();
    await store.applyBatch({
      instanceId: 'i',
      seq: 1,
      deltas: new Map([
        ['a', 3],
        ['b', 5],
      ]),
    });

    const log = await readLog(d);
    expect(log.batches.map((b) => [b.seq, Object.fromEntries(b.deltas)])).toEqual([
      [1, { a: 3, b: 5 }],
      [2, { a: 10 }],
      [undefined, { c: 7 }],
    ]);
    const result = await recoverLog(d, store, 'i');
    expect(result).toMatchObject({ applied: 2, skipped: 1, increments: 2, tornBytes: 0 });
    expect(await store.get('a')).toBe(13);
    expect(await store.get('b')).toBe(5);
    expect(await store.get('c')).toBe(7);
    expect(await store.lastSeq('i')).toBe(3);
    expect(readdirSync(d)).toEqual([]);
    // Nothing left: a second recovery changes nothing.
    await recoverLog(d, store, 'i');
    expect(await store.get('a')).toBe(13);
  });

  it('ignores a torn last frame (crash mid-write)', async () => {
    const d = dir();
    const wal = await WriteAheadLog.open({ dir: d, fsync: 'never' });
    await wal.append('t', 1);
    await wal.append('t', 1);
    const [segment] = readdirSync(d);
    const frame = encodeFrame('I 1000 t\n');
    appendFileSync(join(d, segment as string), frame.subarray(0, frame.length - 4));
    const store = new MemoryStore();
    const result = await recoverLog(d, store, 'i');
    expect(result.tornBytes).toBe(frame.length - 4);
    expect(await store.get('t')).toBe(2);
  });

  it('a crash during replay does not apply the uncut remainder twice', async () => {
    const d = dir();
    const wal = await WriteAheadLog.open({ dir: d, fsync: 'never' });
    await wal.append('r', 4);
    const store = new MemoryStore();
    // First replay dies right after applying (the store answers, then the process is gone).
    const dying = Object.create(store) as MemoryStore;
    let applied = false;
    dying.applyBatch = async (batch) => {
      await store.applyBatch(batch);
      applied = true;
      throw new Error('killed');
    };
    await expect(recoverLog(d, dying, 'i')).rejects.toThrow('killed');
    expect(applied).toBe(true);
    await recoverLog(d, store, 'i');
    expect(await store.get('r')).toBe(4);
  });

  it('drops segments once the store holds everything in them', async () => {
    const d = dir();
    const wal = await WriteAheadLog.open({ dir: d, fsync: 'never', segmentBytes: 4096 });
    for (let i = 1; i <= 2000; i++) await wal.append(`name-${i % 50}`, 1);
    expect(wal.stats().segments).toBeGreaterThan(3);
    wal.markDurable(2000);
    await new Promise((r) => setTimeout(r, 50));
    expect(wal.stats().segments).toBe(1);
    await wal.close();
    expect(readdirSync(d)).toEqual([]);
  });

  it('refuses appends after a write error and recovers once everything is durable', async () => {
    const d = dir();
    let failing = false;
    const { open } = await import('node:fs/promises');
    const wal = await WriteAheadLog.open({
      dir: d,
      fsync: 'never',
      openFile: async (path) => {
        const fh = await open(path, 'a');
        return {
          write: (data: Buffer) =>
            failing
              ? Promise.reject(
                  Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }),
                )
              : fh.write(data),
          datasync: () => fh.datasync(),
          close: () => fh.close(),
        };
      },
    });
    await wal.append('x', 1);
    failing = true;
    await expect(wal.append('x', 1)).rejects.toMatchObject({ code: 'LOG_UNAVAILABLE' });
    await expect(wal.append('x', 1)).rejects.toMatchObject({ code: 'LOG_UNAVAILABLE' });
    expect(wal.problem()).toContain('ENOSPC');
    failing = false;
    wal.markDurable(1);
    const deadline = Date.now() + 3000;
    while (wal.problem() !== undefined && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    expect(wal.problem()).toBeUndefined();
    await wal.append('x', 1);
    await wal.close();
  });

  it('skips stray files and reads segments in order', async () => {
    const d = dir();
    writeFileSync(join(d, 'notes.txt'), 'hello');
    const log = await readLog(d);
    expect(log.batches).toEqual([]);
  });
});
