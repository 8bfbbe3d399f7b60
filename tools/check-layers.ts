/**
 * @module tools/check-layers — fails when a module in src/ imports one from a higher layer
 * (`npm run lint` runs it). The layers are docs/architecture.md's, lowest first; a module may
 * import its own layer's and lower ones, never a higher one. It also refuses `request.log` and
 * `reply.log`: Fastify runs without a logger (src/http/server.ts), so those discard every line.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Layer of each part of src/, lowest first; a path matches its longest listed prefix. */
export const LAYERS: ReadonlyArray<readonly string[]> = [
  // Leaves: rules, errors, settings, small helpers; they import nothing of ours.
  [
    'domain.ts',
    'errors.ts',
    'version.ts',
    'config.ts',
    'util/',
    'lock.ts',
    'obs/logger.ts',
    'obs/metrics.ts',
    'obs/rotating-file.ts',
    // The typed HTTP client: imports nothing of ours (it is published on its own export).
    'client/',
  ],
  // Storage: the only code that touches SQLite or Redis.
  ['store/'],
  // What sits on a store: identity, the log, the aggregator, live fan-out.
  ['instance.ts', 'wal/', 'aggregator/', 'live/'],
  // What ties them together for requests, and reports on them.
  ['counters/', 'obs/events.ts'],
  // The HTTP edge and the CLI's client.
  ['http/', 'cli/'],
  // Composition and processes.
  ['app.ts'],
  ['server.ts'],
  ['serve.ts'],
  ['main.ts'],
];

function layerOf(path: string): number {
  let best = -1;
  let bestLength = -1;
  LAYERS.forEach((prefixes, layer) => {
    for (const prefix of prefixes) {
      const hit = prefix.endsWith('/') ? path.startsWith(prefix) : path === prefix;
      if (hit && prefix.length > bestLength) {
        best = layer;
        bestLength = prefix.length;
      }
    }
  });
  return best;
}

function* sources(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sources(path);
    else if (entry.name.endsWith('.ts')) yield path;
  }
}

/** Fastify's per-request logger, which discards: lines go through `requestLog` instead. */
const REQUEST_LOG_RE = /\b(?:request|reply|req)\.log\b/;

const IMPORT_RE = /(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s+['"](\.[^'"]+)['"]/g;

/** Every wrong-way or unplaced import under `srcDir`, as readable lines. */
export function checkLayers(srcDir: string): string[] {
  const problems: string[] = [];
  for (const file of sources(srcDir)) {
    const from = relative(srcDir, file);
    const fromLayer = layerOf(from);
    if (fromLayer < 0) {
      problems.push(`${from}: not in any layer (add it to tools/check-layers.ts and the docs)`);
      continue;
    }
    const text = readFileSync(file, 'utf8');
    const code = text.split('\n').filter((line) => !/^\s*(?:\/\/|\/?\*)/.test(line));
    if (code.some((line) => REQUEST_LOG_RE.test(line))) {
      problems.push(`${from}: request.log discards every line; log through requestLog`);
    }
    for (const match of text.matchAll(IMPORT_RE)) {
      const target = relative(srcDir, resolve(dirname(file), match[1] as string)).replace(
        /\.js$/,
        '.ts',
      );
      const toLayer = layerOf(target);
      if (toLayer > fromLayer) {
        problems.push(`${from} imports ${target}, a higher layer (${fromLayer} → ${toLayer})`);
      }
    }
  }
  return problems;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const src = fileURLToPath(new URL('../src', import.meta.url));
  const problems = checkLayers(src);
  for (const p of problems) process.stderr.write(`check-layers: ${p}\n`);
  if (problems.length > 0) process.exit(1);
  process.stdout.write('check-layers: every import points down\n');
}
