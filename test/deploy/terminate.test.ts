// The termination guard (deploy/ec2/tally-lifecycle.sh) run for real: a fake host whose Tally
// (installed by the CodeDeploy hooks, run by the stub systemctl) holds acknowledged increments in
// its log while Redis is down, a fake instance metadata service that says the Auto Scaling group
// is terminating the instance, and the stub AWS CLI recording the lifecycle calls. The guard must
// keep the instance (heartbeats, no completion) until Redis is back and the log is empty.
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { FakeHost, type HookName } from './fake-host.js';
import { freePort, REPO, requireTool, runScript, waitForStatus } from './helpers.js';

const GUARD = join(REPO, 'deploy/ec2/tally-lifecycle.sh');
const cleanups: Array<() => Promise<void> | void> = [];

beforeAll(() => {
  requireTool('curl', 'curl');
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** IMDSv2 as the guard reads it; `state` is the group's target lifecycle state. */
async function fakeMetadata(): Promise<{ url: string; state: { value: string } }> {
  const state = { value: 'InService' };
  const answers: Record<string, () => string> = {
    '/latest/meta-data/instance-id': () => 'i-0123456789abcdef0',
    '/latest/meta-data/placement/region': () => 'eu-west-1',
    '/latest/meta-data/tags/instance/aws:autoscaling:groupName': () => 'Tally-Asg-TEST',
    '/latest/meta-data/autoscaling/target-lifecycle-state': () => state.value,
  };
  const server: Server = createServer((req, res) => {
    if (req.method === 'PUT' && req.url === '/latest/api/token') {
      res.end('token-1');
      return;
    }
    const answer = answers[req.url ?? ''];
    if (req.headers['x-aws-ec2-metadata-token'] !== 'token-1' || answer === undefined) {
      res.statusCode = req.headers['x-aws-ec2-metadata-token'] === undefined ? 401 : 404;
      res.end();
      return;
    }
    res.end(answer());
  });
  const port = await freePort();
  await new Promise<void>((done) => server.listen(port, '127.0.0.1', done));
  cleanups.push(() => new Promise<void>((done) => server.close(() => done())));
  return { url: `http://127.0.0.1:${port}`, state };
}

async function ok(host: FakeHost, name: HookName, env: Record<string, string> = {}) {
  const result = await host.hook(name, env);
  if (result.code !== 0) throw new Error(`${name}: ${result.stdout}\n${result.stderr}`);
}

function awsCalls(host: FakeHost): string[] {
  const file = join(host.stubDir, 'aws-calls.log');
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
}

function segments(host: FakeHost): string[] {
  const wal = join(host.root, 'var/lib/tally/wal');
  if (!existsSync(wal)) return [];
  return readdirSync(wal, { recursive: true, encoding: 'utf8' }).filter((f) =>
    /segment-\d+\.log$/.test(f),
  );
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function increment(host: FakeHost, times: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < times; i++) {
    const res = await fetch(`${host.url}/api/v1/counters/guarded/increment`, { method: 'POST' });
    statuses.push(res.status);
  }
  return statuses;
}

describe('termination guard', () => {
  it('holds a terminating instance while Redis is down, then drains the log and completes', async () => {
    // Persistent, so what Redis held before the outage is still there after it.
    const redis: RedisServer = await startRedis({ persistent: true });
    cleanups.push(() => redis.close());
    const host = await FakeHost.create('terminate');
    cleanups.push(() => host.destroy());
    copyFileSync(join(REPO, 'test/deploy/fixtures/aws'), join(host.binDir, 'aws'));
    chmodSync(join(host.binDir, 'aws'), 0o755);
    host.writeEnvFile([
      'TALLY_STORE=redis',
      `TALLY_REDIS_URL=${redis.url}`,
      'TALLY_FLUSH_INTERVAL_MS=100',
      'TALLY_WORKERS=1',
    ]);
    await ok(host, 'BeforeInstall');
    host.stageRevision();
    await ok(host, 'AfterInstall', { DEPLOYMENT_ID: 'd-1' });
    await ok(host, 'ApplicationStart');
    expect(await waitForStatus(`${host.url}/readyz`, 200)).toBe(200);

    const imds = await fakeMetadata();
    const guardEnv = host.env({
      TALLY_IMDS_URL: imds.url,
      TALLY_LIFECYCLE_POLL_S: '0.2',
      TALLY_LIFECYCLE_HEARTBEAT_S: '1',
    });
    const guard: ChildProcess = spawn('bash', [GUARD, 'watch'], { env: guardEnv });
    let guardOutput = '';
    guard.stdout?.on('data', (d: Buffer) => (guardOutput += d.toString()));
    guard.stderr?.on('data', (d: Buffer) => (guardOutput += d.toString()));
    const guardExit = new Promise<number | null>((done) => guard.once('exit', done));
    cleanups.push(() => void guard.kill('SIGKILL'));

    // 30 increments reach Redis; then Redis goes down and 20 more are acknowledged into the log.
    expect(await increment(host, 30)).toEqual(Array(30).fill(202));
    const admin = new Redis(redis.port, '127.0.0.1', {
      lazyConnect: true,
      maxRetriesPerRequest: 1,
    });
    cleanups.push(() => void admin.disconnect());
    await until('30 in Redis', async () => Number(await admin.get('tally:c:guarded')) === 30);
    admin.disconnect();
    await redis.stop('SIGKILL');
    expect(await increment(host, 20)).toEqual(Array(20).fill(202));
    expect(segments(host).length).toBeGreaterThan(0);

    // In service, the guard does nothing.
    await new Promise((r) => setTimeout(r, 1000));
    expect(awsCalls(host)).toEqual([]);

    // Scale-in: the group terminates the instance. CodeDeploy's own termination hook stops
    // tally.service, whose final flush fails with Redis down: it exits with the log left.
    imds.state.value = 'Terminated';
    const stop = await runScript(
      join(host.binDir, 'systemctl'),
      ['stop', 'tally.service'],
      host.env(),
    );
    expect(stop.code).toBe(0);
    expect(segments(host).length).toBeGreaterThan(0);

    // The guard starts Tally again and keeps the hook alive, without completing it.
    await until('the guard starting tally.service again', () =>
      host.calls().includes('start tally.service'),
    );
    const beats = () =>
      awsCalls(host).filter((c) => c.includes('record-lifecycle-action-heartbeat')).length;
    const before = beats();
    await until('two more heartbeats', () => beats() >= before + 2);
    expect(awsCalls(host).some((c) => c.includes('complete-lifecycle-action'))).toBe(false);
    expect(segments(host).length).toBeGreaterThan(0);

    // Redis comes back: the restarted Tally replays its log, the guard stops it, finds the log
    // empty and completes the hook.
    await redis.start();
    const code = await Promise.race([
      guardExit,
      new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 60_000)),
    ]);
    expect(code, guardOutput).toBe(0);
    const calls = awsCalls(host);
    const complete = calls.findIndex((c) => c.includes('complete-lifecycle-action'));
    expect(complete, calls.join('\n')).toBe(calls.length - 1);
    expect(calls[complete]).toContain('--lifecycle-action-result CONTINUE');
    expect(calls[complete]).toContain('--lifecycle-hook-name tally-drain');
    expect(calls[complete]).toContain('--auto-scaling-group-name Tally-Asg-TEST');
    expect(calls[complete]).toContain('--instance-id i-0123456789abcdef0');
    expect(calls[complete]).toContain('--region eu-west-1');

    expect(segments(host)).toEqual([]);
    expect(host.exitStatus()).toBe('0');
    const after = new Redis(redis.port, '127.0.0.1');
    cleanups.push(() => void after.disconnect());
    expect(Number(await after.get('tally:c:guarded'))).toBe(50);
  }, 120_000);
});
