// Starts `node dist/main.js serve` as a real child process and stops it.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../tools/free-port.js';

export { freePort };

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const MAIN = `${ROOT}dist/main.js`;

export interface ServerProcess {
  readonly url: string;
  readonly child: ChildProcess;
  output(): string;
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Spawns a server and resolves once it printed its URL. */
export async function startServer(
  env: Record<string, string>,
  timeoutMs = 15_000,
): Promise<ServerProcess> {
  const port = env.TALLY_PORT ?? String(await freePort());
  const child = spawn(process.execPath, [MAIN, 'serve'], {
    cwd: ROOT,
    env: {
      ...process.env,
      TALLY_LOG_FILES: 'false',
      TALLY_LOG_LEVEL: 'warn',
      // One process unless a test asks for workers: tests signal and kill this pid.
      TALLY_WORKERS: '1',
      ...env,
      TALLY_PORT: port,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), timeoutMs);
    const onData = () => {
      const m = /Tally listening on (http:\/\/\S+)/.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${out}`));
    });
  });
  return {
    url,
    child,
    output: () => out,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      return exited;
    },
  };
}
