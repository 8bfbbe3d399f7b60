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
  return every(everyMs, everyMs, async () => {
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
    }
  });
}

/**
 * Runs `task` after `firstMs`, then every `everyMs`, never two at once (a slow run makes the
 * next one skip). Timers are unref'd. Returns stop.
 */
function every(firstMs: number, everyMs: number, task: () => Promise<void>): () => void {
  let running = false;
  const run = async () => {
    if (running) return;
    running = true;
    try {
      await task();
    } finally {
      running = false;
    }
  };
  let timer: NodeJS.Timeout | undefined;
  const first = setTimeout(() => {
    void run();
    timer = setInterval(() => void run(), everyMs);
    timer.unref();
  }, firstMs);
  first.unref();
  return () => {
    clearTimeout(first);
    if (timer !== undefined) clearInterval(timer);
  };
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
  return every(Math.min(everyMs, 60_000), everyMs, async () => {
    try {
      const removed = await history.sweep();
      if (removed > 0) {
        logger.info({ event: 'history_swept', count: removed }, 'old history buckets deleted');
      }
    } catch (err) {
      logger.warn({ event: 'history_sweep_failed', err }, 'history sweep failed; retried later');
    }
  });
}
