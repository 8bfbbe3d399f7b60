/**
 * @module cli/ops — running Tally on one machine: `tally backup` (an online copy of the SQLite
 * file), `tally install-service` (the systemd unit and env file for this installation) and
 * `tally doctor` (what tests and a deployment need, and how to get what is missing).
 */
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readFileSync,
  statfsSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { probeSqlite } from '../store/sqlite/backup.js';

export { backupSqlite } from '../store/sqlite/backup.js';

/** Where `tally install-service` puts things, and as whom the service runs. */
export interface ServiceOptions {
  /** Prefix for every path written (tests, image builds); `/` on a real machine. */
  readonly root: string;
  readonly user: string;
  readonly dataDir: string;
  readonly logDir: string;
  /** The node binary and the installed `dist/main.js` the unit runs. */
  readonly node: string;
  readonly main: string;
}

/** The files `install-service` writes: the unit, from the package's own, and the env file. */
export function serviceFiles(o: ServiceOptions): Array<{ path: string; text: string }> {
  const template = readFileSync(
    fileURLToPath(new URL('../../deploy/systemd/tally.service', import.meta.url)),
    'utf8',
  );
  const unit = template
    .replace(
      /^# Tally counter service\..*\n# Layout.*\n/m,
      '# Tally counter service, written by `tally install-service`.\n',
    )
    .replace(
      /^Documentation=.*$/m,
      `Documentation=file://${join(dirname(dirname(o.main)), 'docs/self-host.md')}`,
    )
    .replace(/^User=.*$/m, `User=${o.user}`)
    .replace(/^Group=.*$/m, `Group=${o.user}`)
    .replace(/^WorkingDirectory=.*$/m, `WorkingDirectory=${o.dataDir}`)
    .replace(/^ExecStart=.*$/m, `ExecStart=${o.node} ${o.main} serve`)
    .replace(/^ReadWritePaths=.*$/m, `ReadWritePaths=${o.dataDir} ${o.logDir}`);
  const env = [
    '# Tally settings (README, Configuration). Read by tally.service; local.env overrides.',
    'TALLY_HOST=127.0.0.1',
    'TALLY_PORT=8080',
    `TALLY_DATA_DIR=${o.dataDir}`,
    `TALLY_SQLITE_PATH=${o.dataDir}/tally.db`,
    `TALLY_LOG_DIR=${o.logDir}`,
    '# Behind a reverse proxy on this host (docs/self-host.md): the proxy names the client.',
    'TALLY_TRUST_PROXY=127.0.0.1',
    '',
  ].join('\n');
  return [
    { path: join(o.root, 'etc/systemd/system/tally.service'), text: unit },
    { path: join(o.root, 'etc/tally/tally.env'), text: env },
  ];
}

/** Writes the service files (an existing env file is kept: it holds the operator's settings). */
export function installService(o: ServiceOptions): string[] {
  const written: string[] = [];
  for (const file of serviceFiles(o)) {
    if (file.path.endsWith('.env') && existsSync(file.path)) continue;
    mkdirSync(dirname(file.path), { recursive: true });
    writeFileSync(file.path, file.text, { mode: file.path.endsWith('.env') ? 0o640 : 0o644 });
    written.push(file.path);
  }
  return written;
}

/** One `tally doctor` finding. */
export interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
  /** What to do when it is not ok. */
  readonly fix?: string;
  /** Needed by `npm test` only (a server runs without it). */
  readonly forTests?: boolean;
}

const TOOLS: ReadonlyArray<{ bin: string; pkg: string; why: string; forTests: boolean }> = [
  {
    bin: 'redis-server',
    pkg: 'redis-server',
    why: 'Redis tests (and TALLY_STORE=redis on this host)',
    forTests: true,
  },
  { bin: 'chromium', pkg: 'chromium', why: 'browser tests', forTests: true },
  { bin: 'shellcheck', pkg: 'shellcheck', why: 'deploy script tests', forTests: true },
  {
    bin: 'systemd-analyze',
    pkg: 'systemd',
    why: 'systemd unit tests, install-service',
    forTests: true,
  },
  { bin: 'curl', pkg: 'curl', why: 'deploy hook tests', forTests: true },
  { bin: 'podman', pkg: 'podman', why: 'container image test', forTests: true },
  { bin: 'runc', pkg: 'runc', why: 'container image test (podman --runtime runc)', forTests: true },
  { bin: 'debootstrap', pkg: 'debootstrap', why: "container test's base image", forTests: true },
  { bin: 'dpkg-repack', pkg: 'dpkg-repack', why: "container test's base image", forTests: true },
];

/** The first executable `bin` on PATH, as a shell would find it. */
function onPath(bin: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir === '') continue;
    const path = join(dir, bin);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once('error', () => done(false));
    server.listen(port, host, () => server.close(() => done(true)));
  });
}

/** Checks what running and testing Tally here needs. */
export async function doctor(o: { host: string; port: number; dataDir: string }): Promise<Check[]> {
  const checks: Check[] = [];
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  checks.push({
    name: 'node',
    ok: major > 20 || (major === 20 && minor >= 11),
    detail: `Node.js ${process.versions.node}`,
    fix: 'install Node.js 20.11 or newer',
  });
  const sqlite = probeSqlite();
  if (sqlite === undefined) {
    checks.push({ name: 'better-sqlite3', ok: true, detail: 'native module loads' });
  } else {
    checks.push({
      name: 'better-sqlite3',
      ok: false,
      detail: sqlite,
      fix: 'reinstall with build tools present (apt-get install python3 make g++), then npm rebuild better-sqlite3',
    });
  }
  for (const tool of TOOLS) {
    const path = onPath(tool.bin);
    checks.push({
      name: tool.bin,
      ok: path !== undefined,
      detail: path ?? `not on PATH (${tool.why})`,
      fix: `apt-get install ${tool.pkg}`,
      forTests: tool.forTests,
    });
  }
  let target = resolve(o.dataDir);
  while (!existsSync(target) && dirname(target) !== target) target = dirname(target);
  const fs = statfsSync(target);
  const freeMb = Math.floor((fs.bavail * fs.bsize) / 1_048_576);
  checks.push({
    name: 'disk',
    ok: freeMb >= 512,
    detail: `${freeMb} MB free for ${resolve(o.dataDir)}`,
    fix: 'free some space: the SQLite file and the write-ahead log live in the data dir',
  });
  const free = await portFree(o.host, o.port);
  checks.push({
    name: 'port',
    ok: free,
    detail: free
      ? `${o.host}:${o.port} is free`
      : `${o.host}:${o.port} is taken (a Tally already running?)`,
    fix: 'stop what listens there, or set TALLY_PORT',
  });
  return checks;
}
