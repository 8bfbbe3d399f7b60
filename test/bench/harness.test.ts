// The bench's own machinery: exact request counts, paired ratios, miscount detection, the chart
// and profile renderers, and one real end-to-end run of a bench section.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderChart } from '../../bench/chart.js';
import { compare, median, runSlice, type Target } from '../../bench/lib/load.js';
import { check, type Results } from '../../bench/lib/results.js';
import { type CpuProfile, flameGraph, summarize } from '../../bench/profile.js';
import { ROOT } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

/** A server that counts what it served, answering 202 (or 503 for every `failEvery`-th). */
let served = 0;
let failEvery = 0;
let server: Server;
let url = '';

beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      served++;
      const fail = failEvery > 0 && served % failEvery === 0;
      res.writeHead(fail ? 503 : 202, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

function target(id: string, connections = 16): Target {
  return {
    id,
    label: id,
    url,
    connections,
    processes: { server: process.pid },
    requests: [{ method: 'POST', path: `/${id}`, body: '{}' }],
  };
}

describe('bench load', () => {
  it('a slice of N requests gets exactly N answers and nothing stays in flight', async () => {
    served = 0;
    failEvery = 0;
    const slice = await runSlice(target('exact', 32), 3001);
    expect(slice.ok).toBe(3001);
    expect(served).toBe(3001);
    expect(slice.errors).toBe(0);
    expect(slice.cut).toBe(false);
    expect(slice.cpuSeconds.generator).toBeGreaterThan(0);
  });

  it('counts non-2xx answers apart from acknowledged ones', async () => {
    served = 0;
    failEvery = 10;
    const slice = await runSlice(target('failing'), 1000);
    failEvery = 0;
    expect(slice.ok + slice.non2xx).toBe(1000);
    expect(slice.non2xx).toBe(100);
  });

  it('compare runs every target each round and acknowledges every served request', async () => {
    served = 0;
    const meters = await compare([target('a'), target('b')], {
      secondsPerTarget: 0.4,
      rounds: 4,
      warmupSeconds: 0.1,
    });
    const a = meters.get('a');
    const b = meters.get('b');
    expect(a?.roundRates.filter((r) => r > 0)).toHaveLength(4);
    expect(b?.roundRates.filter((r) => r > 0)).toHaveLength(4);
    expect((a?.acknowledged ?? 0) + (b?.acknowledged ?? 0)).toBe(served);
    // Same server, same route: the paired ratio is near 1.
    expect(a?.ratioTo(b as NonNullable<typeof b>)).toBeGreaterThan(0.4);
    expect(a?.ratioTo(b as NonNullable<typeof b>)).toBeLessThan(2.5);
    expect(a?.percentile(0.99)).toBeGreaterThanOrEqual(a?.percentile(0.5) ?? 0);
  });

  it('median ignores non-finite values', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, Number.NaN, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it('a check fails on a lost or a doubled increment, and allows only the uncertain excess', () => {
    expect(check('x', 100, 100).ok).toBe(true);
    expect(check('x', 100, 99).ok).toBe(false);
    expect(check('x', 100, 101).ok).toBe(false);
    expect(check('x', 100, 103, 3).ok).toBe(true);
    expect(check('x', 100, 104, 3).ok).toBe(false);
  });
});

describe('bench renderers', () => {
  it('draws the chart from a results file', () => {
    const row = (id: string, kind: 'ceiling' | 'eventual' | 'baseline', rate: number) => ({
      id,
      label: `${kind} <${id}>`,
      kind,
      reqPerSec: rate,
      p50Ms: 1,
      p99Ms: 2,
      requests: 10,
      non2xx: 0,
      errors: 0,
      vsCeiling: 1,
      coresUsed: {},
      check: null,
    });
    const results = {
      mode: 'full',
      startedAt: '2026-01-01T00:00:00Z',
      machine: { cpus: 2, cpuModel: 'Test CPU', node: 'v20', redis: '7' },
      method: { connections: 64 },
      throughput: [
        row('ceiling', 'ceiling', 20_000),
        row('express-incr', 'baseline', 4_000),
        row('t', 'eventual', 19_000),
      ],
      batched: [{ id: 'b', label: 'batched', incrementsPerSec: 1_200_000 }],
    } as unknown as Results;
    const svg = renderChart(results);
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('19,000 · 4.75× Express');
    expect(svg).toContain('1,200,000 increments/s');
    expect(svg).toContain('&lt;t&gt;');
    expect(svg).not.toMatch(/NaN|undefined/);
  });

  it('summarizes a CPU profile and draws its flame graph', () => {
    const frame = (functionName: string, url = '') => ({ functionName, url, lineNumber: 0 });
    const profile: CpuProfile = {
      startTime: 0,
      endTime: 1_000_000,
      nodes: [
        { id: 1, callFrame: frame('(root)'), children: [2, 3, 4] },
        { id: 2, callFrame: frame('(idle)'), hitCount: 50 },
        {
          id: 3,
          callFrame: frame('handler', 'file:///x/dist/http/routes/counters.js'),
          hitCount: 10,
          children: [5],
        },
        { id: 4, callFrame: frame('(garbage collector)'), hitCount: 10 },
        { id: 5, callFrame: frame('writev'), hitCount: 30 },
      ],
    };
    const s = summarize(profile);
    expect(s.busy).toBeCloseTo(0.5);
    expect(s.functions[0]).toMatchObject({ name: '(idle)', self: 0.5 });
    expect(s.areas.find((a) => a.area === 'tally:http')?.self).toBeCloseTo(0.1);
    const svg = flameGraph(profile, 'test');
    expect(svg).toContain('handler');
    expect(svg).toContain('writev');
    expect(svg).not.toContain('(idle)');
  });
});

describe('npm run bench (one real section)', () => {
  it('runs the batched section end to end, checks the counts and writes JSON + SVG', async () => {
    const out = tempDir('tally-bench-out');
    try {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', 'bench/run.ts', '--quick', '--only', 'batched', '--out', out.path],
        { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let text = '';
      child.stdout.on('data', (d) => {
        text += d;
      });
      child.stderr.on('data', (d) => {
        text += d;
      });
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      expect(code, text).toBe(0);
      const results = JSON.parse(readFileSync(join(out.path, 'latest.json'), 'utf8')) as Results;
      expect(results.mode).toBe('quick');
      expect(results.failures).toEqual([]);
      expect(results.batched.length).toBeGreaterThan(0);
      for (const row of results.batched) {
        expect(row.check.ok).toBe(true);
        expect(row.check.stored).toBe(row.check.expected);
        expect(row.incrementsPerSec).toBeGreaterThan(0);
      }
      expect(readFileSync(join(out.path, 'chart.svg'), 'utf8')).toContain('<svg');
      expect(text).toMatch(/batched · sqlite · accumulate/);
    } finally {
      out.remove();
    }
  }, 120_000);
});
