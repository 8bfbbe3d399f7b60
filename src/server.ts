/** @module server — runs one Tally instance: listen, print the URL, drain on SIGTERM/SIGINT. */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { buildApp, type Tally } from './app.js';
import type { Config } from './config.js';
import { StartRefusedError } from './errors.js';
import { resolveInstanceId } from './instance.js';
import type { SiblingBus } from './live/bus.js';
import { createLogger, type Logger } from './obs/logger.js';
import { createStore } from './store/index.js';
import type { Store } from './store/interface.js';
import { backoffMs, sleep } from './util/retry.js';

/** Options for {@link runServer}. */
export interface RunOptions {
  /** Appended to the instance id (cluster workers use `-w1`, `-w2`, …). @default '' */
  readonly instanceSuffix?: string;
  /** Install SIGTERM/SIGINT handlers that drain and exit. @default true */
  readonly handleSignals?: boolean;
  /** Sibling processes' value changes (cluster workers); passed to buildApp. @default none */
  readonly bus?: SiblingBus;
  /**
   * Instance id suffixes of every process in this run, to replay logs left by any other id;
   * `false` leaves them to another process. @default [this process's suffix]
   */
  readonly liveSuffixes?: readonly string[] | false;
}

/** Starts serving; resolves once listening, with the instance and its URL. */
export async function runServer(
  config: Config,
  options: RunOptions = {},
): Promise<{ tally: Tally; url: string }> {
  const log = createLogger({
    level: config.logLevel,
    dir: config.logFiles ? config.logDir : undefined,
    maxBytes: config.logMaxBytes,
    keep: config.logKeepFiles,
  });
  const logger = log.logger;
  const handleSignals = options.handleSignals ?? true;
  // Until the server listens, SIGTERM and SIGINT end the start at once: nothing has been
  // acknowledged yet, and what the write-ahead log holds is replayed by the next start. Without a
  // handler, a container's PID 1 ignores them (the kernel's rule for init), and a start waiting
  // for its store would sit out the stop timeout until SIGKILL.
  const early = (signal: NodeJS.Signals) => {
    logger.info({ event: 'stopping', signal }, 'stopping before the start completed');
    log.close();
    setTimeout(() => process.exit(signal === 'SIGINT' ? 130 : 143), 50).unref();
  };
  if (handleSignals) {
    process.once('SIGTERM', early);
    process.once('SIGINT', early);
  }
  const base = resolveInstanceId(config.dataDir, config.instanceId);
  const instanceId = base + (options.instanceSuffix ?? '');
  const store = await openStore(config, logger);
  const suffixes = options.liveSuffixes ?? [options.instanceSuffix ?? ''];
  const tally = await buildApp(config, {
    store,
    logger,
    instanceId,
    ...(options.bus ? { bus: options.bus } : {}),
    ...(suffixes === false ? {} : { liveInstanceIds: suffixes.map((s) => base + s) }),
  });
  const address = await tally.app.listen({ port: config.port, host: config.host });
  const url = address.replace('[::1]', 'localhost');
  logger.info(
    { event: 'listening', url, store: store.kind, aggregator: config.aggregator, instanceId },
    `Tally listening on ${url}`,
  );

  if (handleSignals) {
    process.off('SIGTERM', early);
    process.off('SIGINT', early);
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ event: 'stopping', signal }, 'stopping: draining pending increments');
      let code = 0;
      try {
        const result = await tally.close();
        code = result.drained ? 0 : 1;
        logger.info(
          { event: 'stopped', drained: result.drained, unflushed: result.unflushed },
          'stopped',
        );
      } catch (err) {
        logger.error({ err }, 'error while stopping');
        code = 1;
      }
      log.close();
      // Give async stdout a moment to write the last lines.
      setTimeout(() => process.exit(code), 50).unref();
    };
    process.once('SIGTERM', () => void stop('SIGTERM'));
    process.once('SIGINT', () => void stop('SIGINT'));
    process.on('unhandledRejection', (err) => {
      logger.error({ err, event: 'unhandled_rejection' }, 'unhandled rejection');
    });
    process.on('uncaughtException', (err) => {
      logger.fatal({ err, event: 'uncaught_exception' }, 'uncaught exception; stopping');
      void stop('uncaughtException');
    });
  }
  return { tally, url };
}

/**
 * Opens the store. With acknowledged increments waiting in a log, an unreachable store is waited
 * out (with backoff, each attempt logged) instead of ending the start: exiting would hand the log
 * to a restart policy that may give up. Without a log, the start fails at once and says why. A
 * refusal (a Redis that evicts keys) is never retried.
 */
async function openStore(config: Config, logger: Logger): Promise<Store> {
  const waiting = config.wal && hasLogs(join(config.dataDir, 'wal'));
  for (let attempt = 1; ; attempt++) {
    try {
      return await createStore(config);
    } catch (err) {
      if (!waiting || err instanceof StartRefusedError) throw err;
      logger.error(
        { event: 'store_unreachable_at_start', err, attempt },
        'store unreachable; a write-ahead log waits to be replayed, retrying',
      );
      await sleep(backoffMs(attempt, 500, 30_000));
    }
  }
}

/** True when some log directory under `root` holds a segment file. */
function hasLogs(root: string): boolean {
  try {
    return readdirSync(root, { withFileTypes: true }).some(
      (d) =>
        d.isDirectory() && readdirSync(join(root, d.name)).some((f) => f.startsWith('segment-')),
    );
  } catch {
    return false;
  }
}
