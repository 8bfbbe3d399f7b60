// The history chart in a real browser: the counter page and the dashboard draw a counter's
// buckets with uPlot (served by Tally itself, nothing from another origin), switch granularity,
// and move live as values arrive.
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';
import { launchBrowser, type PageWatch, screenshot, watchPage } from './browser.js';

const dir = tempDir('tally-e2e-chart');
let browser: Browser;
let server: ServerProcess;
const contexts: BrowserContext[] = [];
const watches: PageWatch[] = [];

beforeAll(async () => {
  [server, browser] = await Promise.all([
    startServer({
      TALLY_STORE: 'sqlite',
      TALLY_SQLITE_PATH: join(dir.path, 'chart.db'),
      TALLY_DATA_DIR: join(dir.path, 'data'),
      TALLY_LOG_FILES: 'false',
      TALLY_FLUSH_INTERVAL_MS: '50',
    }),
    launchBrowser(),
  ]);
});

afterEach(async () => {
  for (const c of contexts.splice(0)) await c.close().catch(() => undefined);
  for (const w of watches.splice(0)) {
    expect(w.errors).toEqual([]);
    expect(w.foreign).toEqual([]);
  }
});

afterAll(async () => {
  await browser?.close();
  await server?.stop('SIGKILL');
  dir.remove();
});

async function openPage(path: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  contexts.push(context);
  const page = await context.newPage();
  watches.push(watchPage(page, server.url));
  await page.goto(`${server.url}${path}`);
  return page;
}

async function increment(name: string, by: number): Promise<void> {
  const res = await fetch(`${server.url}/api/v1/counters/${name}/increment?consistency=strong`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ by }),
  });
  expect(res.status).toBe(200);
}

const chartOf = (page: Page) => page.locator('#history');

describe('history chart', () => {
  it('draws the counter page history and follows live values', async () => {
    await increment('charted', 5);
    const page = await openPage('/c/charted');
    const chart = chartOf(page);
    await expect.poll(() => chart.getAttribute('data-state')).toBe('ready');
    await expect.poll(() => chart.getAttribute('data-total')).toBe('5');
    expect(await chart.locator('canvas').count()).toBe(1);
    // Another client counts: the live value moves the current bucket without a reload.
    await increment('charted', 7);
    await expect.poll(() => chart.getAttribute('data-total'), { timeout: 5000 }).toBe('12');
    // A click on the page counts too.
    await page.click('#click');
    await expect.poll(() => chart.getAttribute('data-total'), { timeout: 5000 }).toBe('13');
    await chart.locator('button[data-granularity="day"]').click();
    await expect.poll(() => chart.getAttribute('data-granularity')).toBe('day');
    await expect.poll(() => chart.getAttribute('data-total')).toBe('13');
    await screenshot(page, 'chart-counter');
  });

  it('charts the dashboard counter picked, live', async () => {
    await increment('dash-a', 3);
    await increment('dash-b', 4);
    const page = await openPage('/dashboard');
    const chart = chartOf(page);
    await expect.poll(() => chart.getAttribute('data-counter')).not.toBeNull();
    await page.locator('tr[data-name="dash-b"] button.chart-pick').click();
    await expect.poll(() => chart.getAttribute('data-counter')).toBe('dash-b');
    await expect.poll(() => page.textContent('#chart-name')).toBe('History of dash-b');
    await expect.poll(() => chart.getAttribute('data-total')).toBe('4');
    await increment('dash-b', 6);
    await expect.poll(() => chart.getAttribute('data-total'), { timeout: 5000 }).toBe('10');
    expect(await chart.locator('canvas').count()).toBe(1);
    await screenshot(page, 'chart-dashboard');
  });
});
