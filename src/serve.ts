/** @module serve — `tally serve`: one process, or N workers sharing the port (node:cluster). */
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Config } from './config.js';
import { StartRefusedError } from './errors.js';
import { resolveInstanceId } from './instance.js';
import type { SiblingBus } from './live/bus.js';
import { lockDirectory } from './lock.js';
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
  | { tally: 'changes'; from: number; entries: [string, number][] }
  // A worker asks for its siblings to flush (to the primary) …
  | { tally: 'flush'; id: number }
  // … the primary asks each sibling, which answers; then the primary answers the asker.
  | { tally: 'flush-request'; key: string }
  | { tally: 'flush-done'; key: string; error?: string }
  | { tally: 'flushed'; id: number; error?: string }
  // A worker asks its siblings a question (their unsent delta of a counter, their metrics) …
  | { tally: 'ask'; id: number; question: Question }
  // … the primary asks each sibling and answers the asker with what came back in time.
  | { tally: 'ask-request'; key: string; question: Question }
  | { tally: 'ask-done'; key: string; answer: unknown }
  // `complete`: every sibling answered in time.
  | { tally: 'ask-answers'; id: number; answers: unknown[]; complete: boolean };

/** What one worker may ask its siblings. */
type Question = { what: 'unsent'; name: string } | { what: 'metrics' };

/** Locks this process holds for its lifetime (kept referenced). */
const heldLocks: Array<{ release(): void }> = [];

/** Longest a sibling flush may take before the asker gets an error, in ms. */
const FLUSH_TIMEOUT_MS = 10_000;
/** Longest a question waits for siblings' answers; late ones are left out. */
const ASK_TIMEOUT_MS: Record<Question['what'], number> = { unsent: 500, metrics: 2000 };

/**
 * Serves with the configured number of processes. One process is plain `runServer`. With more,
 * the primary forks workers and supervises them; each worker is an independent instance (its own
 * aggregator, batch sequence `<id>-w<i>`, write-ahead log and log files under `<logDir>/w<i>`).
 */
export async function serve(config: Config): Promise<void> {
  if (cluster.isWorker) return runWorker(config);
  // One process per data dir, before any log in it is read: a second `tally serve` on the same
  // checkout must refuse to start, not replay (and delete) the running server's log. Held until
  // this process exits; the kernel drops it even on kill -9.
  heldLocks.push(lockDirectory(config.dataDir, 'data directory'));
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

  // Sibling flushes in progress, by `<asker>:<id>`.
  const flushes = new Map<
    string,
    { asker: number; id: number; waiting: Set<number>; error?: string; timer: NodeJS.Timeout }
  >();
  const endFlush = (key: string) => {
    const flush = flushes.get(key);
    if (flush === undefined || flush.waiting.size > 0) return;
    flushes.delete(key);
    clearTimeout(flush.timer);
    const asker = byIndex.get(flush.asker);
    if (asker?.isConnected()) {
      asker.send({
        tally: 'flushed',
        id: flush.id,
        ...(flush.error === undefined ? {} : { error: flush.error }),
      } satisfies ClusterMessage);
    }
  };
  const startFlush = (asker: number, id: number) => {
    const key = `${asker}:${id}`;
    const waiting = new Set<number>();
    for (const [i, worker] of byIndex) {
      if (i === asker || !worker.isConnected()) continue;
      waiting.add(i);
      worker.send({ tally: 'flush-request', key } satisfies ClusterMessage);
    }
    const timer = setTimeout(() => {
      const flush = flushes.get(key);
      if (flush === undefined) return;
      flush.error ??= `sibling flush timed out after ${FLUSH_TIMEOUT_MS} ms`;
      flush.waiting.clear();
      endFlush(key);
    }, FLUSH_TIMEOUT_MS);
    timer.unref();
    flushes.set(key, { asker, id, waiting, timer });
    endFlush(key);
  };

  // Questions in progress, by `<asker>:<id>`: answered with what came in time.
  const questions = new Map<
    string,
    { asker: number; id: number; waiting: Set<number>; answers: unknown[]; timer: NodeJS.Timeout }
  >();
  const endQuestion = (key: string, force = false) => {
    const q = questions.get(key);
    if (q === undefined || (q.waiting.size > 0 && !force)) return;
    questions.delete(key);
    clearTimeout(q.timer);
    const asker = byIndex.get(q.asker);
    if (asker?.isConnected()) {
      asker.send({
        tally: 'ask-answers',
        id: q.id,
        answers: q.answers,
        complete: q.waiting.size === 0,
      } satisfies ClusterMessage);
    }
  };
  const startQuestion = (asker: number, id: number, question: Question) => {
    const key = `${asker}:${id}`;
    const waiting = new Set<number>();
    for (const [i, worker] of byIndex) {
      if (i === asker || !worker.isConnected()) continue;
      waiting.add(i);
      worker.send({ tally: 'ask-request', key, question } satisfies ClusterMessage);
    }
    const timer = setTimeout(() => endQuestion(key, true), ASK_TIMEOUT_MS[question.what] ?? 200);
    timer.unref();
    questions.set(key, { asker, id, waiting, answers: [], timer });
    endQuestion(key);
  };

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
      } else if (msg?.tally === 'flush') {
        startFlush(index, msg.id);
      } else if (msg?.tally === 'ask') {
        startQuestion(index, msg.id, msg.question);
      } else if (msg?.tally === 'ask-done') {
        const q = questions.get(msg.key);
        if (q?.waiting.delete(index)) {
          q.answers.push(msg.answer);
          endQuestion(msg.key);
        }
      } else if (msg?.tally === 'flush-done') {
        const flush = flushes.get(msg.key);
        if (flush?.waiting.delete(index)) {
          if (msg.error !== undefined) flush.error ??= `worker ${index}: ${msg.error}`;
          endFlush(msg.key);
        }
      }
    });
    worker.on('exit', (code, signal) => {
      if (byIndex.get(index) === worker) byIndex.delete(index);
      // Its acknowledged increments are in its log, replayed when it restarts: not flushed now.
      for (const [key, flush] of flushes) {
        if (flush.waiting.delete(index)) {
          flush.error ??= `worker ${index} exited before flushing`;
          endFlush(key);
        }
      }
      for (const [key, q] of questions) if (q.waiting.delete(index)) endQuestion(key);
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
  // Redis stores already deliver every instance's changes (store.watch); relaying them too would
  // repeat them. Sibling flushes go over IPC either way.
  const bus = ipcBus(index, config.store === 'sqlite');
  // Worker 1 replays logs left by instance ids this run does not use (e.g. more workers before).
  const count = workerCount(config);
  let url: string;
  try {
    ({ url } = await runServer(own, {
      instanceSuffix: `-w${index}`,
      bus,
      liveSuffixes: index === 1 ? Array.from({ length: count }, (_, i) => `-w${i + 1}`) : false,
    }));
  } catch (err) {
    if (err instanceof StartRefusedError) {
      process.stderr.write(`tally: worker ${index}: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  // A signal sent to the whole process group (Ctrl-C, systemd's control-group kill) reaches a
  // worker twice, directly and forwarded; runServer handles the first, this absorbs the rest.
  const ignore = () => {};
  process.on('SIGTERM', ignore);
  process.on('SIGINT', ignore);
  process.send?.({ tally: 'ready', url } satisfies ClusterMessage);
}

/**
 * The worker's side of IPC: value changes to and from siblings (when `relay`), and sibling
 * flushes, both through the primary.
 */
function ipcBus(index: number, relay: boolean): SiblingBus {
  const listeners = new Set<(changes: ReadonlyMap<string, number>) => void>();
  // Open flush requests: each settles once, with the primary's answer or an error.
  const asked = new Map<number, (err?: Error) => void>();
  let nextId = 0;
  let flushSelf: (() => Promise<void>) | undefined;
  let unsentSelf: ((name: string) => number | null) | undefined;
  let metricsSelf: (() => Promise<unknown>) | undefined;
  const questions = new Map<number, (answers: unknown[], complete: boolean) => void>();
  const answer = async (question: Question): Promise<unknown> => {
    // null: a batch carrying the counter is in flight (see siblingsUnsent).
    if (question.what === 'unsent') return unsentSelf === undefined ? 0 : unsentSelf(question.name);
    return metricsSelf === undefined ? [] : await metricsSelf();
  };
  /** Asks every sibling; resolves with the answers that came in time (none without siblings). */
  const ask = (question: Question): Promise<{ answers: unknown[]; complete: boolean }> =>
    new Promise((resolve) => {
      const id = ++nextId;
      const settle = (answers: unknown[], complete: boolean) => {
        clearTimeout(timer);
        questions.delete(id);
        resolve({ answers, complete });
      };
      // The primary answers within ASK_TIMEOUT_MS; this only covers a primary gone quiet.
      const timer = setTimeout(() => settle([], false), ASK_TIMEOUT_MS[question.what] + 300);
      questions.set(id, settle);
      // No primary: a lone process has no siblings, so nothing is missing.
      if (!send({ tally: 'ask', id, question })) settle([], true);
    });
  const send = (msg: ClusterMessage): boolean => {
    if (process.send === undefined || !process.connected) return false;
    process.send(msg, undefined, undefined, () => undefined);
    return true;
  };
  process.on('message', (msg: ClusterMessage) => {
    if (msg?.tally === 'changes') {
      if (msg.from === index) return;
      const changes = new Map(msg.entries);
      for (const listener of listeners) listener(changes);
    } else if (msg?.tally === 'flush-request') {
      const done = (error?: string) =>
        send({ tally: 'flush-done', key: msg.key, ...(error === undefined ? {} : { error }) });
      (flushSelf?.() ?? Promise.resolve()).then(
        () => done(),
        (err: unknown) => done(err instanceof Error ? err.message : String(err)),
      );
    } else if (msg?.tally === 'flushed') {
      asked.get(msg.id)?.(msg.error === undefined ? undefined : new Error(msg.error));
    } else if (msg?.tally === 'ask-request') {
      answer(msg.question).then(
        (a) => send({ tally: 'ask-done', key: msg.key, answer: a }),
        () => send({ tally: 'ask-done', key: msg.key, answer: null }),
      );
    } else if (msg?.tally === 'ask-answers') {
      questions.get(msg.id)?.(msg.answers, msg.complete);
    }
  });
  return {
    publish(changes) {
      if (!relay || changes.size === 0) return;
      send({ tally: 'changes', from: index, entries: [...changes] });
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    flushSiblings() {
      return new Promise<void>((resolve, reject) => {
        const id = ++nextId;
        const settle = (err?: Error) => {
          clearTimeout(timer);
          asked.delete(id);
          if (err === undefined) resolve();
          else reject(err);
        };
        const timer = setTimeout(
          () => settle(new Error('sibling workers did not answer a flush')),
          FLUSH_TIMEOUT_MS + 1000,
        );
        asked.set(id, settle);
        if (!send({ tally: 'flush', id })) settle(new Error('primary is gone'));
      });
    },
    serveFlush(flush) {
      flushSelf = flush;
      return () => {
        flushSelf = undefined;
      };
    },
    async siblingsUnsent(name) {
      const asked = await ask({ what: 'unsent', name });
      let complete = asked.complete;
      let sum = 0;
      for (const a of asked.answers) {
        if (Number.isSafeInteger(a)) sum += a as number;
        else complete = false;
      }
      return { sum, complete };
    },
    async siblingMetrics() {
      return (await ask({ what: 'metrics' })).answers.filter(Array.isArray);
    },
    serveMetrics(metrics) {
      metricsSelf = metrics;
      return () => {
        metricsSelf = undefined;
      };
    },
    serveUnsent(unsent) {
      unsentSelf = unsent;
      return () => {
        unsentSelf = undefined;
      };
    },
  };
}
