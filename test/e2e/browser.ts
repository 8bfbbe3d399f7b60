// Drives Debian's chromium with playwright-core for the browser tests; never downloads a browser.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { ROOT } from '../helpers/server-process.js';

/** The browser binary; TALLY_E2E_CHROMIUM points elsewhere (e.g. on macOS). */
export const CHROMIUM = process.env.TALLY_E2E_CHROMIUM ?? '/usr/bin/chromium';
/** Git-ignored folder for the screenshots the tests take. */
export const SCREENSHOTS = join(ROOT, 'artifacts', 'screenshots');

/** Starts headless chromium; fails (never skips) with install instructions when it is missing. */
export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `The browser tests need Chromium at ${CHROMIUM}, which is missing. Install it with ` +
        '`sudo apt-get install chromium` (Debian/Ubuntu; .ci/run does this), or point ' +
        'TALLY_E2E_CHROMIUM at a Chromium binary. No browser is downloaded.',
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
    timeout: 30_000,
  });
}

/** What a page did that it should not: uncaught errors, requests to hosts other than Tally. */
export interface PageWatch {
  readonly errors: string[];
  readonly foreign: string[];
}

/** Records uncaught page errors and every request that leaves `origin`. */
export function watchPage(page: Page, origin: string): PageWatch {
  const watch: PageWatch = { errors: [], foreign: [] };
  page.on('pageerror', (err) => watch.errors.push(err.message));
  page.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith(`${origin}/`) && !url.startsWith('data:')) watch.foreign.push(url);
  });
  return watch;
}

/** Saves a full-page screenshot under artifacts/screenshots/. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
