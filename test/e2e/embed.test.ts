// The embed in a real browser, from a page on another site: a blog served from
// http://localhost:<port> embeds Tally at http://127.0.0.1:<port> with one <script> tag (a view
// count and a like button) and with an <iframe>. Views count once per page load, likes once per
// click (idempotent retries included), values stay live, and a browser that opted out reads the
// counts without adding to them.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';
import { launchBrowser, screenshot } from './browser.js';

const dir = tempDir('tally-e2e-embed');
let browser: Browser;
let tally: ServerProcess;
let site: Server;
let siteUrl: string;
const contexts: BrowserContext[] = [];
let n = 0;

/** The blog's pages: `/post?c=<counter>` embeds by script, `/framed?c=` by iframe. */
function blogPage(path: string, counter: string): string {
  if (path === '/framed') {
    return `<!doctype html><title>framed</title><h1>A post</h1>
<iframe id="views" src="${tally.url}/embed/blog/${counter}" width="120" height="30"></iframe>
<iframe id="like" src="${tally.url}/embed/blog/${counter}-likes?mode=like" width="120" height="30"></iframe>`;
  }
  return `<!doctype html><title>post</title><h1>A post</h1>
<p>Views: <span id="views" data-tally="blog/${counter}"></span></p>
<button id="like" data-tally="blog/${counter}-likes" data-tally-mode="like"></button>
<script src="${tally.url}/embed.js" async></script>`;
}

beforeAll(async () => {
  [tally, browser] = await Promise.all([
    startServer({
      TALLY_STORE: 'sqlite',
      TALLY_SQLITE_PATH: join(dir.path, 'embed.db'),
      TALLY_DATA_DIR: join(dir.path, 'data'),
      TALLY_LOG_FILES: 'false',
      TALLY_FLUSH_INTERVAL_MS: '50',
    }),
    launchBrowser(),
  ]);
  site = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(blogPage(url.pathname, url.searchParams.get('c') ?? 'none'));
  });
  await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
  // Another site, not only another port: localhost embeds 127.0.0.1.
  siteUrl = `http://localhost:${(site.address() as AddressInfo).port}`;
});

afterEach(async () => {
  for (const c of contexts.splice(0)) await c.close().catch(() => undefined);
});

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => site?.close(resolve));
  await tally?.stop('SIGKILL');
  dir.remove();
});

async function visitor(): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext();
  contexts.push(context);
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  return { page, errors };
}

async function stored(counter: string): Promise<number> {
  const res = await fetch(
    `${tally.url}/api/v1/namespaces/blog/counters/${counter}?consistency=strong`,
  );
  return ((await res.json()) as { value: number }).value;
}

const shownBy = (page: Page, selector: string) =>
  page.locator(selector).getAttribute('data-tally-value');

describe('the script embed on another site', () => {
  it('counts one view per page load and a like per click, and shows them', async () => {
    const counter = `post${n++}`;
    const { page, errors } = await visitor();
    await page.goto(`${siteUrl}/post?c=${counter}`);
    await expect.poll(() => shownBy(page, '#views')).toBe('1');
    await expect.poll(() => shownBy(page, '#like')).toBe('0');
    await page.reload();
    await expect.poll(() => shownBy(page, '#views')).toBe('2');
    for (let i = 0; i < 3; i++) await page.click('#like');
    await expect.poll(() => shownBy(page, '#like')).toBe('3');
    expect(await page.locator('#like').textContent()).toBe('♥ 3');
    await screenshot(page, 'embed-script');
    expect(await stored(counter)).toBe(2);
    expect(await stored(`${counter}-likes`)).toBe(3);
    expect(errors).toEqual([]);
  });

  it("shows other visitors' likes live", async () => {
    const counter = `post${n++}`;
    const a = await visitor();
    const b = await visitor();
    await a.page.goto(`${siteUrl}/post?c=${counter}`);
    await b.page.goto(`${siteUrl}/post?c=${counter}`);
    await expect.poll(() => shownBy(b.page, '#views')).toBe('2');
    await a.page.click('#like');
    await a.page.click('#like');
    await expect.poll(() => shownBy(b.page, '#like'), { timeout: 5000 }).toBe('2');
    // a's view count catches up with b's view through the stream.
    await expect.poll(() => shownBy(a.page, '#views'), { timeout: 5000 }).toBe('2');
  });

  it('a lost answer is retried with its Idempotency-Key and counted once', async () => {
    const counter = `post${n++}`;
    const { page } = await visitor();
    const keys: string[] = [];
    let dropped = 0;
    let answered = 0;
    // The first like request reaches Tally, but its answer never reaches the page.
    await page.route(
      `${tally.url}/api/v1/namespaces/blog/counters/${counter}-likes/increment`,
      async (route) => {
        if (route.request().method() !== 'POST') return route.continue();
        keys.push((await route.request().headerValue('idempotency-key')) ?? '');
        const response = await route.fetch();
        if (dropped++ === 0) return route.abort('connectionreset');
        await route.fulfill({ response });
        answered++;
      },
    );
    await page.goto(`${siteUrl}/post?c=${counter}`);
    await expect.poll(() => shownBy(page, '#like')).toBe('0');
    await page.click('#like');
    // Shown at once (optimistic), sent until answered.
    expect(await shownBy(page, '#like')).toBe('1');
    await expect.poll(() => keys.length, { timeout: 10_000 }).toBe(2);
    // The retry's answer reached the page (nothing of the route is left running).
    await expect.poll(() => answered, { timeout: 10_000 }).toBe(1);
    await expect.poll(() => page.locator('#like').getAttribute('data-tally-error')).toBe(null);
    expect(keys[0]).toBe(keys[1]);
    expect(await stored(`${counter}-likes`)).toBe(1);
  });

  it('?tally=ignore opts this browser out: counts show, nothing is counted', async () => {
    const counter = `post${n++}`;
    const owner = await visitor();
    await owner.page.goto(`${siteUrl}/post?c=${counter}&tally=ignore`);
    await expect.poll(() => shownBy(owner.page, '#views')).toBe('0');
    const reader = await visitor();
    await reader.page.goto(`${siteUrl}/post?c=${counter}`);
    await expect.poll(() => shownBy(reader.page, '#views')).toBe('1');
    // The owner's later visits (no query) still read without counting; clicks do nothing.
    await owner.page.goto(`${siteUrl}/post?c=${counter}`);
    await expect.poll(() => shownBy(owner.page, '#views')).toBe('1');
    await owner.page.click('#like');
    expect(await owner.page.locator('#like').getAttribute('title')).toContain('opted out');
    expect(await stored(counter)).toBe(1);
    expect(await stored(`${counter}-likes`)).toBe(0);
    // ?tally=count undoes it.
    await owner.page.goto(`${siteUrl}/post?c=${counter}&tally=count`);
    await expect.poll(() => shownBy(owner.page, '#views')).toBe('2');
  });
});

describe('the iframe embed', () => {
  it('counts a view and takes likes from inside a frame on another site', async () => {
    const counter = `post${n++}`;
    const { page, errors } = await visitor();
    await page.goto(`${siteUrl}/framed?c=${counter}`);
    const views = page.frameLocator('#views').locator('[data-tally]');
    const like = page.frameLocator('#like').locator('[data-tally]');
    await expect.poll(() => views.getAttribute('data-tally-value')).toBe('1');
    await like.click();
    await like.press('Enter');
    await expect.poll(() => like.getAttribute('data-tally-value')).toBe('2');
    await screenshot(page, 'embed-iframe');
    expect(await stored(counter)).toBe(1);
    expect(await stored(`${counter}-likes`)).toBe(2);
    expect(errors).toEqual([]);
  });

  it('refuses a bad mode with 400 INVALID_QUERY', async () => {
    const res = await fetch(`${tally.url}/embed/blog/x?mode=vote`);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('INVALID_QUERY');
  });
});
