/**
 * @module bench/run — `npm run bench [-- --quick] [--only a,b] [--publish] [--profile] [--out d]`:
 * starts its own redis-server, Tally processes and baselines on loopback, loads them with
 * autocannon, checks every count, prints one table and writes bench/results/latest.json + chart.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, platform, release, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { renderChart } from './chart.js';
import { type BenchContext, FULL, QUICK } from './lib/context.js';
import { killAll, ROOT, redisVersion, startRedis } from './lib/procs.js';
import { RedisProbe } from './lib/redis.js';
import { judgeTargets, renderTable } from './lib/report.js';
import type { Results } from './lib/results.js';
import { batched } from './sections/batched.js';
import { convergence } from './sections/convergence.js';
import { memory } from './sections/memory.js';
import { replay } from './sections/replay.js';
import { throughput } from './sections/throughput.js';
import { workers } from './sections/workers.js';

const SECTIONS = ['throughput', 'batched', 'memory', 'convergence', 'workers', 'replay'] as const;
type Section = (typeof SECTIONS)[number];

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    publish: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    strict: { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
    main: { type: 'string' },
    out: { type: 'string' },
  },
});

const only = new Set((flags.only ?? SECTIONS.join(',')).split(',').map((s) => s.trim()));
for (const s of only) {
  if (!(SECTIONS as readonly string[]).includes(s)) {
    process.stderr.write(`bench: unknown section "${s}" (sections: ${SECTIONS.join(', ')})\n`);
    process.exit(2);
  }
}
const wants = (s: Section) => only.has(s);

process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`bench: ${signal}, stopping everything\n`);
    killAll();
    process.exit(130);
  });
}

if (!existsSync(join(ROOT, 'dist/main.js'))) {
  process.stderr.write('bench: dist/main.js is missing; run `npm run bench` (it builds first)\n');
  process.exit(2);
}
const redis = redisVersion();
if (redis === undefined) {
  process.stderr.write(
    'bench: redis-server is required (apt-get install redis-server, or brew install redis)\n',
  );
  process.exit(2);
}
const { SETTINGS } = (await import(join(ROOT, 'dist/config.js'))) as {
  SETTINGS: Record<string, unknown>;
};
const walSupported = 'wal' in SETTINGS;

const settings = flags.quick ? QUICK : FULL;
const started = performance.now();
const loadAtStart = loadavg();
const startedAt = new Date().toISOString();
const resultsDir = flags.out ? resolve(flags.out) : join(ROOT, 'bench/results');
mkdirSync(resultsDir, { recursive: true });
const failures: string[] = [];
const log = (line: string) => {
  const t = ((performance.now() - started) / 1000).toFixed(0).padStart(4);
  process.stderr.write(`[${t}s] ${line}\n`);
};

const redisServer = await startRedis();
const probe = new RedisProbe(redisServer.url);
const ctx: BenchContext = {
  settings,
  walSupported,
  redis: redisServer,
  probe,
  verbose: flags.verbose ?? false,
  spawn: (name) => ({
    nodeFlags: flags.profile
      ? ['--cpu-prof', '--cpu-prof-dir', join(resultsDir, 'profiles', name)]
      : [],
    ...(flags.main ? { main: resolve(flags.main) } : {}),
  }),
  log,
  fail: (message) => {
    failures.push(message);
    log(`FAILURE: ${message}`);
  },
};

async function section<T>(name: Section, run: () => Promise<T>): Promise<T | null> {
  if (!wants(name)) return null;
  try {
    return await run();
  } catch (err) {
    ctx.fail(`${name} crashed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return null;
  }
}

const throughputRows = (await section('throughput', () => throughput(ctx))) ?? [];
const batchedRows = (await section('batched', () => batched(ctx))) ?? [];
const memoryResult = await section('memory', () => memory(ctx));
const convergenceResult = await section('convergence', () => convergence(ctx));
const workersResult = await section('workers', () => workers(ctx));
const replayResult = await section('replay', () => replay(ctx));
probe.close();
await redisServer.stop();

const cpu = cpus()[0]?.model.trim() ?? 'unknown CPU';
const partial: Omit<Results, 'targets'> = {
  schema: 1,
  mode: settings.quick ? 'quick' : 'full',
  startedAt,
  wallSeconds: (performance.now() - started) / 1000,
  machine: {
    cpus: availableParallelism(),
    cpuModel: cpu,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    os: `${platform()} ${release()}`,
    node: process.version,
    redis,
  },
  method: {
    generator: 'autocannon 8 (programmatic) in the bench process, on the same machine',
    connections: settings.connections,
    pipelining: 1,
    secondsPerTarget: settings.secondsPerTarget,
    rounds: settings.rounds,
    headline: { secondsPerTarget: settings.headlineSeconds, rounds: settings.headlineRounds },
    variants: { secondsPerTarget: settings.variantSeconds, rounds: settings.variantRounds },
    warmupSeconds: settings.warmupSeconds,
    countersPerTarget: settings.countersPerTarget,
    note:
      'Targets run in interleaved slices of a fixed request count, so a slow moment hits all of ' +
      'them and every acknowledged request is known exactly; req/s is the median over slices and ' +
      'ratios are medians of same-round ratios. The load generator shares the CPUs with the ' +
      'servers and redis-server.',
    loadAverage: { atStart: loadAtStart, atEnd: loadavg() },
  },
  wal: walSupported ? 'measured' : 'not yet',
  throughput: throughputRows,
  batched: batchedRows,
  memory: memoryResult,
  convergence: convergenceResult,
  workers: workersResult,
  replay: replayResult,
  failures,
};
const results: Results = { ...partial, targets: judgeTargets(partial, walSupported ? true : null) };

process.stdout.write(`${renderTable(results)}\n`);
const json = `${JSON.stringify(results, null, 2)}\n`;
writeFileSync(join(resultsDir, 'latest.json'), json);
writeFileSync(join(resultsDir, 'chart.svg'), renderChart(results));
process.stdout.write(
  `\nwrote ${join(resultsDir, 'latest.json')} and chart.svg (${results.wallSeconds.toFixed(0)} s)\n`,
);
if (flags.publish) {
  if (settings.quick || only.size !== SECTIONS.length) {
    process.stderr.write('bench: --publish needs a full run of every section; not published\n');
  } else {
    mkdirSync(join(ROOT, 'docs/bench'), { recursive: true });
    writeFileSync(join(ROOT, 'docs/bench/results.json'), json);
    writeFileSync(join(ROOT, 'docs/bench/chart.svg'), renderChart(results));
    // Committed files pass the repository's formatter as they are written.
    spawnSync(
      process.execPath,
      [join(ROOT, 'node_modules/@biomejs/biome/bin/biome'), 'format', '--write', 'docs/bench'],
      { cwd: ROOT, stdio: 'ignore' },
    );
    process.stdout.write('wrote docs/bench/results.json and docs/bench/chart.svg\n');
  }
}
const missed = results.targets.filter((t) => t.met === false);
let code = failures.length > 0 ? 1 : 0;
if (flags.strict && missed.length > 0) {
  process.stderr.write(`bench: --strict and ${missed.length} target(s) missed\n`);
  code = 1;
}
process.exit(code);
