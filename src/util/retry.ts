/** @module util/retry — waiting and backing off, the same way everywhere. */

/** Resolves after `ms`; `unref` keeps the timer from holding a finished process alive. */
export function sleep(ms: number, unref = false): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (unref) timer.unref();
  });
}

/**
 * Capped exponential backoff with jitter: attempt 1 waits about `baseMs`, each later attempt
 * twice as long up to `maxMs`, each between half and all of that, so many processes retrying
 * after a shared outage do not retry in step.
 */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(attempt - 1, 0), 16));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

/**
 * Retries `op` with capped backoff until it succeeds (startup waits out a store outage),
 * telling `onError` about each failure.
 */
export async function untilDone<T>(
  op: () => Promise<T>,
  onError?: (err: unknown, attempt: number) => void,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await op();
    } catch (err) {
      onError?.(err, attempt);
      await sleep(backoffMs(attempt + 1, 100, 5000));
    }
  }
}
