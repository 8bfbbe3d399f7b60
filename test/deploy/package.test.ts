// The package as a user installs it: `npm pack` makes the tarball, `npm install ./tally-….tgz`
// puts it into an empty folder (and `npm install -g` into a prefix of its own), and what was
// installed runs: `tally --version`, `tally serve` with the API, the pages and the chart's
// library, the CLI against that server, and the typed client imported as `tally-counter/client`. Installing must not warn about engines: every
// dependency runs on the Node.js the package says it needs.
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, REPO, tempDir, waitForStatus } from './helpers.js';

const dir = tempDir('package');
const local = join(dir.path, 'app');
const global = join(dir.path, 'global');
const servers: ChildProcess[] = [];
let tarball = '';
const installLogs: string[] = [];

function run(
  file: string,
  args: string[],
  options: { cwd?: string; timeoutMs?: number } = {},
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: options.cwd ?? REPO,
      env: userEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/** The environment a user's shell has (certificates, proxies), without this test run's npm_*. */
function userEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.toLowerCase().startsWith('npm_') && !k.startsWith('TALLY_')) env[k] = v;
  }
  return env;
}

beforeAll(async () => {
  const packed = await run('npm', ['pack', '--pack-destination', dir.path]);
  expect(packed.code, packed.out).toBe(0);
  const file = readdirSync(dir.path).find((f) => f.endsWith('.tgz'));
  if (file === undefined) throw new Error(`npm pack made no tarball\n${packed.out}`);
  tarball = join(dir.path, file);
  // Both installs build better-sqlite3 from source (no binary downloads): minutes on a busy
  // machine.
  for (const args of [
    ['install', '--prefix', local, tarball],
    ['install', '-g', '--prefix', global, tarball],
  ]) {
    const installed = await run('npm', [...args, '--prefer-offline', '--no-audit', '--no-fund'], {
      cwd: dir.path,
      timeoutMs: 420_000,
    });
    installLogs.push(installed.out);
    if (installed.code !== 0) throw new Error(`npm ${args.join(' ')} failed\n${installed.out}`);
  }
}, 900_000);

afterAll(() => {
  for (const s of servers) s.kill('SIGKILL');
  dir.remove();
});

async function serveFrom(bin: string): Promise<string> {
  const port = await freePort();
  const server = spawn(bin, ['serve', '--workers', '1'], {
    cwd: dir.path,
    env: {
      ...userEnv(),
      TALLY_PORT: String(port),
      TALLY_DATA_DIR: join(dir.path, `data-${port}`),
      TALLY_SQLITE_PATH: join(dir.path, `data-${port}`, 'tally.db'),
      TALLY_LOG_FILES: 'false',
    },
  });
  servers.push(server);
  let output = '';
  server.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  server.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  expect(await waitForStatus(`${url}/readyz`, 200, 30_000), output).toBe(200);
  return url;
}

describe('the npm package', () => {
  it('is named to be published and says which Node.js it needs', () => {
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8'));
    expect(pkg.private).toBeUndefined();
    expect(pkg.name).toBe('tally-counter');
    expect(tarball.endsWith(`tally-counter-${pkg.version}.tgz`)).toBe(true);
    for (const log of installLogs) expect(log).not.toMatch(/EBADENGINE/);
  });

  it('runs from a folder it was installed into: version, server, pages, CLI', async () => {
    const bin = join(local, 'node_modules/.bin/tally');
    const version = await run(bin, ['--version']);
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8'));
    expect(version).toEqual({ code: 0, out: `${pkg.version}\n` });
    const url = await serveFrom(bin);
    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    const html = await page.text();
    for (const asset of ['counter.js', 'chart.js', 'client.js', 'uplot.js', 'uplot.css']) {
      // chart.js and client.js are imported by counter.js, not linked by the page.
      const imported = asset === 'chart.js' || asset === 'client.js';
      expect(html.includes(`/assets/${asset}`) || imported, asset).toBe(true);
      expect((await fetch(`${url}/assets/${asset}`)).status, asset).toBe(200);
    }
    // The API reference: the document and its page.
    const openapi = await fetch(`${url}/openapi.json`);
    expect(openapi.status).toBe(200);
    expect(((await openapi.json()) as { openapi: string }).openapi).toBe('3.1.0');
    expect((await fetch(`${url}/docs`)).status).toBe(200);
    const inc = await run(bin, ['inc', 'installed', '3', '--url', url, '--strong']);
    expect(inc, inc.out).toEqual({ code: 0, out: '3\n' });
    const get = await run(bin, ['get', 'installed', '--url', url, '--strong']);
    expect(get).toEqual({ code: 0, out: '3\n' });
    // The typed client, imported by its package name from the folder it was installed into.
    const script = join(local, 'use-client.mjs');
    writeFileSync(
      script,
      `import { TallyClient } from 'tally-counter/client';
const client = new TallyClient({ baseUrl: process.argv[2] });
await client.increment('installed', 2, { consistency: 'strong' });
console.log((await client.get('installed', { consistency: 'strong' })).value);
`,
    );
    const used = await run(process.execPath, [script, url], { cwd: local });
    expect(used, used.out).toEqual({ code: 0, out: '5\n' });
    expect(
      readFileSync(join(local, 'node_modules/tally-counter/dist/client/index.d.ts'), 'utf8'),
    ).toContain('class TallyClient');
  });

  it('runs when installed globally', async () => {
    const bin = join(global, 'bin/tally');
    expect((await run(bin, ['--version'])).code).toBe(0);
    const url = await serveFrom(bin);
    const res = await fetch(`${url}/api/v1/counters/global/increment`, { method: 'POST' });
    expect(res.status).toBe(202);
  });
});
