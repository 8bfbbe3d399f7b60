// The artifact that is deployed is the artifact that is tested: deploy/aws/assemble-revision.sh
// (what CodeBuild runs) turns the package `npm pack` makes into a revision in an empty directory,
// and that revision is started with the systemd unit's own command line. The revision the
// pipeline shipped before this test existed had no web pages and exited with ENOENT at start.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, REPO, runScript, tempDir, waitForStatus } from './helpers.js';

const dir = tempDir('artifact');
const revision = join(dir.path, 'revision');
let tally: ChildProcess | undefined;
let output = '';

beforeAll(async () => {
  const result = await runScript(
    'bash',
    [join(REPO, 'deploy/aws/assemble-revision.sh'), revision],
    {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? dir.path,
    },
    // npm ci builds better-sqlite3 from source: about a minute, more on a busy machine.
    280_000,
  );
  if (result.code !== 0)
    throw new Error(`assemble-revision failed\n${result.stdout}\n${result.stderr}`);
}, 300_000);

afterAll(() => {
  tally?.kill('SIGKILL');
  dir.remove();
});

describe('the deployed revision', () => {
  it('holds the package and what CodeDeploy needs, and nothing of the checkout besides', () => {
    for (const file of [
      'appspec.yml',
      'package.json',
      'dist/main.js',
      'dist/web/counter.html',
      'dist/web/tally.css',
      'deploy/systemd/tally.service',
      'deploy/systemd/tally-lifecycle.service',
      'deploy/codedeploy/scripts/after-install.sh',
      'node_modules/better-sqlite3/package.json',
    ]) {
      expect(existsSync(join(revision, file)), file).toBe(true);
    }
    for (const script of [
      'deploy/codedeploy/scripts/after-install.sh',
      'deploy/ec2/tally-lifecycle.sh',
    ]) {
      expect(statSync(join(revision, script)).mode & 0o111, script).not.toBe(0);
    }
    for (const absent of ['src', 'test', 'bench', 'node_modules/vitest', 'dist/.tsbuildinfo']) {
      expect(existsSync(join(revision, absent)), absent).toBe(false);
    }
  });

  it('starts with the systemd unit command line and serves the API and the click page', async () => {
    const unit = readFileSync(join(REPO, 'deploy/systemd/tally.service'), 'utf8');
    const execStart = /^ExecStart=(.+)$/m.exec(unit)?.[1] ?? '';
    expect(execStart).toBe('/usr/bin/node /opt/tally/current/dist/main.js serve');
    // The unit's line, with the release directory where this revision is and this machine's node.
    const [node, ...args] = execStart.replaceAll('/opt/tally/current', revision).split(' ');
    expect(node).toBe('/usr/bin/node');
    const port = await freePort();
    tally = spawn(existsSync(node as string) ? (node as string) : process.execPath, args, {
      cwd: dir.path,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        NODE_ENV: 'production',
        TALLY_HOST: '127.0.0.1',
        TALLY_PORT: String(port),
        TALLY_DATA_DIR: join(dir.path, 'data'),
        TALLY_LOG_DIR: join(dir.path, 'log'),
      },
    });
    tally.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    tally.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    const url = `http://127.0.0.1:${port}`;
    expect(await waitForStatus(`${url}/readyz`, 200, 30_000), output).toBe(200);

    const inc = await fetch(`${url}/api/v1/counters/shipped/increment`, { method: 'POST' });
    expect(inc.status).toBe(202);
    const read = await fetch(`${url}/api/v1/counters/shipped?consistency=strong`);
    expect(await read.json()).toEqual({ name: 'shipped', value: 1 });

    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(await page.text()).toContain('/assets/counter.js');
    expect((await fetch(`${url}/assets/counter.js`)).status).toBe(200);
    expect((await fetch(`${url}/assets/tally.css`)).status).toBe(200);

    tally.kill('SIGTERM');
    const code = await new Promise<number | null>((done) => tally?.once('exit', done));
    expect(code, output).toBe(0);
  });
});
