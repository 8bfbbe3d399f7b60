// Helpers for the deploy tests: run shell scripts, find free ports, probe HTTP, require tools.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../tools/free-port.js';

export { freePort };

/** Repository root. */
export const REPO = fileURLToPath(new URL('../..', import.meta.url));
/** The CodeDeploy hook scripts. */
export const HOOKS = join(REPO, 'deploy/codedeploy/scripts');

/** Outcome of {@link runScript}. */
export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Wall time, milliseconds. */
  readonly ms: number;
}

/** Runs a program with a clean-ish environment and collects its output; never throws on exit. */
export function runScript(
  file: string,
  args: string[],
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<RunResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** HTTP status of a GET, or 0 when nothing answers. */
export function httpStatus(url: string, timeoutMs = 1000): Promise<number> {
  return new Promise((resolve) => {
    const req = request(url, { timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

/** Polls until `url` answers `status` or `timeoutMs` passes; returns the last status seen. */
export async function waitForStatus(url: string, status: number, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  let last = 0;
  while (Date.now() < deadline) {
    last = await httpStatus(url);
    if (last === status) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  return last;
}

/** A temporary directory, removed by `remove()`. */
export function tempDir(label: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), `tally-${label}-`));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/**
 * Path of a required Debian tool. Missing tools fail the test (never skip it) with the command
 * that installs them; .ci/run installs them on CI.
 */
export function requireTool(name: string, debianPackage: string): string {
  try {
    return execFileSync('bash', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(
      `${name} is not installed; install it with: apt-get update && apt-get install -y ${debianPackage}`,
    );
  }
}

/** Name of the current user and group (the hooks chown to them instead of `tally`). */
export function currentUserAndGroup(): { user: string; group: string } {
  return {
    user: execFileSync('id', ['-un'], { encoding: 'utf8' }).trim(),
    group: execFileSync('id', ['-gn'], { encoding: 'utf8' }).trim(),
  };
}
