// The web routes over HTTP (in process): content types, ETag and cache headers, the 404 page,
// and that no URL reaches a file outside the in-memory asset table.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tally } from '../../src/app.js';
import { webRoutes } from '../../src/http/routes/web.js';
import { testApp } from '../helpers/app.js';
import { ROOT } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

let tally: Tally;
beforeAll(async () => {
  tally = await testApp({ flushIntervalMs: 250 });
});
afterAll(async () => {
  await tally.close();
});

const get = (url: string, headers: Record<string, string> = {}) =>
  tally.app.inject({ method: 'GET', url, headers });

/** GET with the path sent byte for byte (node's client does not normalise it). */
function rawGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The /assets/ URLs a page links. */
function assetLinks(html: string): string[] {
  return [...html.matchAll(/"(\/assets\/[^"]+)"/g)].map((m) => m[1] as string);
}

describe('web routes', () => {
  it('serves the click page for "clicks" at / with revalidation and a strict CSP', async () => {
    const res = await get('/');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers['cache-control']).toBe('no-cache');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['content-security-policy']).toContain("default-src 'self'");
    expect(res.headers['content-security-policy']).toContain("connect-src 'self'");
    expect(res.body).toContain('data-counter="clicks"');
    expect(res.body).toContain('data-send-interval-ms="250"');
    expect(res.body).toContain('data-flush-interval-ms="250"');
    // Nothing from other hosts.
    expect(res.body).not.toMatch(/(src|href)="(https?:)?\/\//);

    const etag = res.headers.etag as string;
    expect(etag).toMatch(/^"[\w-]+"$/);
    const again = await get('/', { 'if-none-match': `W/${etag}` });
    expect(again.statusCode).toBe(304);
    expect(again.body).toBe('');
    expect((await tally.app.inject({ method: 'HEAD', url: '/' })).statusCode).toBe(200);
  });

  it('serves /c/{name} and /dashboard', async () => {
    const page = await get('/c/orders.eu-west:1_x');
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('data-counter="orders.eu-west:1_x"');
    expect(page.body).toContain('<title>orders.eu-west:1_x · Tally</title>');
    const dash = await get('/dashboard');
    expect(dash.statusCode).toBe(200);
    expect(dash.body).toContain('id="dashboard"');
  });

  it('answers invalid counter names with an HTML 404 page that escapes the name', async () => {
    for (const url of [
      '/c/%3Cscript%3Ealert(1)%3C%2Fscript%3E',
      '/c/',
      '/c/a/b',
      '/c/-x',
      `/c/${'a'.repeat(129)}`,
      `/c/${'a'.repeat(300)}`,
    ]) {
      const res = await get(url);
      expect(res.statusCode, url).toBe(404);
      expect(res.headers['content-type'], url).toBe('text/html; charset=utf-8');
      expect(res.body, url).toContain('There is no counter page here');
      expect(res.body, url).not.toContain('<script>alert');
    }
    expect((await get('/c/%3Cb%3E')).body).toContain('&#60;b&#62;');
  });

  it('serves every linked asset from memory with its type, ETag and cache policy', async () => {
    const links = new Set([
      ...assetLinks((await get('/')).body),
      ...assetLinks((await get('/dashboard')).body),
    ]);
    expect(links.size).toBeGreaterThanOrEqual(4);
    const types: Record<string, string> = {
      css: 'text/css; charset=utf-8',
      js: 'text/javascript; charset=utf-8',
      svg: 'image/svg+xml',
    };
    for (const link of links) {
      const file = new URL(link, 'http://x').pathname.slice('/assets/'.length);
      const res = await get(link);
      expect(res.statusCode, link).toBe(200);
      expect(res.headers['content-type'], link).toBe(types[file.split('.').pop() ?? '']);
      expect(res.headers['cache-control'], link).toBe('public, max-age=31536000, immutable');
      // uPlot is served from its installed package, everything else from src/web.
      const source = file.startsWith('uplot.')
        ? join(
            ROOT,
            'node_modules/uplot/dist',
            file === 'uplot.js' ? 'uPlot.iife.min.js' : 'uPlot.min.css',
          )
        : join(ROOT, 'src/web', file);
      expect(res.rawPayload.equals(readFileSync(source)), link).toBe(true);
      // Without the version (or with an old one) the browser must revalidate.
      const bare = await get(`/assets/${file}?v=old`);
      expect(bare.headers['cache-control'], link).toBe('no-cache');
      const etag = res.headers.etag as string;
      expect((await get(link, { 'if-none-match': etag })).statusCode, link).toBe(304);
      expect((await get(link, { 'if-none-match': '"other"' })).statusCode, link).toBe(200);
    }
  });

  it('serves the typed client the click page sends with, without its source-map link', async () => {
    const res = await tally.app.inject('/assets/client.js');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(res.body).toContain('export class TallyClient');
    expect(res.body).not.toContain('sourceMappingURL');
    const page = await tally.app.inject('/assets/counter.js');
    expect(page.body).toContain("import { TallyClient } from './client.js';");
    expect(page.body).not.toMatch(/fetch\(`\$\{api\}\/increment/);
  });

  it('never serves a file outside the asset table, whatever the raw path', async () => {
    // A real socket: inject() would normalise dot segments before the router saw them.
    const address = await tally.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = new URL(address);
    for (const path of [
      '/assets/../package.json',
      '/assets/..%2Fpackage.json',
      '/assets/..%2F..%2Fpackage.json',
      '/assets/%2e%2e%2fpackage.json',
      '/assets/%2e%2e/%2e%2e/package.json',
      '/assets/..%5c..%5cpackage.json',
      '/assets/..%2F..%2F..%2Fetc%2Fpasswd',
      '/assets/%2e%2e',
      '/assets/.',
      '/assets/',
      '/assets/counter.html',
      '/assets/not-found.html',
      '/assets/COUNTER.JS',
      '/src/web/counter.js',
      '/dist/main.js',
    ]) {
      const res = await rawGet(Number(port), path);
      expect(res.status, path).toBe(404);
      expect(res.body, path).not.toContain('"dependencies"');
      expect(res.body, path).not.toContain('root:');
    }
  });

  it('refuses to start when a page template is missing', async () => {
    const dir = tempDir('tally-web-assets');
    try {
      mkdirSync(dir.path, { recursive: true });
      writeFileSync(join(dir.path, 'counter.html'), '<p>{{name}}</p>');
      const app = Fastify();
      await expect(
        app.register(webRoutes, { flushIntervalMs: 100, assetsDir: pathToFileURL(`${dir.path}/`) }),
      ).rejects.toThrow(/template missing: dashboard.html/);
      await app.close();
    } finally {
      dir.remove();
    }
  });
});
