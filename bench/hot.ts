/**
 * @module bench/hot — one Tally process, one route, continuous load, optionally under the CPU
 * profiler: the tool for finding what limits a number the full bench reports.
 * CLI: `tsx bench/hot.ts <noop|increment|strong|batch> [--seconds 10] [--connections 64]
 *       [--env TALLY_X=v ...] [--redis] [--profile] [--main patched/dist/main.js]` (build first).
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { processCpuSeconds } from './lib/load.js';
import { killAll, ROOT, startRedis, startTally } from './lib/procs.js';
import { flameGraph, summarize } from './profile.js';

const ROUTES = {
  noop: { path: '/api/v1/noop', body: '{"by":1}' },
  increment: { path: '/api/v1/counters/hot.1/increment', body: '{"by":1}' },
  strong: { path: '/api/v1/counters/hot.1/increment?consistency=strong', body: '{"by":1}' },
  batch: {
    path: '/api/v1/increments',
    body: JSON.stringify({
      increments: Array.from({ length: 1000 }, (_, i) => ({ name: `hot.${i}`, by: 1 })),
    }),
  },
} as const;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string' },
    env: { type: 'string', multiple: true, default: [] },
    profile: { type: 'boolean', default: false },
    main: { type: 'string' },
    redis: { type: 'boolean', default: false },
  },
});
const route = ROUTES[(positionals[0] ?? '') as keyof typeof ROUTES];
if (route === undefined) {
  process.stderr.write(`usage: tsx bench/hot.ts <${Object.keys(ROUTES).join('|')}> [options]\n`);
  process.exit(2);
}
process.on('exit', killAll);

const env = Object.fromEntries(values.env.map((pair) => pair.split('=', 2) as [string, string]));
const redis = values.redis ? await startRedis() : undefined;
if (redis) Object.assign(env, { TALLY_STORE: 'redis', TALLY_REDIS_URL: redis.url });
const profileDir = join(ROOT, 'bench/results/hot', `${positionals[0]}-${Date.now()}`);
const server = await startTally({
  name: 'hot',
  env,
  ...(values.main ? { main: values.main } : {}),
  nodeFlags: values.profile ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [],
});
const result = await autocannon({
  url: server.url + route.path,
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: route.body,
  connections: Number(values.connections ?? (positionals[0] === 'batch' ? 16 : 64)),
  duration: Number(values.seconds),
});
process.stdout.write(
  `${positionals[0]}: ${Math.round(result.requests.average)} req/s, p50 ${result.latency.p50} ms, ` +
    `p99 ${result.latency.p99} ms, ${result.non2xx} non-2xx, ${result.errors} errors\n`,
);
const cpuSeconds = processCpuSeconds(server.pid);
await server.stop();
await redis?.stop();
if (cpuSeconds !== undefined) {
  const perRequest = (cpuSeconds * 1e6) / Math.max(1, result.requests.total);
  process.stdout.write(`server CPU: ${perRequest.toFixed(0)} µs per request (startup included)\n`);
}
if (values.profile) {
  for (const file of readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile'))) {
    const path = join(profileDir, file);
    const profile = JSON.parse(readFileSync(path, 'utf8'));
    const s = summarize(profile, 30);
    const pct = (x: number) => `${((x / s.busy) * 100).toFixed(1).padStart(5)}%`;
    process.stdout.write(`${path}: ${(s.busy * 100).toFixed(0)}% busy; shares of busy time\n`);
    for (const a of s.areas.filter((x) => x.area !== 'idle').slice(0, 12)) {
      process.stdout.write(`  ${pct(a.self)}  ${a.area}\n`);
    }
    process.stdout.write('top functions:\n');
    for (const f of s.functions.filter((x) => x.area !== 'idle')) {
      process.stdout.write(`  ${pct(f.self)}  ${f.name}  ${f.where}\n`);
    }
    process.stdout.write('top functions by inclusive time:\n');
    for (const f of s.inclusive) {
      process.stdout.write(`  ${pct(f.total)}  ${f.name}  ${f.where}\n`);
    }
    writeFileSync(join(profileDir, 'flame.svg'), flameGraph(profile, `${positionals[0]} ${file}`));
    process.stdout.write(`flame graph: ${join(profileDir, 'flame.svg')}\n`);
  }
}
