/**
 * @module bench/profile — reads a V8 `.cpuprofile` (from `npm run bench -- --profile`) and prints
 * where the time went: top functions by self time, time by area, and a flame graph SVG.
 * CLI: `tsx bench/profile.ts <file.cpuprofile> [--svg flame.svg] [--top 25]`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
  children?: number[];
}

/** The JSON V8 writes for --cpu-prof. */
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
}

/** Self time per function and per area, as shares of all samples. */
export interface ProfileSummary {
  readonly samples: number;
  readonly durationMs: number;
  /** Share of samples not idle. */
  readonly busy: number;
  readonly functions: { name: string; where: string; area: string; self: number }[];
  /** Top functions by inclusive time (self + callees), recursion counted once. */
  readonly inclusive: { name: string; where: string; total: number }[];
  readonly areas: { area: string; self: number }[];
}

/** Which part of the stack a frame belongs to. */
export function areaOf(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (url === '') {
    if (functionName === '(idle)') return 'idle';
    if (functionName === '(garbage collector)') return 'gc';
    return functionName === '(program)' ? 'v8/native' : 'native';
  }
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
  if (pkg !== undefined) return pkg;
  const own = /\/dist\/(.+)\.js$/.exec(url)?.[1];
  if (own !== undefined) return `tally:${own.split('/')[0]}`;
  return 'other';
}

export function summarize(profile: CpuProfile, top = 25): ProfileSummary {
  const total = profile.nodes.reduce((n, node) => n + (node.hitCount ?? 0), 0) || 1;
  const byFunction = new Map<string, { name: string; where: string; area: string; hits: number }>();
  const byArea = new Map<string, number>();
  let idle = 0;
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    if (hits === 0) continue;
    const f = node.callFrame;
    const area = areaOf(f);
    if (area === 'idle') idle += hits;
    const where = f.url === '' ? '' : `${shortUrl(f.url)}:${f.lineNumber + 1}`;
    const key = `${f.functionName}@${where}`;
    const entry = byFunction.get(key) ?? {
      name: f.functionName || '(anonymous)',
      where,
      area,
      hits: 0,
    };
    entry.hits += hits;
    byFunction.set(key, entry);
    byArea.set(area, (byArea.get(area) ?? 0) + hits);
  }
  // Inclusive time: walk the tree, adding a node's subtree to each function on the stack once.
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const inclusive = new Map<string, number>();
  const subtree = new Map<number, number>();
  const weigh = (id: number): number => {
    const node = byId.get(id);
    if (node === undefined) return 0;
    let sum = node.hitCount ?? 0;
    for (const child of node.children ?? []) sum += weigh(child);
    subtree.set(id, sum);
    return sum;
  };
  const root = profile.nodes[0];
  if (root !== undefined) weigh(root.id);
  const walk = (id: number, onStack: Set<string>) => {
    const node = byId.get(id);
    if (node === undefined) return;
    const f = node.callFrame;
    const key = `${f.functionName || '(anonymous)'}@${f.url === '' ? '' : `${shortUrl(f.url)}:${f.lineNumber + 1}`}`;
    const fresh = !onStack.has(key);
    if (fresh) {
      inclusive.set(key, (inclusive.get(key) ?? 0) + (subtree.get(id) ?? 0));
      onStack.add(key);
    }
    for (const child of node.children ?? []) walk(child, onStack);
    if (fresh) onStack.delete(key);
  };
  if (root !== undefined) walk(root.id, new Set());
  return {
    inclusive: [...inclusive]
      .filter(([key]) => !key.startsWith('(root)') && !key.startsWith('(idle)'))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([key, hits]) => {
        const at = key.lastIndexOf('@');
        return { name: key.slice(0, at), where: key.slice(at + 1), total: hits / total };
      }),
    samples: total,
    durationMs: (profile.endTime - profile.startTime) / 1000,
    busy: 1 - idle / total,
    functions: [...byFunction.values()]
      .sort((a, b) => b.hits - a.hits)
      .slice(0, top)
      .map(({ name, where, area, hits }) => ({ name, where, area, self: hits / total })),
    areas: [...byArea]
      .sort((a, b) => b[1] - a[1])
      .map(([area, hits]) => ({ area, self: hits / total })),
  };
}

/** A flame graph (root at the bottom) of the profile's call tree, idle time left out. */
export function flameGraph(profile: CpuProfile, title: string): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const inclusive = new Map<number, number>();
  const weigh = (id: number): number => {
    const node = byId.get(id);
    if (node === undefined || node.callFrame.functionName === '(idle)') return 0;
    let sum = node.hitCount ?? 0;
    for (const child of node.children ?? []) sum += weigh(child);
    inclusive.set(id, sum);
    return sum;
  };
  const root = profile.nodes[0];
  if (root === undefined) return '';
  const total = weigh(root.id) || 1;
  const width = 1200;
  const rowH = 16;
  const rects: string[] = [];
  let maxDepth = 0;
  const place = (id: number, x: number, depth: number) => {
    const node = byId.get(id);
    const w = ((inclusive.get(id) ?? 0) / total) * width;
    if (node === undefined || w < 0.5) return;
    maxDepth = Math.max(maxDepth, depth);
    const f = node.callFrame;
    const label = `${f.functionName || '(anonymous)'} ${f.url === '' ? '' : shortUrl(f.url)}`;
    const share = (((inclusive.get(id) ?? 0) / total) * 100).toFixed(1);
    rects.push(
      `<g><title>${esc(label)} — ${share}%</title><rect x="${x.toFixed(1)}" y="{Y${depth}}" width="${w.toFixed(1)}" height="${rowH - 1}" fill="${color(areaOf(f))}"/>` +
        (w > 40
          ? `<text x="${(x + 3).toFixed(1)}" y="{T${depth}}">${esc(truncate(label, w))}</text>`
          : '') +
        '</g>',
    );
    let cx = x;
    for (const child of node.children ?? []) {
      place(child, cx, depth + 1);
      cx += ((inclusive.get(child) ?? 0) / total) * width;
    }
  };
  place(root.id, 0, 0);
  const height = (maxDepth + 1) * rowH + 40;
  const body = rects
    .join('\n')
    .replace(/\{Y(\d+)\}/g, (_, d) => String(height - (Number(d) + 1) * rowH))
    .replace(/\{T(\d+)\}/g, (_, d) => String(height - (Number(d) + 1) * rowH + 11));
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="monospace" font-size="10">`,
    '<rect width="100%" height="100%" fill="#fff"/>',
    `<text x="4" y="16" font-size="13" font-family="sans-serif">${esc(title)}</text>`,
    body,
    '</svg>',
    '',
  ].join('\n');
}

function color(area: string): string {
  if (area.startsWith('tally:')) return '#6fa8dc';
  if (area.startsWith('node:')) return '#f6b26b';
  if (area === 'gc') return '#e06666';
  if (area === 'fastify' || area.startsWith('@fastify') || area === 'find-my-way') return '#93c47d';
  if (area === 'pino' || area === 'sonic-boom') return '#c27ba0';
  return '#cccccc';
}

function truncate(s: string, px: number): string {
  const chars = Math.floor((px - 6) / 6);
  return s.length <= chars ? s : `${s.slice(0, Math.max(0, chars - 1))}…`;
}

function shortUrl(url: string): string {
  return url.replace(/^file:\/\/.*?\/(node_modules|dist)\//, '$1/');
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { svg: { type: 'string' }, top: { type: 'string', default: '25' } },
  });
  const file = positionals[0];
  if (file === undefined) {
    process.stderr.write(
      'usage: tsx bench/profile.ts <file.cpuprofile> [--svg out.svg] [--top N]\n',
    );
    process.exit(2);
  }
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const s = summarize(profile, Number(values.top));
  // Shares of busy time: a server that waited for load between slices is mostly idle.
  const pct = (x: number) => `${((x / s.busy) * 100).toFixed(1).padStart(5)}%`;
  const out = [
    `${file}: ${(s.durationMs / 1000).toFixed(1)} s, ${s.samples} samples, ${(s.busy * 100).toFixed(1)}% busy; shares below are of busy time`,
    '',
    'self time by area:',
    ...s.areas.filter((a) => a.area !== 'idle').map((a) => `  ${pct(a.self)}  ${a.area}`),
    '',
    'top functions by self time:',
    ...s.functions
      .filter((f) => f.area !== 'idle')
      .map((f) => `  ${pct(f.self)}  ${f.name}  ${f.where}`),
    '',
    'top functions by inclusive time:',
    ...s.inclusive.map((f) => `  ${pct(f.total)}  ${f.name}  ${f.where}`),
  ];
  process.stdout.write(`${out.join('\n')}\n`);
  if (values.svg !== undefined) {
    writeFileSync(values.svg, flameGraph(profile, `${file} (idle removed)`));
    process.stdout.write(`wrote ${values.svg}\n`);
  }
}
