// A fake EC2 host in a temp directory: the hooks run against it with a stub systemctl on PATH.
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import {
  currentUserAndGroup,
  freePort,
  HOOKS,
  REPO,
  type RunResult,
  runScript,
  tempDir,
} from './helpers.js';

/** The five hooks of appspec.yml, by CodeDeploy event name. */
export const HOOK_SCRIPTS = {
  ApplicationStop: 'application-stop.sh',
  BeforeInstall: 'before-install.sh',
  AfterInstall: 'after-install.sh',
  ApplicationStart: 'application-start.sh',
  ValidateService: 'validate-service.sh',
} as const;

export type HookName = keyof typeof HOOK_SCRIPTS;

/** One fake host: its root, stub state and the port its Tally listens on. */
export class FakeHost {
  readonly root: string;
  readonly stubDir: string;
  readonly binDir: string;
  private readonly tmp: { path: string; remove(): void };

  private constructor(
    label: string,
    readonly port: number,
  ) {
    this.tmp = tempDir(label);
    this.root = join(this.tmp.path, 'root');
    this.stubDir = join(this.tmp.path, 'stub');
    this.binDir = join(this.tmp.path, 'bin');
    for (const d of [this.root, this.stubDir, this.binDir]) mkdirSync(d, { recursive: true });
    copyFileSync(join(REPO, 'test/deploy/fixtures/systemctl'), join(this.binDir, 'systemctl'));
    chmodSync(join(this.binDir, 'systemctl'), 0o755);
  }

  static async create(label: string): Promise<FakeHost> {
    return new FakeHost(label, await freePort());
  }

  /** Base URL of this host's Tally. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Environment every hook gets; `extra` wins. */
  env(extra: Record<string, string> = {}): Record<string, string> {
    const { user, group } = currentUserAndGroup();
    return {
      PATH: `${this.binDir}:${process.env.PATH ?? '/usr/bin:/bin'}`,
      HOME: this.tmp.path,
      TALLY_DEPLOY_ROOT: this.root,
      STUB_DIR: this.stubDir,
      TALLY_USER: user,
      TALLY_GROUP: group,
      ...extra,
    };
  }

  /** Runs one hook as CodeDeploy would (as root here, from the repository copy of the scripts). */
  hook(name: HookName, extra: Record<string, string> = {}): Promise<RunResult> {
    return runScript(
      join(HOOKS, HOOK_SCRIPTS[name]),
      [],
      this.env({ LIFECYCLE_EVENT: name, ...extra }),
    );
  }

  /**
   * Writes tally.env for a local Tally on this host's port, with the in-memory store (lines in
   * `extra` come last and win), the way the EC2 bootstrap would write it for Redis.
   */
  writeEnvFile(extra: string[] = []): string {
    const etc = join(this.root, 'etc/tally');
    mkdirSync(etc, { recursive: true });
    const file = join(etc, 'tally.env');
    const text = [
      '# test host',
      'TALLY_HOST=127.0.0.1',
      `TALLY_PORT=${this.port}`,
      'TALLY_STORE=memory',
      `TALLY_DATA_DIR=${join(this.root, 'var/lib/tally')}`,
      `TALLY_LOG_DIR=${join(this.root, 'var/log/tally')}`,
      'TALLY_DRAIN_TIMEOUT_MS=5000',
      ...extra,
      '',
    ].join('\n');
    writeFileSync(file, text, { mode: 0o640 });
    return text;
  }

  /**
   * Plays CodeDeploy's Install step: copies a revision bundle into the staging directory. The
   * bundle links dist/ and node_modules/ from this checkout (built by the global setup).
   */
  stageRevision(): void {
    const staging = join(this.root, 'opt/tally/staging');
    mkdirSync(join(staging, 'deploy'), { recursive: true });
    symlinkSync(join(REPO, 'dist'), join(staging, 'dist'));
    symlinkSync(join(REPO, 'node_modules'), join(staging, 'node_modules'));
    copyFileSync(join(REPO, 'package.json'), join(staging, 'package.json'));
    copyFileSync(join(REPO, 'deploy/codedeploy/appspec.yml'), join(staging, 'appspec.yml'));
    cpSync(join(REPO, 'deploy/systemd'), join(staging, 'deploy/systemd'), { recursive: true });
    cpSync(join(REPO, 'deploy/codedeploy'), join(staging, 'deploy/codedeploy'), {
      recursive: true,
    });
  }

  /** Target of /opt/tally/current, or undefined. */
  current(): string | undefined {
    const link = join(this.root, 'opt/tally/current');
    return existsSync(link) ? readlinkSync(link) : undefined;
  }

  /** Every systemctl call so far, one string per call. */
  calls(): string[] {
    const file = join(this.stubDir, 'calls.log');
    return existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n') : [];
  }

  /** Exit status of the last Tally the stub ran, once it has exited. */
  exitStatus(): string | undefined {
    const file = join(this.stubDir, 'exit-status');
    return existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
  }

  /** Output of the Tally processes the stub started. */
  serviceLog(): string {
    const file = join(this.stubDir, 'service.log');
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  }

  /** Kills a Tally the stub left running and removes the whole host. */
  destroy(): void {
    const pidFile = join(this.stubDir, 'pid');
    if (existsSync(pidFile)) {
      const pid = Number(readFileSync(pidFile, 'utf8').trim());
      if (pid > 0) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }
    this.tmp.remove();
  }
}
