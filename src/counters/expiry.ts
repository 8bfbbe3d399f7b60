/** @module counters/expiry — deletes counters nobody wrote for TALLY_EXPIRE_IDLE, every minute. */
import type { Logger } from '../obs/logger.js';
import type { HistoryStore } from '../store/history.js';
import type { CounterService } from './service.js';

/** Counters deleted per store call; a sweep repeats calls until fewer come back. */
const PER_CALL = 500;
/** Calls per sweep at most, so one sweep never holds the store long. */
const CALLS_PER_SWEEP = 20;

/**
 * Sweeps every `everyMs` (default a minute). Every instance sweeps; the store deletes each idle
 * counter once, re-checking its last write, so a counter written meanwhile stays. Returns stop.
 */
export function startExpiry(
  counters: CounterService,
  idleMs: number,
  logger: Logger,
  everyMs = 60_000,
): () => void {
  let running = false;
  const sweep = async () => {
    if (running) return;
    running = true;
    try {
      let total = 0;
      for (let i = 0; i < CALLS_PER_SWEEP; i++) {
        const names = await counters.expireIdle(idleMs, PER_CALL);
        total += names.length;
        if (names.length < PER_CALL) break;
      }
      if (total > 0)
        logger.info({ event: 'counters_expired', count: total }, 'idle counters deleted');
    } catch (err) {
      logger.warn(
        { event: 'expiry_failed', err },
        'expiring idle counters failed; retried next sweep',
      );
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void sweep(), everyMs);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Drops history records past their retention every `everyMs` (default ten minutes; the first
 * sweep a minute after start). Every instance sweeps; deleting a record twice is harmless.
 */
export function startHistorySweep(
  history: HistoryStore,
  logger: Logger,
  everyMs = 600_000,
): () => void {
  let running = false;
  const sweep = async () => {
    if (running) return;
    running = true;
    try {
      const removed = await history.sweep();
      if (removed > 0) {
        logger.info({ event: 'history_swept', count: removed }, 'old history buckets deleted');
      }
    } catch (err) {
      logger.warn({ event: 'history_sweep_failed', err }, 'history sweep failed; retried later');
    } finally {
      running = false;
    }
  };
  const first = setTimeout(() => void sweep(), Math.min(everyMs, 60_000));
  first.unref();
  const timer = setInterval(() => void sweep(), everyMs);
  timer.unref();
  return () => {
    clearTimeout(first);
    clearInterval(timer);
  };
}
