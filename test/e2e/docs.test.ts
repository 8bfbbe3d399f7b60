// The API reference page (/docs) in a real browser: it lists every operation of /openapi.json
// from this server (nothing loaded from elsewhere, no console errors under the page's CSP), finds
// operations by error code, and its "Send" calls the API and shows the answer.
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN } from '../helpers/app.js';
import { type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';
import { launchBrowser, type PageWatch, screenshot, watchPage } from './browser.js';

const dir = tempDir('tally-e2e-docs');
let browser: Browser;
let server: ServerProcess;
let page: Page;
let watch: PageWatch;

beforeAll(async () => {
  [server, browser] = await Promise.all([
    startServer({
      TALLY_STORE: 'sqlite',
      TALLY_SQLITE_PATH: join(dir.path, 'docs.db'),
      TALLY_DATA_DIR: join(dir.path, 'data'),
      TALLY_LOG_FILES: 'false',
      TALLY_ADMIN_TOKEN: ADMIN_TOKEN,
    }),
    launchBrowser(),
  ]);
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  watch = watchPage(page, server.url);
  await page.goto(`${server.url}/docs`);
  await page.waitForSelector('#docs[data-state="ready"]');
});

afterAll(async () => {
  await browser?.close();
  await server?.stop('SIGKILL');
  dir.remove();
});

describe('/docs', () => {
  it('lists every operation of the document', async () => {
    const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as {
      paths: Record<string, object>;
    };
    const operations = Object.values(doc.paths).reduce(
      (n, item) => n + Object.keys(item).length,
      0,
    );
    expect(await page.locator('details.op').count()).toBe(operations);
    expect(await page.locator('#intro').textContent()).toContain('Tally');
    await screenshot(page, 'docs');
  });

  it('finds operations by error code', async () => {
    await page.fill('#filter', 'counter_exists');
    const visible = page.locator('details.op:visible');
    await expect.poll(() => visible.count()).toBeGreaterThan(0);
    const paths = await visible.locator('.path').allTextContents();
    expect(paths).toContain('/api/v1/namespaces/{ns}/counters/{key}');
    expect(paths).not.toContain('/healthz');
    await page.fill('#filter', '');
  });

  it('sends a request and shows the answer', async () => {
    const op = page.locator('details.op').filter({
      has: page.locator('.path', { hasText: /^\/api\/v1\/counters\/\{name\}\/increment$/ }),
    });
    await op.locator('summary').click();
    await op.locator('input[name="name"]').fill('from-docs');
    await op.locator('input[name="consistency"]').fill('strong');
    await op.locator('textarea').fill('{"by": 3}');
    await op.getByRole('button', { name: 'Send' }).click();
    await expect.poll(() => op.locator('.result').textContent()).toContain('200');
    expect(await op.locator('.result').textContent()).toContain('"value": 3');
    const stored = await (await fetch(`${server.url}/api/v1/counters/from-docs`)).json();
    expect(stored).toEqual({ name: 'from-docs', value: 3 });

    // An admin call with the token field, and an error shown with its code.
    await page.fill('#token', ADMIN_TOKEN);
    const put = page
      .locator('details.op')
      .filter({ has: page.locator('.method', { hasText: 'PUT' }) })
      .filter({ has: page.locator('.path', { hasText: /^\/api\/v1\/counters\/\{name\}$/ }) });
    await put.locator('summary').click();
    await put.locator('input[name="name"]').fill('from-docs');
    await put.locator('textarea').fill('{"value": "ten"}');
    await put.getByRole('button', { name: 'Send' }).click();
    await expect.poll(() => put.locator('.result').textContent()).toContain('INVALID_NUMBER');
    await put.locator('textarea').fill('{"value": 10}');
    await put.getByRole('button', { name: 'Send' }).click();
    await expect.poll(() => put.locator('.result').textContent()).toContain('"value": 10');
    expect(watch.errors).toEqual([]);
    expect(watch.foreign).toEqual([]);
  });
});
