import { appendFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Batch } from '../../src/store/interface.js';
import { MemoryStore } from '../../src/store/memory/index.js';
import { decodeFrames, encodeFrame, readFrames } from '../../src/wal/frames.js';
import { readLog, segmentName } from '../../src/wal/reader.js';
import { adoptOrphanLogs, recoverLog } from '../../src/wal/replay.js';
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
  it('keeps the time a batch was cut, so a replay adds to the same history buckets', async () => {
    const d = dir();
    const wal = await WriteAheadLog.open({ dir: d, writer: 'i', fsync: 'never' });
    const cut = Date.UTC(2026, 0, 5, 8, 30);
    await wal.append('a', 2);
    await wal.seal(1, 1, cut);
    await wal.append('a', 3); // never cut: replayed now, under the next seq
    const seen: Batch[] = [];
    const store = new MemoryStore();
    const recording = Object.assign(Object.create(store) as MemoryStore, {
      applyBatch: (b: Batch) => {
        seen.push(b);
        return store.applyBatch(b);
      },
    });
    const before = Date.now();
    await recoverLog(d, recording, 'i');
    expect(seen.map((b) => [b.seq, b.at])).toEqual([
      [1, cut],
      [2, expect.any(Number)],
    ]);
    expect(seen[1]?.at).toBeGreaterThanOrEqual(before);
    expect(await store.get('a')).toBe(5);
  });

  it('logs increments and markers, and recovery applies each batch exactly once', async () => {
    const d = dir();
    const wal = await WriteAheadLog.open({ dir: d, writer: 'i', fsync: 'never' });
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
    const wal = await WriteAheadLog.open({ dir: d, writer: 'i', fsync: 'never' });
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
    const wal = await WriteAheadLog.open({ dir: d, writer: 'i', fsync: 'never' });
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
    const wal = await WriteAheadLog.open({
      dir: d,
      writer: 'i',
      fsync: 'never',
      segmentBytes: 4096,
    });
    for (let i = 1; i <= 2000; i++) await wal.append(`name-${i % 50}`, 1);
    expect(wal.stats().segments).toBeGreaterThan(3);
    wal.markDurable(2000);
    // Segments are removed asynchronously; on a loaded machine that takes more than a moment.
    const deadline = Date.now() + 5000;
    while (wal.stats().segments > 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
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
      writer: 'i',
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

  it('takes back a frame whose fdatasync failed (always mode): refused increments are never replayed', async () => {
    const d = dir();
    let syncFails = false;
    const { open } = await import('node:fs/promises');
    const wal = await WriteAheadLog.open({
      dir: d,
      writer: 'i@1',
      fsync: 'always',
      openFile: async (path) => {
        const fh = await open(path, 'a');
        return {
          write: (data: Buffer) => fh.write(data),
          datasync: () => (syncFails ? Promise.reject(new Error('EIO: i/o error')) : fh.datasync()),
          truncate: (size: number) => fh.truncate(size),
          close: () => fh.close(),
        };
      },
    });
    await wal.append('x', 1);
    syncFails = true;
    await expect(wal.append('x', 2)).rejects.toMatchObject({ code: 'LOG_UNAVAILABLE' });
    syncFails = false;
    // Only the first increment was acknowledged: once it is durable the log recovers.
    wal.markDurable(1);
    const deadline = Date.now() + 3000;
    while (wal.problem() !== undefined && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    expect(wal.problem()).toBeUndefined();
    await wal.append('x', 4);
    // A crash now: replay finds exactly the one unflushed, acknowledged increment.
    const store = new MemoryStore();
    await recoverLog(d, store, 'i');
    expect(await store.get('x')).toBe(4);
    await wal.close();
  });

  it('skips stray files and reads segments in order', async () => {
    const d = dir();
    writeFileSync(join(d, 'notes.txt'), 'hello');
    const log = await readLog(d);
    expect(log.batches).toEqual([]);
  });
});

/** Writes segment `n` of `d` as the given frames, one payload each. */
function segment(d: string, n: number, payloads: string[]): string {
  mkdirSync(d, { recursive: true });
  const path = join(d, segmentName(n));
  writeFileSync(path, Buffer.concat(payloads.map((p) => encodeFrame(p))));
  return path;
}

/** `I` lines for a list of [by, name]. */
function items(...list: Array<[number, string]>): string {
  return list.map(([by, name]) => `I ${by} ${name}\n`).join('');
}

/** A store that dies (throws, as a killed process would stop) on the `at`-th applyBatch call. */
function dyingStore(store: MemoryStore, at: number, applyFirst: boolean) {
  const dying = Object.create(store) as MemoryStore;
  const calls: Batch[] = [];
  dying.applyBatch = async (batch) => {
    calls.push(batch);
    if (calls.length === at) {
      if (applyFirst) await store.applyBatch(batch);
      throw new Error('killed');
    }
    return store.applyBatch(batch);
  };
  return { dying, calls };
}

async function values(store: MemoryStore, names: string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const name of names) out[name] = await store.get(name);
  return out;
}

describe('streaming replay', () => {
  it('writes the writer id in every segment header', async () => {
    const d = dir();
    const wal = await WriteAheadLog.open({
      dir: d,
      writer: 'host-1@7',
      fsync: 'never',
      segmentBytes: 30,
    });
    for (let i = 0; i < 3; i++) await wal.append('a', 1); // one segment each, past 30 bytes
    await wal.close();
    const files = readdirSync(d).sort();
    expect(files.length).toBeGreaterThan(1);
    const headers = files.map((f) => decodeFrames(readFileSync(join(d, f))).payloads[0]);
    expect(headers[0]).toBe('S 1 host-1@7\n');
    for (const h of headers) expect(h).toMatch(/^S \d+ host-1@7\n$/);
    const store = new MemoryStore();
    await recoverLog(d, store, 'host-1');
    expect(await store.get('a')).toBe(3);
    expect(await store.lastSeq('host-1@7')).toBe(1);
    expect(await store.lastSeq('host-1')).toBe(0);
  });

  it('puts an item written before a marker that excludes it in the next batch', async () => {
    const d = dir();
    segment(d, 1, [
      'S 1 w@1\n',
      items([1, 'a'], [1, 'a'], [1, 'b']), // items 1-3: batch 1
      items([10, 'a'], [10, 'c']), // items 4-5, written before batch 1's marker
      'M 1 3\n',
      `${items([100, 'c'])}M 2 6\n${items([1000, 'd'])}`, // item 6 ends batch 2; item 7 uncut
      items([5, 'e']), // item 8, also written before batch 3's marker
    ]);
    segment(d, 2, ['S 9 w@1\n', 'M 3 7\n', items([7, 'e'])]); // item 9: uncut
    const log = await readLog(d, 'w');
    expect(
      log.batches.map((b) => [b.writer, b.seq, Object.fromEntries(b.deltas), b.items]),
    ).toEqual([
      ['w@1', 1, { a: 2, b: 1 }, 3],
      ['w@1', 2, { a: 10, c: 110 }, 3],
      ['w@1', 3, { d: 1000 }, 1],
      ['w@1', undefined, { e: 12 }, 2],
    ]);
    // The store had applied batch 1 only; replay sends 2 and 3 under their seqs, then 4.
    const store = new MemoryStore();
    await store.applyBatch({
      instanceId: 'w@1',
      seq: 1,
      deltas: new Map([
        ['a', 2],
        ['b', 1],
      ]),
    });
    const result = await recoverLog(d, store, 'w');
    expect(result).toMatchObject({ applied: 3, skipped: 1, increments: 6, writers: ['w@1'] });
    expect(await values(store, ['a', 'b', 'c', 'd', 'e'])).toEqual({
      a: 12,
      b: 1,
      c: 110,
      d: 1000,
      e: 12,
    });
    expect(await store.lastSeq('w@1')).toBe(4);
    expect(readdirSync(d)).toEqual([]);
  });

  it('cuts the remainder into chunks of bounded counters, each marked before it is sent', async () => {
    const d = dir();
    const wal = await WriteAheadLog.open({ dir: d, writer: 'c@1', fsync: 'never' });
    const names = Array.from({ length: 10 }, (_, i) => `n${i}`);
    for (const name of names) {
      for (let round = 1; round <= 3; round++) await wal.append(name, round);
    }
    await wal.seal(1, 5); // batch 1: n0 three times and n1 twice, never applied
    const store = new MemoryStore();
    const { dying, calls } = dyingStore(store, 0, false);
    const result = await recoverLog(d, dying, 'c', { chunkCounters: 3 });
    // Batch 1, then 25 uncut items over 9 counters (n1..n9) in chunks of at most 3 counters.
    expect(calls.map((b) => b.seq)).toEqual([1, 2, 3, 4]);
    expect(calls.map((b) => [...b.deltas.keys()])).toEqual([
      ['n0', 'n1'],
      ['n1', 'n2', 'n3'],
      ['n4', 'n5', 'n6'],
      ['n7', 'n8', 'n9'],
    ]);
    expect(result).toMatchObject({ applied: 4, skipped: 0, increments: 30 });
    for (const name of names) expect(await store.get(name)).toBe(6);
  });

  it('a crash at any point of a chunked replay applies every increment exactly once', async () => {
    const names = Array.from({ length: 10 }, (_, i) => `k${i}`);
    for (let at = 1; at <= 6; at++) {
      for (const applyFirst of [false, true]) {
        const d = dir();
        const wal = await WriteAheadLog.open({ dir: d, writer: 'k@1', fsync: 'never' });
        for (let round = 1; round <= 3; round++) {
          for (const name of names) await wal.append(name, round);
        }
        await wal.seal(1, 12);
        const store = new MemoryStore();
        // Dies on the at-th apply (before or after the store took it), twice in a row.
        const first = dyingStore(store, at, applyFirst);
        await expect(recoverLog(d, first.dying, 'k', { chunkCounters: 4 })).rejects.toThrow();
        const second = dyingStore(store, 2, applyFirst);
        await recoverLog(d, second.dying, 'k', { chunkCounters: 4 }).catch(() => undefined);
        await recoverLog(d, store, 'k', { chunkCounters: 4 });
        for (const name of names) expect(await store.get(name), `${at} ${applyFirst}`).toBe(6);
        expect(readdirSync(d)).toEqual([]);
      }
    }
  });

  it('replays segments of two writers in one directory, each with its own items and seqs', async () => {
    const d = dir();
    const old = await WriteAheadLog.open({ dir: d, writer: 'x@1', fsync: 'never' });
    await old.append('p', 1); // x@1 item 1
    await old.append('q', 2); // x@1 item 2
    await old.seal(1, 1);
    await old.seal(2, 2);
    await old.append('p', 4); // x@1 item 3, uncut
    const next = await WriteAheadLog.open({
      dir: d,
      writer: 'x@2',
      fsync: 'never',
      firstSegment: 5,
    });
    await next.append('p', 100); // x@2 item 1
    await next.seal(1, 1);
    await next.append('q', 200); // x@2 item 2, uncut
    const store = new MemoryStore();
    await store.applyBatch({ instanceId: 'x@1', seq: 1, deltas: new Map([['p', 1]]) });
    // A crash after the first writer's remainder went out.
    const { dying } = dyingStore(store, 2, true);
    await expect(recoverLog(d, dying, 'x')).rejects.toThrow('killed');
    const result = await recoverLog(d, store, 'x');
    expect(result.writers).toEqual(['x@1', 'x@2']);
    expect(await values(store, ['p', 'q'])).toEqual({ p: 105, q: 202 });
    expect(await store.lastSeq('x@1')).toBe(3);
    expect(await store.lastSeq('x@2')).toBe(2);
    expect(await store.lastSeq('x')).toBe(0);
  });

  it('replays a header without a writer under the directory instance id', async () => {
    const d = dir();
    segment(d, 3, ['S 1\n', items([2, 'old'], [3, 'old']), 'M 5 1\n', items([4, 'old'])]);
    const store = new MemoryStore();
    const result = await recoverLog(d, store, 'legacy-id');
    expect(result).toMatchObject({ writers: ['legacy-id'], applied: 2, nextSegment: 5 });
    expect(await store.get('old')).toBe(9);
    expect(await store.lastSeq('legacy-id')).toBe(6);
  });

  it('keeps runs apart when an earlier process of the same id left marked segments', async () => {
    const d = dir();
    // A process before writer ids: batch 1, its remainder cut by replay as batch 2 (applied).
    segment(d, 2, ['S 1\n', items([1, 'r'], [1, 'r']), 'M 1 1\n']);
    segment(d, 3, [`S ${Number.MAX_SAFE_INTEGER}\n`, `M 2 ${Number.MAX_SAFE_INTEGER}\n`]);
    // The next process's log, numbered from 1 again; its batch 3 was not applied.
    segment(d, 4, ['S 1\n', items([10, 'r'], [10, 's']), 'M 3 1\n', items([100, 's'])]);
    const store = new MemoryStore();
    await store.applyBatch({ instanceId: 'id', seq: 1, deltas: new Map([['r', 1]]) });
    await store.applyBatch({ instanceId: 'id', seq: 2, deltas: new Map([['r', 1]]) });
    const result = await recoverLog(d, store, 'id');
    expect(result).toMatchObject({ skipped: 2, applied: 2, increments: 3 });
    expect(await values(store, ['r', 's'])).toEqual({ r: 12, s: 110 });
    expect(await store.lastSeq('id')).toBe(4);
  });

  it('ends a segment at a torn or corrupt frame, also in the middle of the log', async () => {
    const d = dir();
    const first = segment(d, 1, ['S 1 t@1\n', items([1, 't'], [1, 't']), 'M 1 2\n']);
    const lost = encodeFrame(items([1000, 't']));
    appendFileSync(first, lost.subarray(0, lost.length - 1)); // power loss: a torn frame
    // The next segment got to disk; its first frame is corrupt, so nothing in it counts.
    const bad = encodeFrame(items([500, 't']));
    bad[bad.length - 2] = (bad[bad.length - 2] ?? 0) ^ 0xff;
    const second = segment(d, 2, ['S 4 t@1\n']);
    appendFileSync(second, Buffer.concat([bad, encodeFrame(items([7, 't']))]));
    segment(d, 3, ['S 6 t@1\n', items([3, 't'])]);
    const store = new MemoryStore();
    const result = await recoverLog(d, store, 't');
    expect(result.tornBytes).toBe(
      lost.length - 1 + bad.length + encodeFrame(items([7, 't'])).length,
    );
    expect(await store.get('t')).toBe(5);
    expect(await store.lastSeq('t@1')).toBe(2);
  });

  it('streams frames across read chunks exactly as decodeFrames reads the whole file', async () => {
    const d = dir();
    let seed = 7;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    for (let trial = 0; trial < 40; trial++) {
      const frames = Array.from({ length: 1 + Math.floor(rand() * 20) }, (_, i) =>
        encodeFrame(`I ${i} ${'x'.repeat(Math.floor(rand() * 300))}\n`),
      );
      let data = Buffer.concat(frames);
      if (trial % 3 === 1) data = data.subarray(0, Math.floor(rand() * data.length));
      if (trial % 3 === 2 && data.length > 0) {
        data = Buffer.from(data);
        const at = Math.floor(rand() * data.length);
        data[at] = (data[at] ?? 0) ^ 0x5a;
      }
      const path = join(d, `trial-${trial}`);
      writeFileSync(path, data);
      const whole = decodeFrames(data);
      for (const chunk of [1, 7, 64, 1 << 20]) {
        const payloads: string[] = [];
        const scanned = await readFrames(
          path,
          (p) => {
            payloads.push(p.toString('utf8'));
            return undefined;
          },
          chunk,
        );
        expect(payloads, `trial ${trial} chunk ${chunk}`).toEqual(whole.payloads);
        expect(scanned.tornBytes).toBe(whole.tornBytes);
      }
    }
  });

  it('adopts leftover directories, each replayed under the writers its headers name', async () => {
    const root = dir();
    segment(join(root, 'gone-w2'), 1, ['S 1 gone-w2@3\n', items([5, 'z'])]);
    mkdirSync(join(root, 'live'));
    const store = new MemoryStore();
    const adopted = await adoptOrphanLogs(root, store, new Set(['live']));
    expect(adopted.map((a) => [a.instanceId, a.writers])).toEqual([['gone-w2', ['gone-w2@3']]]);
    expect(await store.get('z')).toBe(5);
    expect(readdirSync(root)).toEqual(['live']);
  });
});
