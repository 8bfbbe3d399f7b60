// The click page in a real browser against a real server: clicks, live updates across windows,
// batching, lost answers, a server restart, the 404 page, phone and desktop layouts.
import { join } from 'node:path';
import type { Browser, BrowserContext, Page, Request } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort, type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';
import { launchBrowser, type PageWatch, screenshot, watchPage } from './browser.js';

const dir = tempDir('tally-e2e-click');
let browser: Browser;
let server: ServerProcess;
let url: string;
const contexts: BrowserContext[] = [];
const watches: PageWatch[] = [];
const extraServers: ServerProcess[] = [];

function serverEnv(label: string, port?: number): Record<string, string> {
  return {
    TALLY_STORE: 'sqlite',
    TALLY_SQLITE_PATH: join(dir.path, `${label}.db`),
    TALLY_DATA_DIR: join(dir.path, `${label}-data`),
    TALLY_LOG_FILES: 'false',
    TALLY_FLUSH_INTERVAL_MS: '50',
    ...(port === undefined ? {} : { TALLY_PORT: String(port) }),
  };
}

beforeAll(async () => {
  [server, browser] = await Promise.all([startServer(serverEnv('main')), launchBrowser()]);
  url = server.url;
});

afterEach(async () => {
  for (const c of contexts.splice(0)) await c.close().catch(() => undefined);
  for (const s of extraServers.splice(0)) await s.stop('SIGKILL');
});

afterAll(async () => {
  await browser?.close();
  await server?.stop('SIGKILL');
  dir.remove();
});

/** A fresh browser window (own cookies, storage and connections), like a second person. */
async function openPage(
  path: string,
  options: Parameters<Browser['newContext']>[0] = {},
  origin = url,
): Promise<{ page: Page; watch: PageWatch }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  contexts.push(context);
  const page = await context.newPage();
  const watch = watchPage(page, origin);
  watches.push(watch);
  await page.goto(`${origin}${path}`);
  return { page, watch };
}

function uniqueName(label: string): string {
  return `e2e-${label}-${Math.random().toString(36).slice(2, 8)}`;
}

async function waitForLive(page: Page, timeout = 10_000): Promise<void> {
  await page.waitForSelector('main[data-state="live"]', { timeout });
}

/** Waits until the page shows `value` with nothing left to send. */
async function waitForSettled(page: Page, value: number, timeout = 10_000): Promise<void> {
  await page.waitForFunction(
    (v) =>
      document.getElementById('value')?.dataset.value === String(v) &&
      document.getElementById('counter')?.dataset.unsent === '0',
    value,
    { timeout },
  );
}

async function shownValue(page: Page): Promise<number> {
  return Number(await page.locator('#value').getAttribute('data-value'));
}

async function apiValue(name: string, origin = url): Promise<number> {
  const res = await fetch(`${origin}/api/v1/counters/${name}?consistency=strong`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { value: number }).value;
}

function isIncrement(request: Request): boolean {
  return request.method() === 'POST' && request.url().includes('/increment');
}

/** Records every value the page shows, to prove it never went backwards. */
async function recordShownValues(page: Page): Promise<() => Promise<number[]>> {
  await page.evaluate(() => {
    const el = document.getElementById('value')!;
    const seen: number[] = [];
    (window as unknown as { seen: number[] }).seen = seen;
    new MutationObserver(() => seen.push(Number(el.dataset.value))).observe(el, {
      attributes: true,
      attributeFilter: ['data-value'],
    });
  });
  return () => page.evaluate(() => (window as unknown as { seen: number[] }).seen);
}

function expectNonDecreasing(values: number[]): void {
  for (let i = 1; i < values.length; i++) {
    if ((values[i] as number) < (values[i - 1] as number)) {
      throw new Error(`shown value went back from ${values[i - 1]} to ${values[i]}: ${values}`);
    }
  }
}

describe('the click page', () => {
  afterEach(() => {
    // Every page ran without uncaught errors and loaded nothing from other hosts.
    for (const w of watches.splice(0)) {
      expect(w.errors).toEqual([]);
      expect(w.foreign).toEqual([]);
    }
  });

  it('counts 25 mouse clicks and 5 keyboard presses on / and the API agrees', async () => {
    const { page } = await openPage('/');
    await waitForLive(page);
    await expect.poll(() => shownValue(page)).toBe(0);
    expect(await page.title()).toContain('clicks');
    const button = page.getByRole('button', { name: 'Click: add 1 to clicks' });

    for (let i = 0; i < 25; i++) await button.click();
    await button.focus();
    for (const key of ['Enter', 'Space', 'Enter', 'Space', 'Enter']) await page.keyboard.press(key);
    // Keyboard focus is visible: the focus ring is drawn.
    const outline = await button.evaluate((el) => getComputedStyle(el).outlineStyle);
    expect(outline).not.toBe('none');

    await waitForSettled(page, 30);
    expect(await page.locator('#value').textContent()).toBe('30');
    expect(await apiValue('clicks')).toBe(30);
    await expect.poll(() => page.locator('#rate').textContent()).toMatch(/^[1-9][\d.]* clicks\/s$/);
    await screenshot(page, 'click-page-desktop');
  });

  it('fits a phone screen and counts a tap', async () => {
    const name = uniqueName('phone');
    const { page } = await openPage(`/c/${name}`, {
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
    });
    await waitForLive(page);
    const layout = await page.evaluate(() => {
      const b = document.getElementById('click')!.getBoundingClientRect();
      return {
        overflow: document.documentElement.scrollWidth - window.innerWidth,
        button: { top: b.top, bottom: b.bottom, left: b.left, right: b.right, height: b.height },
        innerHeight: window.innerHeight,
        innerWidth: window.innerWidth,
        valueSize: Number.parseFloat(getComputedStyle(document.getElementById('value')!).fontSize),
      };
    });
    expect(layout.overflow).toBeLessThanOrEqual(0);
    expect(layout.button.height).toBeGreaterThanOrEqual(120);
    expect(layout.button.left).toBeGreaterThanOrEqual(0);
    expect(layout.button.right).toBeLessThanOrEqual(layout.innerWidth);
    expect(layout.button.bottom).toBeLessThanOrEqual(layout.innerHeight);
    expect(layout.valueSize).toBeGreaterThanOrEqual(48);

    await page.locator('#click').tap();
    await waitForSettled(page, 1);
    expect(await apiValue(name)).toBe(1);
    await screenshot(page, 'click-page-phone');
  });

  it('shows clicks from one window in another within a second', async () => {
    const name = uniqueName('two');
    const [a, b] = await Promise.all([openPage(`/c/${name}`), openPage(`/c/${name}`)]);
    await Promise.all([waitForLive(a.page), waitForLive(b.page)]);

    const latency = async (from: Page, to: Page, clicks: number, expected: number) => {
      for (let i = 0; i < clicks; i++) await from.locator('#click').click();
      const t0 = Date.now();
      await to.waitForFunction(
        (v) => document.getElementById('value')?.dataset.value === String(v),
        expected,
        { timeout: 1000 },
      );
      return Date.now() - t0;
    };
    const ab = await latency(a.page, b.page, 3, 3);
    const ba = await latency(b.page, a.page, 2, 5);
    console.log(`click page: other window updated after ${ab} ms and ${ba} ms`);
    await Promise.all([waitForSettled(a.page, 5), waitForSettled(b.page, 5)]);
    expect(await apiValue(name)).toBe(5);
  });

  it('batches 200 rapid clicks into at most one request per send interval, counted exactly', async () => {
    const name = uniqueName('rapid');
    const { page } = await openPage(`/c/${name}`);
    await waitForLive(page);
    const seen = await recordShownValues(page);
    let requests = 0;
    page.on('request', (r) => {
      if (isIncrement(r)) requests++;
    });
    const box = await page.locator('#click').boundingBox();
    if (box === null) throw new Error('button not visible');
    const t0 = Date.now();
    for (let i = 0; i < 200; i++) {
      await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
    }
    const clickMs = Date.now() - t0;
    await waitForSettled(page, 200);
    console.log(`click page: 200 clicks in ${clickMs} ms sent ${requests} requests`);
    expect(requests).toBeGreaterThan(0);
    // The page sends at most once per 100 ms, so requests follow how long the clicks took (on a
    // loaded 2-core machine Playwright's 200 clicks take 2-8 s), never the number of clicks.
    expect(requests).toBeLessThanOrEqual(Math.ceil(clickMs / 100) + 3);
    expect(requests).toBeLessThan(100);
    expect(await apiValue(name)).toBe(200);
    const values = await seen();
    expectNonDecreasing(values);
    expect(values.at(-1)).toBe(200);
  });

  it('resends a request whose answer was lost with the same key, and it counts once', async () => {
    const name = uniqueName('lost');
    const { page } = await openPage(`/c/${name}`);
    await waitForLive(page);
    const seen = await recordShownValues(page);
    const sent: { key: string; body: string; lost: boolean }[] = [];
    const replayed: string[] = [];
    // The first two requests reach the server, but their answers never reach the page.
    await page.route('**/increment', async (route) => {
      const request = route.request();
      const entry = {
        key: request.headers()['idempotency-key'] ?? '',
        body: request.postData() ?? '',
        lost: sent.length < 2,
      };
      sent.push(entry);
      if (entry.lost) {
        await route.fetch();
        await route.abort('connectionreset');
      } else {
        const response = await route.fetch();
        if (response.headers()['idempotent-replayed'] === 'true') replayed.push(entry.key);
        await route.fulfill({ response });
      }
    });
    const button = page.locator('#click');
    await button.click();
    // More clicks while the first request's outcome is unknown: they must not join its retry.
    for (let i = 0; i < 4; i++) await button.click();
    await waitForSettled(page, 5);
    expect(await apiValue(name)).toBe(5);

    const first = sent[0];
    if (first === undefined) throw new Error('no request was sent');
    // The typed client sends no body for +1 (the route's default), `{"by": n}` otherwise.
    const byOf = (body: string) => (body === '' ? 1 : (JSON.parse(body) as { by: number }).by);
    expect(byOf(first.body)).toBe(1);
    expect(first.key).toMatch(/^web-[0-9a-f]{32}$/);
    // Every send of that key carried the same body; the server answered the retry from its record.
    const sameKey = sent.filter((s) => s.key === first.key);
    expect(sameKey.length).toBeGreaterThanOrEqual(3);
    for (const s of sameKey) expect(s.body).toBe(first.body);
    expect(replayed).toContain(first.key);
    // The four later clicks travelled under other keys.
    const later = sent.filter((s) => s.key !== first.key);
    expect(later.length).toBeGreaterThan(0);
    const laterBy = new Map(later.map((s) => [s.key, byOf(s.body)]));
    expect([...laterBy.values()].reduce((a, b) => a + b, 0)).toBe(4);
    expectNonDecreasing(await seen());
  });

  it('keeps unsent clicks across a reload and still counts them once', async () => {
    const name = uniqueName('reload');
    const { page } = await openPage(`/c/${name}`);
    await waitForLive(page);
    let attempts = 0;
    // The first request is counted but its answer is lost; every later one fails on the way out.
    await page.route('**/increment', async (route) => {
      attempts++;
      if (attempts === 1) await route.fetch();
      await route.abort('connectionrefused');
    });
    for (let i = 0; i < 3; i++) await page.locator('#click').click();
    await expect.poll(() => attempts, { timeout: 5000 }).toBeGreaterThanOrEqual(3);
    expect(await page.locator('#counter').getAttribute('data-unsent')).toBe('3');
    expect(await apiValue(name)).toBe(1);

    // Back online, the user reloads: the saved outbox is sent again under its original keys.
    await page.unroute('**/increment');
    await page.reload();
    await waitForLive(page);
    await waitForSettled(page, 3);
    expect(await apiValue(name)).toBe(3);
    await page.waitForTimeout(300);
    expect(await apiValue(name)).toBe(3);
  });

  it('shows that it is reconnecting while the server is down and sends the clicks made meanwhile exactly once', async () => {
    const port = await freePort();
    const env = serverEnv('restart', port);
    const own = await startServer(env);
    extraServers.push(own);
    const name = uniqueName('restart');
    const { page } = await openPage(`/c/${name}`, {}, own.url);
    await waitForLive(page);
    const seen = await recordShownValues(page);
    for (let i = 0; i < 5; i++) await page.locator('#click').click();
    await waitForSettled(page, 5);

    expect(await own.stop('SIGTERM')).toBe(0);
    await page.waitForSelector('main[data-state="reconnecting"]', { timeout: 5000 });
    expect(await page.locator('#status').textContent()).toBe('Reconnecting…');
    for (let i = 0; i < 7; i++) await page.locator('#click').click();
    expect(await shownValue(page)).toBe(12);
    await expect
      .poll(() => page.locator('#outbox').textContent())
      .toBe('7 clicks not sent yet; they will be sent when the connection is back.');
    await screenshot(page, 'click-page-reconnecting');
    // Let a few resends fail against the closed port.
    await page.waitForTimeout(1500);
    expect(await page.locator('#counter').getAttribute('data-unsent')).toBe('7');

    const again = await startServer(env);
    extraServers.push(again);
    await waitForLive(page, 15_000);
    await waitForSettled(page, 12, 15_000);
    expect(await page.locator('#outbox').isHidden()).toBe(true);
    expect(await apiValue(name, again.url)).toBe(12);
    // No late duplicate arrives.
    await page.waitForTimeout(500);
    expect(await apiValue(name, again.url)).toBe(12);
    expect(await shownValue(page)).toBe(12);
    expectNonDecreasing(await seen());
  }, 60_000);

  it('answers /c/<invalid name> with a friendly 404 page', async () => {
    const { page } = await openPage('/');
    for (const bad of ['not a name!', '-starts-with-dash', 'x'.repeat(129), '<img src=x>']) {
      const response = await page.goto(`${url}/c/${encodeURIComponent(bad)}`);
      expect(response?.status()).toBe(404);
      expect(response?.headers()['content-type']).toBe('text/html; charset=utf-8');
      expect(await page.locator('h1').textContent()).toBe('There is no counter page here');
      const shown = await page.locator('code.what').textContent();
      expect(shown).toBe(bad.length > 80 ? `${bad.slice(0, 80)}…` : bad);
      expect(await page.locator('img[src="x"]').count()).toBe(0);
      expect(await page.getByRole('link', { name: 'Go to the clicks counter' }).count()).toBe(1);
    }
    await screenshot(page, 'not-found');
  });
});
