/**
 * @module bench/hot — focused load for finding what limits a number the full bench reports.
 * One target under continuous load, optionally under the CPU profiler:
 *   `tsx bench/hot.ts <noop|increment|strong|batch> [--seconds 10] [--connections 64]
 *    [--env TALLY_X=v ...] [--redis] [--profile] [--main patched/dist/main.js]`
 * or several targets in interleaved rounds, each reported as a paired ratio to the first:
 *   `tsx bench/hot.ts compare <target> <target> ... [--seconds 16] [--rounds 32]`
 * or the instructions per request each target's main thread executes, counted by valgrind:
 *   `tsx bench/hot.ts count <target> ... [--warmup 8000] [--requests 16000]`
 * where a target is `fastify` (the bare Fastify no-op route of bench/baselines/fastify-incr.ts)
 * or `<noop|increment|strong>[+TALLY_X=v ...][@patched/dist/main.js]`, each in its own process
 * (build first); `+TALLY_X=v` sets a variable for that target alone.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { compare, median, processCpuSeconds, type Target } from './lib/load.js';
import {
  freePort,
  killAll,
  ROOT,
  type Service,
  startBaseline,
  startRedis,
  startTally,
  workDir,
} from './lib/procs.js';
import { flameGraph, summarize } from './profile.js';

const JSON_HEADERS = { 'content-type': 'application/json' };

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
type RouteName = keyof typeof ROUTES;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    seconds: { type: 'string' },
    rounds: { type: 'string', default: '32' },
    connections: { type: 'string' },
    env: { type: 'string', multiple: true, default: [] },
    profile: { type: 'boolean', default: false },
    main: { type: 'string' },
    redis: { type: 'boolean', default: false },
    warmup: { type: 'string', default: '8000' },
    requests: { type: 'string', default: '16000' },
  },
});
process.on('exit', killAll);
const env = Object.fromEntries(values.env.map((pair) => pair.split('=', 2) as [string, string]));

if (positionals[0] === 'compare') await compareTargets(positionals.slice(1));
else if (positionals[0] === 'count') await countInstructions(positionals.slice(1));
else await hot(positionals[0] ?? '');
process.exit(0);

/** One Tally process, one route, `--seconds` of load; CPU per request and the profile. */
async function hot(name: string): Promise<void> {
  const route = ROUTES[name as RouteName];
  if (route === undefined) {
    process.stderr.write(
      `usage: tsx bench/hot.ts <${Object.keys(ROUTES).join('|')}> [options]\n` +
        '       tsx bench/hot.ts compare <fastify|noop|increment|strong[@main.js]> ... [options]\n',
    );
    process.exit(2);
  }
  const redis = values.redis ? await startRedis() : undefined;
  if (redis) Object.assign(env, { TALLY_STORE: 'redis', TALLY_REDIS_URL: redis.url });
  const profileDir = join(ROOT, 'bench/results/hot', `${name}-${Date.now()}`);
  const server = await startTally({
    name: 'hot',
    env,
    ...(values.main ? { main: values.main } : {}),
    nodeFlags: values.profile ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [],
  });
  const result = await autocannon({
    url: server.url + route.path,
    method: 'POST',
    headers: JSON_HEADERS,
    body: route.body,
    connections: Number(values.connections ?? (name === 'batch' ? 16 : 64)),
    duration: Number(values.seconds ?? 10),
  });
  process.stdout.write(
    `${name}: ${Math.round(result.requests.average)} req/s, p50 ${result.latency.p50} ms, ` +
      `p99 ${result.latency.p99} ms, ${result.non2xx} non-2xx, ${result.errors} errors\n`,
  );
  const cpuSeconds = processCpuSeconds(server.pid);
  await server.stop();
  await redis?.stop();
  if (cpuSeconds !== undefined) {
    const perRequest = (cpuSeconds * 1e6) / Math.max(1, result.requests.total);
    process.stdout.write(
      `server CPU: ${perRequest.toFixed(0)} µs per request (startup included)\n`,
    );
  }
  if (values.profile) printProfiles(profileDir, name);
}

/** `name[+TALLY_X=v…][@main.js]`: the route, this target's own variables, a patched build. */
function parseTarget(spec: string): {
  name: string;
  main: string | undefined;
  extra: Record<string, string>;
} {
  const at = spec.indexOf('@');
  const [name = '', ...pairs] = (at < 0 ? spec : spec.slice(0, at)).split('+');
  const extra = Object.fromEntries(pairs.map((p) => p.split('=', 2) as [string, string]));
  return { name, main: at < 0 ? undefined : resolve(spec.slice(at + 1)), extra };
}

/**
 * Interleaved rounds (order rotated each round) of the same load against every target; a
 * target's ratio is the median over rounds of its slice's rate over the first target's slice
 * of that round, with the middle half of those ratios shown as the spread.
 */
async function compareTargets(specs: string[]): Promise<void> {
  if (specs.length < 2) {
    process.stderr.write('usage: tsx bench/hot.ts compare <target> <target> ... [options]\n');
    process.exit(2);
  }
  const services: Service[] = [];
  const targets: Target[] = [];
  let redis: Service | undefined;
  for (const [i, spec] of specs.entries()) {
    const { name, main, extra } = parseTarget(spec);
    let server: Service;
    let path: string;
    if (name === 'fastify') {
      // The baseline process also serves INCRBY; its no-op route never touches Redis.
      redis ??= await startRedis();
      server = await startBaseline('fastify-incr', redis.url, 'hot:fastify:');
      path = ROUTES.noop.path;
    } else {
      const route = ROUTES[name as RouteName];
      if (route === undefined || name === 'batch') {
        process.stderr.write(`hot: unknown target "${spec}"\n`);
        process.exit(2);
      }
      server = await startTally({
        name: `hot-${i}`,
        env: { ...env, ...extra },
        ...(main === undefined ? {} : { main }),
      });
      path = route.path;
    }
    services.push(server);
    targets.push({
      id: `${i}`,
      label: spec,
      url: server.url,
      connections: Number(values.connections ?? 64),
      processes: { server: server.pid },
      requests: [{ method: 'POST', path, headers: JSON_HEADERS, body: ROUTES.noop.body }],
    });
  }
  const rounds = Number(values.rounds);
  const seconds = Number(values.seconds ?? 16);
  process.stderr.write(
    `hot: ${targets.length} targets × ${seconds} s in ${rounds} interleaved rounds\n`,
  );
  const before = targets.map((t) => userSystem(t.processes?.server ?? -1));
  const meters = await compare(targets, { secondsPerTarget: seconds, rounds, warmupSeconds: 1.5 });
  const after = targets.map((t) => userSystem(t.processes?.server ?? -1));
  const first = meters.get('0');
  const width = Math.max(...specs.map((s) => s.length));
  process.stdout.write(
    `${'target'.padEnd(width)}    req/s  × first  (middle half)  srv µs/req  user/sys µs  ` +
      'p50 ms  non-2xx\n',
  );
  for (const target of targets) {
    const meter = meters.get(target.id);
    if (meter === undefined || first === undefined) continue;
    const ratios = meter.roundRates
      .map((rate, round) => rate / (first.roundRates[round] ?? Number.NaN))
      .filter(Number.isFinite)
      .sort((a, b) => a - b);
    const q = (p: number) => ratios[Math.floor(p * (ratios.length - 1))] ?? Number.NaN;
    const cpu = ((meter.cpuSeconds.server ?? 0) * 1e6) / Math.max(1, meter.ok);
    // Over the whole run, warm-up included: user time is JavaScript, system time mostly writev.
    const i = Number(target.id);
    const served = Math.max(1, meter.acknowledged + meter.non2xx);
    const split = [0, 1].map(
      (k) => (((after[i]?.[k] ?? 0) - (before[i]?.[k] ?? 0)) * 1e6) / served,
    );
    process.stdout.write(
      `${target.label.padEnd(width)}  ${Math.round(meter.rate).toString().padStart(7)}  ` +
        `${median(ratios).toFixed(3)}×  (${q(0.25).toFixed(3)}–${q(0.75).toFixed(3)})  ` +
        `${cpu.toFixed(1).padStart(10)}  ${split
          .map((x) => x.toFixed(1))
          .join('/')
          .padStart(11)}  ` +
        `${meter.percentile(0.5).toFixed(1).padStart(6)}  ${meter.non2xx + meter.errors}\n`,
    );
  }
  for (const service of services) await service.stop();
  await redis?.stop();
}

/**
 * Instructions per request of each target's main thread, counted by valgrind's callgrind from
 * request `--warmup` (the JIT has settled) for `--requests` more, 8 connections, one target at a
 * time. The JIT compiler and GC helper threads are left out: their share moves with timing. The
 * same build counts the same to within about 1% run to run, where throughput ratios on a shared
 * two-core VM move by 10%; system time (the writev of each response) is not in it.
 */
async function countInstructions(specs: string[]): Promise<void> {
  if (specs.length === 0 || spawnSync('valgrind', ['--version']).status !== 0) {
    process.stderr.write('usage: tsx bench/hot.ts count <target> ... (needs valgrind)\n');
    process.exit(2);
  }
  const warmup = Number(values.warmup);
  const requests = Number(values.requests);
  let redis: Service | undefined;
  for (const [i, spec] of specs.entries()) {
    const { name, main, extra } = parseTarget(spec);
    const route = name === 'fastify' ? ROUTES.noop : ROUTES[name as RouteName];
    if (route === undefined || name === 'batch') {
      process.stderr.write(`hot: unknown target "${spec}"\n`);
      process.exit(2);
    }
    const dir = workDir(`count-${i}`);
    const port = await freePort();
    let args: string[];
    let childEnv: Record<string, string>;
    if (name === 'fastify') {
      redis ??= await startRedis();
      args = ['--import', 'tsx', join(ROOT, 'bench/baselines/fastify-incr.ts')];
      childEnv = { PORT: String(port), REDIS_URL: redis.url, KEY_PREFIX: 'hot:count:' };
    } else {
      args = [main ?? join(ROOT, 'dist/main.js'), 'serve'];
      // What startTally sets, so the process is the one the other modes measure.
      childEnv = {
        TALLY_HOST: '127.0.0.1',
        TALLY_DATA_DIR: join(dir, 'data'),
        TALLY_SQLITE_PATH: join(dir, 'tally.db'),
        TALLY_LOG_FILES: 'false',
        TALLY_LOG_LEVEL: 'warn',
        TALLY_BENCH_ROUTES: 'true',
        TALLY_WORKERS: '1',
        ...env,
        ...extra,
        TALLY_PORT: String(port),
      };
    }
    const out = join(dir, 'callgrind.out');
    const child = spawn(
      'valgrind',
      [
        '--tool=callgrind',
        '--instr-atstart=no',
        '--separate-threads=yes',
        `--callgrind-out-file=${out}`,
        '--smc-check=all-non-file',
        process.execPath,
        ...args,
      ],
      { cwd: ROOT, env: { ...process.env, ...childEnv }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const exited = new Promise<void>((done) => child.once('exit', () => done()));
    await new Promise<void>((ready, fail) => {
      let text = '';
      const timer = setTimeout(() => fail(new Error(`${spec}: no start in 5 min`)), 300_000);
      child.stdout?.on('data', (d: Buffer) => {
        text += d.toString();
        if (/listening on/.test(text)) {
          clearTimeout(timer);
          ready();
        }
      });
      child.once('exit', (code) => fail(new Error(`${spec} exited with ${code} at start`)));
    });
    const load = (amount: number) =>
      autocannon({
        url: `http://127.0.0.1:${port}${route.path}`,
        method: 'POST',
        headers: JSON_HEADERS,
        body: route.body,
        connections: 8,
        amount,
      });
    const pid = String(child.pid);
    await load(warmup);
    spawnSync('callgrind_control', ['--instr=on', pid], { stdio: 'ignore' });
    const result = await load(requests);
    spawnSync('callgrind_control', ['--dump', pid], { stdio: 'ignore' });
    child.kill('SIGTERM');
    await exited;
    // Dump 1 of thread 1 (the main thread): "<out>.1-01".
    const totals = /^(?:totals|summary): (\d+)/m.exec(readFileSync(`${out}.1-01`, 'utf8'));
    const perRequest = Number(totals?.[1] ?? Number.NaN) / requests;
    process.stdout.write(
      `${spec}: ${Math.round(perRequest)} instructions per request (main thread, ` +
        `${result['2xx']} 2xx of ${requests} after ${warmup})\n`,
    );
  }
  await redis?.stop();
}

/** User and system CPU seconds of a process so far (Linux /proc); zeros elsewhere. */
function userSystem(pid: number): [number, number] {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return [Number(fields[11]) / 100, Number(fields[12]) / 100];
  } catch {
    return [0, 0];
  }
}

function printProfiles(profileDir: string, name: string): void {
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
    writeFileSync(join(profileDir, 'flame.svg'), flameGraph(profile, `${name} ${file}`));
    process.stdout.write(`flame graph: ${join(profileDir, 'flame.svg')}\n`);
  }
}
