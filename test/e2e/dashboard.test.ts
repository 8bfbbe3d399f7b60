// The dashboard in a real browser: pages through the counter list, filters by prefix, follows
// values live, and stays within Tally's own origin.
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';
import { launchBrowser, type PageWatch, screenshot, watchPage } from './browser.js';

const dir = tempDir('tally-e2e-dash');
let browser: Browser;
let server: ServerProcess;
const contexts: BrowserContext[] = [];
const watches: PageWatch[] = [];

beforeAll(async () => {
  [server, browser] = await Promise.all([
    startServer({
      TALLY_STORE: 'sqlite',
      TALLY_SQLITE_PATH: join(dir.path, 'dash.db'),
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

async function openPage(
  path: string,
  options: Parameters<Browser['newContext']>[0] = {},
): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
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

/** The rows on screen: name and value. */
async function rows(page: Page): Promise<[string, number][]> {
  return page.$$eval('#rows tr', (trs) =>
    trs.map((tr): [string, number] => [
      (tr as HTMLElement).dataset.name ?? '',
      Number(tr.querySelector<HTMLElement>('td.num')?.dataset.value),
    ]),
  );
}

async function waitForRows(page: Page, first: string): Promise<void> {
  await page.waitForFunction(
    (name) => document.querySelector('#rows tr')?.getAttribute('data-name') === name,
    first,
  );
}

describe('the dashboard', () => {
  const prefix = `dash-${Math.random().toString(36).slice(2, 7)}-`;
  const names = ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((s) => `${prefix}${s}`);

  beforeAll(async () => {
    for (const [i, name] of names.entries()) await increment(name, (i + 1) * 10);
  });

  it('pages through the list with next and previous', async () => {
    const page = await openPage(`/dashboard?prefix=${prefix}&limit=3`);
    await waitForRows(page, names[0]!);
    expect(await rows(page)).toEqual([
      [names[0], 10],
      [names[1], 20],
      [names[2], 30],
    ]);
    expect(await page.locator('#prev').isDisabled()).toBe(true);
    expect(await page.locator('#prefix').inputValue()).toBe(prefix);

    await page.getByRole('button', { name: 'Next page' }).click();
    await waitForRows(page, names[3]!);
    expect((await rows(page)).map(([n]) => n)).toEqual(names.slice(3, 6));
    await page.getByRole('button', { name: 'Next page' }).click();
    await waitForRows(page, names[6]!);
    expect(await rows(page)).toEqual([[names[6], 70]]);
    expect(await page.locator('#next').isDisabled()).toBe(true);
    expect(await page.locator('#page').textContent()).toBe('Page 3 · 1 counter');

    await page.getByRole('button', { name: 'Previous page' }).click();
    await waitForRows(page, names[3]!);
    // Each name links to its click page.
    await page.getByRole('link', { name: names[4]! }).click();
    await page.waitForURL(`${server.url}/c/${names[4]}`);
    await page.waitForSelector('main[data-state="live"]');
    expect(await page.locator('#value').getAttribute('data-value')).toBe('50');
  });

  it('follows values live and filters by prefix', async () => {
    const page = await openPage(`/dashboard?prefix=${prefix}&limit=5`);
    await waitForRows(page, names[0]!);
    await page.waitForSelector('main[data-state="live"]');
    await increment(names[1]!, 5);
    const t0 = Date.now();
    await page.waitForFunction(
      (name) =>
        document
          .querySelector(`#rows tr[data-name="${name}"] td.num`)
          ?.getAttribute('data-value') === '25',
      names[1],
      { timeout: 3000 },
    );
    console.log(`dashboard: value updated ${Date.now() - t0} ms after the increment`);
    await screenshot(page, 'dashboard-desktop');

    await page.getByLabel('Names starting with').fill(`${prefix}f`);
    await waitForRows(page, names[5]!);
    await expect.poll(async () => (await rows(page)).length).toBe(1);
    expect(new URL(page.url()).searchParams.get('prefix')).toBe(`${prefix}f`);

    await page.getByLabel('Names starting with').fill(`${prefix}zzz`);
    await page.waitForSelector('#empty:not([hidden])');
    expect(await rows(page)).toEqual([]);
  });

  it('fits a phone screen', async () => {
    const page = await openPage(`/dashboard?prefix=${prefix}`, {
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
    });
    await waitForRows(page, names[0]!);
    const overflow = await page.evaluate(
      () => document.documentElement.scrollWidth - window.innerWidth,
    );
    expect(overflow).toBeLessThanOrEqual(0);
    expect((await rows(page)).length).toBe(7);
    await screenshot(page, 'dashboard-phone');
  });
});
