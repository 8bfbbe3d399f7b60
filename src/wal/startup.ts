/**
 * @module wal/startup — what a starting process does with logs before it serves: replays the
 * logs other instance ids left in the data dir, locks and replays its own, and opens it anew.
 */
import { join } from 'node:path';
import type { Config } from '../config.js';
import { DirectoryLockedError, type DirLock, lockDirectory } from '../lock.js';
import type { Logger } from '../obs/logger.js';
import type { Store } from '../store/interface.js';
import { untilDone } from '../util/retry.js';
import { adoptOrphanLogs, recoverLog } from './replay.js';
import { type WalFile, WriteAheadLog } from './wal.js';

/** Options for {@link openLog}. */
export interface OpenLogOptions {
  readonly config: Pick<Config, 'dataDir' | 'wal' | 'walFsync' | 'walSyncMs' | 'walSegmentBytes'>;
  readonly store: Store;
  readonly instanceId: string;
  /** This process's batch identity, written into every segment header. */
  readonly writerId: string;
  /** Instance ids running in this `tally serve`; when set, every other id's log is adopted. */
  readonly liveInstanceIds?: readonly string[] | undefined;
  readonly openFile?: ((path: string) => Promise<WalFile>) | undefined;
  readonly logger: Logger;
}

/** The opened log (undefined with `TALLY_WAL=false`) and the directory locks it holds. */
export interface OpenedLog {
  readonly wal: WriteAheadLog | undefined;
  readonly locks: DirLock[];
}

/**
 * Replays before serving, retrying while the store is down. Every directory is locked before it
 * is read, so a second process can never replay (and delete) a log a running one writes.
 */
export async function openLog(options: OpenLogOptions): Promise<OpenedLog> {
  const { config, store, instanceId, logger } = options;
  const locks: DirLock[] = [];
  try {
    if (options.liveInstanceIds !== undefined) {
      // With the log off, this run writes no log at all: every directory found is left over.
      const live = new Set(config.wal ? options.liveInstanceIds : []);
      const adopted = await untilDone(
        () => adoptOrphanLogs(join(config.dataDir, 'wal'), store, live, lockIfFree),
        (err, attempt) =>
          logger.error(
            { event: 'replay_failed', err, attempt },
            'leftover log replay failed; retrying',
          ),
      );
      for (const result of adopted) {
        logger.info(
          { event: 'log_adopted', ...result },
          `replayed the log left by ${result.instanceId}`,
        );
      }
    }
    if (!config.wal) return { wal: undefined, locks };
    const dir = join(config.dataDir, 'wal', instanceId);
    locks.push(lockDirectory(dir, `write-ahead log of ${instanceId}`));
    const recovery = await untilDone(
      () => recoverLog(dir, store, instanceId),
      (err, attempt) =>
        logger.error({ event: 'replay_failed', err, attempt }, 'log replay failed; retrying'),
    );
    if (recovery.segments > 0) {
      logger.info({ event: 'log_replayed', ...recovery }, 'write-ahead log replayed');
    }
    const wal = await WriteAheadLog.open({
      dir,
      fsync: config.walFsync,
      syncIntervalMs: config.walSyncMs,
      segmentBytes: config.walSegmentBytes,
      firstSegment: recovery.nextSegment,
      writer: options.writerId,
      ...(options.openFile ? { openFile: options.openFile } : {}),
    });
    return { wal, locks };
  } catch (err) {
    for (const lock of locks) lock.release();
    throw err;
  }
}

/** Locks a leftover log directory, or undefined when a running process holds it. */
function lockIfFree(dir: string): DirLock | undefined {
  try {
    return lockDirectory(dir, 'write-ahead log');
  } catch (err) {
    if (err instanceof DirectoryLockedError) return undefined;
    throw err;
  }
}
