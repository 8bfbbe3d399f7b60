/** @module cluster — `tally serve`: one process, or N workers sharing the port (node:cluster). */
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { ChangeBus } from './app.js';
import type { Config } from './config.js';
import { resolveInstanceId } from './instance.js';
import { runServer } from './server.js';

/** Env var that tells a forked process which worker it is (1-based); set by the primary only. */
const WORKER_ENV = 'TALLY_CLUSTER_WORKER';

/** Most worker restarts within {@link RESTART_WINDOW_MS} before the primary gives up. */
const MAX_RESTARTS = 5;
/** Window of the restart budget, in ms. */
const RESTART_WINDOW_MS = 60_000;
/** Grace after the drain timeout before a worker that ignores SIGTERM is killed, in ms. */
const KILL_GRACE_MS = 15_000;

/** Messages between primary and workers; `tally` tags them apart from anything else on IPC. */
type ClusterMessage =
  | { tally: 'ready'; url: string }
  | { tally: 'changes'; from: number; entries: [string, number][] };

/**
 * Serves with the configured number of processes. One process is plain `runServer`. With more,
 * the primary forks workers and supervises them; each worker is an independent instance (its own
 * aggregator, batch sequence `<id>-w<i>`, write-ahead log and log files under `<logDir>/w<i>`).
 */
export async function serve(config: Config): Promise<void> {
  if (cluster.isWorker) return runWorker(config);
  const workers = workerCount(config);
  if (workers === 1) {
    const { url } = await runServer(config);
    process.stdout.write(`Tally listening on ${url}\n`);
    return;
  }
  runPrimary(config, workers);
}

/** Processes to run: TALLY_WORKERS, 0 = one per core; memory store forces one. */
export function workerCount(config: Config): number {
  const wanted = config.workers === 0 ? availableParallelism() : config.workers;
  if (wanted > 1 && config.store === 'memory') {
    process.stderr.write(
      `tally: the memory store lives inside one process; running 1 worker instead of ${wanted}\n`,
    );
    return 1;
  }
  return wanted;
}

function runPrimary(config: Config, count: number): void {
  // Create the shared instance id before forking: workers would race to write the file.
  resolveInstanceId(config.dataDir, config.instanceId);

  const byIndex = new Map<number, Worker>();
  const urls = new Map<number, string>();
  const restarts: number[] = [];
  let announced = false;
  let stopping = false;
  let failed = false;

  const fork = (index: number) => {
    const worker = cluster.fork({ [WORKER_ENV]: String(index) });
    byIndex.set(index, worker);
    worker.on('message', (msg: ClusterMessage) => {
      if (msg?.tally === 'ready') {
        urls.set(index, msg.url);
        if (announced) process.stderr.write(`tally: worker ${index} is listening again\n`);
        if (!announced && urls.size === count) {
          announced = true;
          process.stdout.write(`Tally listening on ${msg.url} (${count} workers)\n`);
        }
      } else if (msg?.tally === 'changes') {
        for (const [i, other] of byIndex) if (i !== index && other.isConnected()) other.send(msg);
      }
    });
    worker.on('exit', (code, signal) => {
      if (byIndex.get(index) === worker) byIndex.delete(index);
      const wasReady = urls.delete(index);
      if (stopping) {
        // One still starting had acknowledged nothing; our signal may beat its handlers.
        if (code !== 0 && wasReady) failed = true;
        if (byIndex.size === 0) process.exit(failed ? 1 : 0);
        return;
      }
      const why = signal ?? `code ${code}`;
      if (!announced) {
        // A worker that cannot start (port taken, store unreachable config) will not start on retry.
        process.stderr.write(`tally: worker ${index} exited before listening (${why})\n`);
        stopAll('SIGTERM', true);
        return;
      }
      const now = Date.now();
      while (restarts.length > 0 && (restarts[0] ?? 0) < now - RESTART_WINDOW_MS) restarts.shift();
      if (restarts.length >= MAX_RESTARTS) {
        process.stderr.write(
          `tally: worker ${index} exited (${why}); ${MAX_RESTARTS} restarts in ${RESTART_WINDOW_MS / 1000} s, giving up\n`,
        );
        stopAll('SIGTERM', true);
        return;
      }
      restarts.push(now);
      process.stderr.write(`tally: worker ${index} exited (${why}); restarting it\n`);
      // Same index, same instance id: the new process continues the batch sequence and replays
      // the old one's write-ahead log.
      setTimeout(() => fork(index), 100 * restarts.length);
    });
  };

  const stopAll = (signal: NodeJS.Signals, failure: boolean) => {
    if (failure) failed = true;
    if (stopping) return;
    stopping = true;
    if (byIndex.size === 0) process.exit(failed ? 1 : 0);
    for (const worker of byIndex.values()) worker.process.kill(signal);
    setTimeout(() => {
      for (const worker of byIndex.values()) worker.process.kill('SIGKILL');
    }, config.drainTimeoutMs + KILL_GRACE_MS).unref();
  };

  // Kept installed: a second signal (Ctrl-C twice) must not kill the primary mid-drain, or the
  // workers would lose their IPC channel and exit without flushing.
  process.on('SIGTERM', () => stopAll('SIGTERM', false));
  process.on('SIGINT', () => stopAll('SIGINT', false));
  for (let i = 1; i <= count; i++) fork(i);
}

async function runWorker(config: Config): Promise<void> {
  const index = Number(process.env[WORKER_ENV] ?? '1');
  // Several processes appending to and rotating one file would clobber each other's rotations.
  const own: Config = Object.freeze({ ...config, logDir: join(config.logDir, `w${index}`) });
  // Redis stores already deliver every instance's changes (store.watch); the bus would repeat them.
  const bus = config.store === 'sqlite' ? ipcBus(index) : undefined;
  const { url } = await runServer(own, {
    instanceSuffix: `-w${index}`,
    ...(bus ? { bus } : {}),
  });
  // A signal sent to the whole process group (Ctrl-C, systemd's control-group kill) reaches a
  // worker twice, directly and forwarded; runServer handles the first, this absorbs the rest.
  const ignore = () => {};
  process.on('SIGTERM', ignore);
  process.on('SIGINT', ignore);
  process.send?.({ tally: 'ready', url } satisfies ClusterMessage);
}

/** Value changes to and from sibling workers, relayed by the primary over IPC. */
function ipcBus(index: number): ChangeBus {
  const listeners = new Set<(changes: ReadonlyMap<string, number>) => void>();
  process.on('message', (msg: ClusterMessage) => {
    if (msg?.tally !== 'changes' || msg.from === index) return;
    const changes = new Map(msg.entries);
    for (const listener of listeners) listener(changes);
  });
  return {
    publish(changes) {
      if (changes.size === 0 || process.send === undefined) return;
      process.send({
        tally: 'changes',
        from: index,
        entries: [...changes],
      } satisfies ClusterMessage);
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
