// The container image, built from the Containerfile and run with podman (this machine has no
// Docker engine; podman with runc runs containers as root). No registry serves a base image here,
// so fixtures/container-base.sh makes one (Debian bookworm + this machine's Node.js 20), cached
// between runs, and the build takes it as BASE_IMAGE. The image is checked as built (non-root,
// volume, health check, exec-form entrypoint, nothing but the installed package), then run: it
// counts, stops on SIGTERM within the stop timeout with everything stored, and a new container on
// the same volume finds the exact value. Without podman the suite is skipped with a message,
// except in CI (CI set), where it must run.
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { startRedis } from '../helpers/redis-server.js';
import { freePort, REPO } from './helpers.js';

const exec = promisify(execFile);
const TOOLS = ['podman', 'runc', 'debootstrap', 'dpkg-repack'];
const missing = TOOLS.filter((tool) => {
  try {
    execFileSync('bash', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return false;
  } catch {
    return true;
  }
});
// podman runs rootful here, and debootstrap needs root.
const root = process.getuid?.() === 0;
const skip = (missing.length > 0 || !root) && process.env.CI === undefined;
if (skip) {
  console.warn(
    missing.length > 0
      ? `container tests skipped: ${missing.join(', ')} not installed (apt-get install podman runc debootstrap dpkg-repack); in CI they run`
      : 'container tests skipped: they need root (rootful podman, debootstrap); in CI they run',
  );
}

const BASE = 'localhost/tally-test-base:bookworm-node20';
const IMAGE = `localhost/tally:test-${process.pid}`;
const CACHE = process.env.TALLY_CONTAINER_CACHE ?? '/var/cache/tally-container-test';
/** This machine's podman needs runc (crun fails on its cgroups) and cgroupfs. */
const PODMAN = ['--runtime', 'runc', '--cgroup-manager=cgroupfs'];
const RUN = [
  '--network=host',
  '--ulimit',
  'nofile=20000:20000',
  '--ulimit',
  'nproc=1024:1024',
  // The health check runs when asked (`podman healthcheck run`): its timer needs systemd.
  '--health-interval=disable',
];
const ADMIN_TOKEN = 'container-test-admin-token';
const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };

async function podman(args: string[], timeoutMs = 120_000): Promise<string> {
  const { stdout } = await exec('podman', [...PODMAN, ...args], {
    cwd: REPO,
    timeout: timeoutMs,
    maxBuffer: 64 * 1024 * 1024,
  });
  return stdout.trim();
}

/** A container's output, stdout and stderr together. */
async function logsOf(container: string): Promise<string> {
  const { stdout, stderr } = await exec('podman', [...PODMAN, 'logs', container], {
    timeout: 60_000,
  });
  return stdout + stderr;
}

async function podmanCode(args: string[]): Promise<number> {
  try {
    await podman(args);
    return 0;
  } catch (err) {
    return (err as { code?: number }).code ?? -1;
  }
}

async function waitReady(url: string, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await fetch(`${url}/readyz`)).status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`${url} was not ready in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const containers: string[] = [];
const volume = `tally-test-${process.pid}`;
const volumes: string[] = [volume];

describe.skipIf(skip)('the container image', () => {
  beforeAll(async () => {
    const base = join(REPO, 'test/deploy/fixtures/container-base.sh');
    await exec(base, [BASE, CACHE], { timeout: 15 * 60_000, maxBuffer: 16 * 1024 * 1024 });
    await podman(
      [
        'build',
        '--format',
        'docker',
        ...RUN.slice(0, 5),
        '--build-arg',
        `BASE_IMAGE=${BASE}`,
        '-t',
        IMAGE,
        '-f',
        'Containerfile',
        '.',
      ],
      20 * 60_000,
    );
    await podman(['volume', 'create', volume]);
  }, 35 * 60_000);

  afterAll(async () => {
    for (const c of containers) await podman(['rm', '-f', c]).catch(() => undefined);
    for (const v of volumes) await podman(['volume', 'rm', '-f', v]).catch(() => undefined);
    await podman(['rmi', '-f', IMAGE]).catch(() => undefined);
    // The build's intermediate stages (about 1 GB a run); the cached base image stays.
    await podman(['image', 'prune', '-f']).catch(() => undefined);
  }, 120_000);

  it('is built as the Containerfile says: non-root, /data volume, health check, exec form', async () => {
    const [image] = JSON.parse(await podman(['image', 'inspect', IMAGE])) as Array<{
      /** podman reports a docker-format image's health check here. */
      Healthcheck?: { Test: string[] };
      Config: {
        User: string;
        Volumes: Record<string, unknown>;
        Entrypoint: string[];
        Cmd: string[];
        StopSignal: string;
        Env: string[];
        Healthcheck?: { Test: string[] };
        ExposedPorts: Record<string, unknown>;
      };
    }>;
    const config = image?.Config;
    expect(config?.User).toBe('tally');
    expect(Object.keys(config?.Volumes ?? {})).toEqual(['/data']);
    expect(config?.Entrypoint).toEqual(['tally']);
    expect(config?.Cmd).toEqual(['serve']);
    expect(config?.StopSignal).toBe('SIGTERM');
    expect(Object.keys(config?.ExposedPorts ?? {})).toEqual(['8080/tcp']);
    const health = image?.Healthcheck ?? config?.Healthcheck;
    expect(health?.Test.join(' ')).toContain('/readyz');
    for (const env of [
      'TALLY_HOST=0.0.0.0',
      'TALLY_PORT=8080',
      'TALLY_DATA_DIR=/data',
      'TALLY_SQLITE_PATH=/data/tally.db',
      'TALLY_LOG_DIR=/data/log',
    ]) {
      expect(config?.Env).toContain(env);
    }
    // Only the installed package: no source tree, no dev dependencies, no compilers.
    const inside = await podman([
      'run',
      '--rm',
      ...RUN,
      '--entrypoint',
      'sh',
      IMAGE,
      '-c',
      'tally --version; id -un; ls /opt/tally/node_modules; test -e /src && echo has-src; command -v g++ || echo no-compiler',
    ]);
    const lines = inside.split('\n');
    expect(lines[0]).toBe(pkg.version);
    expect(lines[1]).toBe('tally');
    expect(lines).toContain('tally-counter');
    expect(lines).toContain('better-sqlite3');
    for (const dev of ['typescript', 'vitest', '@biomejs', 'aws-cdk-lib', 'playwright-core']) {
      expect(lines, dev).not.toContain(dev);
    }
    expect(lines).not.toContain('has-src');
    expect(lines.at(-1)).toBe('no-compiler');
  });

  it('counts, stops cleanly on SIGTERM, and a new container on the volume has every count', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const env = [
      '-e',
      `TALLY_PORT=${port}`,
      '-e',
      `TALLY_ADMIN_TOKEN=${ADMIN_TOKEN}`,
      // Long enough that the increments are still in memory when SIGTERM comes: the drain
      // must store them.
      '-e',
      'TALLY_FLUSH_INTERVAL_MS=30000',
    ];
    const first = await podman(['run', '-d', ...RUN, ...env, '-v', `${volume}:/data`, IMAGE]);
    containers.push(first);
    await waitReady(url);
    expect((await fetch(`${url}/`)).status).toBe(200);

    // From inside the container: /readyz, the click page and the image's health check.
    const probe = (path: string) =>
      `fetch('http://127.0.0.1:${port}${path}').then(r=>console.log(r.status))`;
    expect(await podman(['exec', first, 'node', '-e', probe('/readyz')])).toBe('200');
    expect(await podman(['exec', first, 'node', '-e', probe('/')])).toBe('200');
    expect(await podmanCode(['healthcheck', 'run', first])).toBe(0);

    let expected = 0;
    for (let i = 0; i < 40; i++) {
      const res = await fetch(`${url}/api/v1/counters/container/increment`, { method: 'POST' });
      expect(res.status).toBe(202);
      expected++;
    }
    const batch = await fetch(`${url}/api/v1/increments`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` },
      body: JSON.stringify({ increments: [{ name: 'container', by: 960 }] }),
    });
    expect(batch.status).toBe(202);
    expected += 960;

    // docs/self-host.md's backup, taken from inside the running container.
    expect(await podman(['exec', first, 'tally', 'backup', '/data/backup.db'])).toMatch(
      /^\/data\/backup\.db: \d+ counters, \d+ bytes$/,
    );

    // The default stop timeout (10 s) before SIGKILL: the drain finishes well inside it.
    const stopping = Date.now();
    await podman(['stop', '-t', '10', first]);
    const stopMs = Date.now() - stopping;
    expect(stopMs).toBeLessThan(10_000);
    const state = JSON.parse(await podman(['inspect', first, '--format', '{{json .State}}'])) as {
      ExitCode: number;
    };
    expect(state.ExitCode).toBe(0);
    const logs = await logsOf(first);
    expect(logs).toContain('"drained":true');

    const second = await podman(['run', '-d', ...RUN, ...env, '-v', `${volume}:/data`, IMAGE]);
    containers.push(second);
    await waitReady(url);
    const read = await fetch(`${url}/api/v1/counters/container?consistency=strong`);
    expect(await read.json()).toEqual({ name: 'container', value: expected });
    // One data dir, one process: a second container on the same volume is refused.
    const other = ['-e', `TALLY_PORT=${await freePort()}`];
    const third = await podman(['run', '-d', ...RUN, ...other, '-v', `${volume}:/data`, IMAGE]);
    containers.push(third);
    await podman(['wait', third], 60_000);
    const refused = JSON.parse(await podman(['inspect', third, '--format', '{{json .State}}'])) as {
      ExitCode: number;
    };
    expect(refused.ExitCode).not.toBe(0);
    expect(await logsOf(third)).toMatch(/data directory \/data is in use/);
    await podman(['stop', '-t', '10', second]);
  }, 180_000);

  it("runs compose.yaml's redis profile: two containers share one Redis", async () => {
    const compose = parse(readFileSync(join(REPO, 'compose.yaml'), 'utf8')) as {
      services: Record<
        string,
        {
          profiles?: string[];
          command?: string[];
          environment?: Record<string, string>;
          build?: unknown;
        }
      >;
    };
    const { redis: redisService, 'tally-a': a, 'tally-b': b } = compose.services;
    expect(compose.services.tally?.profiles).toBeUndefined();
    // Docker looks for `Dockerfile` unless told: every Tally service names the Containerfile.
    for (const name of ['tally', 'tally-a', 'tally-b']) {
      expect(compose.services[name]?.build, name).toEqual({
        context: '.',
        dockerfile: 'Containerfile',
      });
    }
    for (const s of [redisService, a, b]) expect(s?.profiles).toEqual(['redis']);
    const args = redisService?.command ?? [];
    expect(args.slice(0, 1)).toEqual(['redis-server']);
    expect(args.join(' ')).toContain('--maxmemory-policy noeviction');
    expect(args.join(' ')).toContain('--appendonly yes');
    // The compose file's Redis, as a process of this test (no registry serves its image here);
    // the two Tally containers get the compose file's environment, Redis at its address here.
    const redis = await startRedis({ args: args.slice(1) });
    try {
      const urls: string[] = [];
      for (const [i, service] of [a, b].entries()) {
        const port = await freePort();
        const env = Object.entries({
          ...(service?.environment ?? {}),
          TALLY_REDIS_URL: redis.url,
          TALLY_ADMIN_TOKEN: ADMIN_TOKEN,
          TALLY_PORT: String(port),
        }).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
        const vol = `${volume}-${i}`;
        await podman(['volume', 'create', vol]);
        volumes.push(vol);
        const id = await podman(['run', '-d', ...RUN, ...env, '-v', `${vol}:/data`, IMAGE]);
        containers.push(id);
        urls.push(`http://127.0.0.1:${port}`);
      }
      for (const url of urls) await waitReady(url);
      for (const url of urls) {
        for (let i = 0; i < 20; i++) {
          const res = await fetch(`${url}/api/v1/counters/shared/increment`, { method: 'POST' });
          expect(res.status).toBe(202);
        }
      }
      for (const url of urls) {
        const res = await fetch(`${url}/api/v1/counters/shared?consistency=strong`, {
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        });
        const reading = (await res.json()) as { value: number };
        // A strong read stores this instance's increments first; the other's are stored
        // within its flush interval.
        expect(reading.value).toBeGreaterThanOrEqual(20);
      }
      await expect
        .poll(async () => {
          const res = await fetch(`${urls[0]}/api/v1/counters/shared?consistency=strong`);
          return ((await res.json()) as { value: number }).value;
        })
        .toBe(40);
      const ready = (await (await fetch(`${urls[1]}/readyz`)).json()) as { store: string };
      expect(ready.store).toBe('redis');
    } finally {
      for (const c of containers.splice(0)) await podman(['rm', '-f', c]).catch(() => undefined);
      await redis.close();
    }
  }, 180_000);
});
