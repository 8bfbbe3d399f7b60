import { afterEach, describe, expect, it, vi } from 'vitest';
import { LiveHub } from '../../src/live/hub.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until `done()` holds or `ms` pass; returns how long it waited. */
async function waitUntil(done: () => boolean, ms: number): Promise<number> {
  const start = performance.now();
  while (!done() && performance.now() - start < ms) await sleep(5);
  return performance.now() - start;
}

let hub: LiveHub | undefined;
afterEach(() => {
  hub?.close();
  hub = undefined;
  vi.restoreAllMocks();
});

describe('LiveHub throttle', () => {
  const windowMs = 50;

  it('sends the first change at once and merges later ones within the window', async () => {
    hub = new LiveHub(windowMs);
    const got: number[] = [];
    hub.subscribe('c', (v) => got.push(v), 0);
    hub.publish(new Map([['c', 1]]));
    expect(got).toEqual([1]);
    hub.publish(new Map([['c', 2]]));
    hub.publish(new Map([['c', 3]]));
    expect(got).toEqual([1]);
    await waitUntil(() => got.length === 2, 1000);
    expect(got).toEqual([1, 3]);
  });

  it('delivers a change within one window after the wall clock stepped back 60 s', async () => {
    hub = new LiveHub(windowMs);
    const got: number[] = [];
    hub.subscribe('c', (v) => got.push(v), 0);
    hub.publish(new Map([['c', 1]]));
    expect(got).toEqual([1]);
    // NTP or an operator sets the clock back; the monotonic clock (performance.now) goes on.
    const realNow = Date.now.bind(Date);
    vi.spyOn(Date, 'now').mockImplementation(() => realNow() - 60_000);
    hub.publish(new Map([['c', 2]]));
    const waited = await waitUntil(() => got.length === 2, 1000);
    expect(got).toEqual([1, 2]);
    expect(waited).toBeLessThan(windowMs * 4);
  });

  it('sends at once a change after a quiet window, with the wall clock stepped back 60 s', async () => {
    hub = new LiveHub(windowMs);
    const got: number[] = [];
    hub.subscribe('c', (v) => got.push(v), 0);
    hub.publish(new Map([['c', 1]]));
    const realNow = Date.now.bind(Date);
    vi.spyOn(Date, 'now').mockImplementation(() => realNow() - 60_000);
    await sleep(windowMs * 2);
    hub.publish(new Map([['c', 2]]));
    expect(got).toEqual([1, 2]);
  });
});
