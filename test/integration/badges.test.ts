// Badges over HTTP on SQLite: a counting badge counts one view per request and shows the value,
// `count=false` shows it without counting, every option shapes what badge-maker draws, bad
// options answer 400 INVALID_QUERY (drawn as a badge for an image request) and change nothing,
// the headers GitHub's image proxy needs are set, and Abacus's /shield routes draw with the same
// renderer. The renderer's templates are checked byte for byte against badge-maker itself.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeBadge } from 'badge-maker';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Tally } from '../../src/app.js';
import {
  BADGE_STYLES,
  BadgeRenderer,
  badgeMessage,
  parseBadgeOptions,
} from '../../src/http/badges.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import { drawExample, EXAMPLES } from '../../tools/badge-examples.js';
import { testApp } from '../helpers/app.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('tally-badges');
let n = 0;
afterAll(() => dir.remove());

let tally: Tally | undefined;
afterEach(async () => {
  await tally?.close();
  tally = undefined;
});

async function make(): Promise<Tally> {
  tally = await testApp({}, new SqliteStore({ path: join(dir.path, `b${n++}.db`) }));
  return tally;
}

const get = (t: Tally, url: string) => t.app.inject({ method: 'GET', url });

/** The stored value, read strong (pending views flushed first). */
async function stored(t: Tally, name: string): Promise<number> {
  const [ns, key] = name.includes('/') ? name.split('/') : ['default', name];
  const r = await get(t, `/api/v1/namespaces/${ns}/counters/${key}?consistency=strong`);
  expect(r.statusCode, r.body).toBe(200);
  return r.json().value as number;
}

/** The number a default-look badge shows: the text of its last <text> element. */
function shown(svg: string): string {
  const texts = [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
  return texts[texts.length - 1] as string;
}

describe('the renderer', () => {
  it('draws exactly what badge-maker draws, for every style and many numbers', () => {
    const renderer = new BadgeRenderer();
    const values = [0, 7, 42, 999, 1000, 1234, 90210, 999_999, 1_234_567, -15, 2 ** 53 - 1];
    for (const style of BADGE_STYLES) {
      for (const query of [
        { style },
        { style, label: 'Visitors & <friends>', color: 'ff69b4', labelColor: '#333' },
        { style, color: 'rgb(10, 120, 200)', abbreviated: 'true' },
      ]) {
        const o = parseBadgeOptions(query);
        for (const v of values) {
          const message = badgeMessage(v, o);
          const want = makeBadge({
            label: o.label,
            message,
            color: o.color,
            labelColor: o.labelColor,
            style,
          });
          expect(renderer.render(o, message), `${style} ${message}`).toBe(want);
        }
      }
    }
    // A template per look and shape, not per number.
    expect(renderer.size()).toBeLessThan(BADGE_STYLES.length * 3 * values.length);
  });

  it("the README's example badges are what the renderer draws today", () => {
    for (const name of Object.keys(EXAMPLES)) {
      const committed = readFileSync(join(import.meta.dirname, '../../docs/badges', name), 'utf8');
      expect(committed, `${name}: run npx tsx tools/badge-examples.ts`).toBe(drawExample(name));
    }
  });

  it('abbreviates and adds the base', () => {
    const abbr = { base: 0, abbreviated: true };
    expect(badgeMessage(999, abbr)).toBe('999');
    expect(badgeMessage(1000, abbr)).toBe('1k');
    expect(badgeMessage(1234, abbr)).toBe('1.2k');
    expect(badgeMessage(12_345, abbr)).toBe('12k');
    expect(badgeMessage(999_960, abbr)).toBe('1M');
    expect(badgeMessage(-2500, abbr)).toBe('-2.5k');
    expect(badgeMessage(5, { base: 1000, abbreviated: false })).toBe('1005');
  });
});

describe('GET /badge/:ns/:key.svg', () => {
  it('counts one view per request and shows the value', async () => {
    const t = await make();
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push(await get(t, '/badge/blog/post-1.svg'));
    for (const r of answers) {
      expect(r.statusCode).toBe(200);
      expect(r.headers['content-type']).toBe('image/svg+xml; charset=utf-8');
    }
    expect(answers.map((r) => shown(r.body))).toEqual(['1', '2', '3']);
    expect(await stored(t, 'blog/post-1')).toBe(3);
  });

  it('sends the headers that keep GitHub from showing a stale badge', async () => {
    const t = await make();
    const a = await get(t, '/badge/blog/post-1.svg');
    const b = await get(t, '/badge/blog/post-1.svg');
    expect(a.headers['cache-control']).toBe('max-age=0, no-cache, no-store, must-revalidate');
    expect(Date.parse(String(a.headers.expires))).toBeLessThan(Date.now());
    expect(a.headers.etag).toMatch(/^"[^"]+"$/);
    expect(b.headers.etag).not.toBe(a.headers.etag);
    const again = await get(t, '/badge/blog/post-1.svg?count=false');
    expect(again.headers.etag).toBe(b.headers.etag);
  });

  it('count=false shows the value without counting', async () => {
    const t = await make();
    await get(t, '/badge/blog/post-1.svg');
    for (let i = 0; i < 3; i++) {
      const r = await get(t, '/badge/blog/post-1.svg?count=false');
      expect(shown(r.body)).toBe('1');
    }
    expect(await stored(t, 'blog/post-1')).toBe(1);
    const none = await get(t, '/badge/blog/never.svg?count=false');
    expect(none.statusCode).toBe(200);
    expect(shown(none.body)).toBe('0');
    expect(await stored(t, 'blog/never')).toBe(0);
  });

  it('takes every option', async () => {
    const t = await make();
    for (let i = 0; i < 1234; i++) await t.counters.add('blog/big', 1);
    const r = await get(
      t,
      '/badge/blog/big.svg?count=false&label=Readers&color=green&labelColor=%23123456&style=for-the-badge&abbreviated=true&base=100',
    );
    expect(r.statusCode, r.body).toBe(200);
    // 1234 + 100 abbreviated; for-the-badge draws capitals.
    expect(r.body).toBe(
      makeBadge({
        label: 'Readers',
        message: '1.3k',
        color: 'green',
        labelColor: '#123456',
        style: 'for-the-badge',
      }),
    );
    const logo = `data:image/svg+xml;base64,${Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>').toString('base64')}`;
    const withLogo = await get(
      t,
      `/badge/blog/big.svg?count=false&logo=${encodeURIComponent(logo)}`,
    );
    expect(withLogo.statusCode).toBe(200);
    expect(withLogo.body).toContain(`<image`);
  });

  it('escapes the label', async () => {
    const t = await make();
    const r = await get(
      t,
      `/badge/blog/x.svg?label=${encodeURIComponent('<script>alert(1)</script>')}`,
    );
    expect(r.statusCode).toBe(200);
    expect(r.body).not.toContain('<script>');
    expect(r.body).toContain('&lt;script&gt;');
  });

  it('the default namespace is /badge/:key.svg, the flat counters', async () => {
    const t = await make();
    await get(t, '/badge/page-home.svg');
    await get(t, '/badge/default/page-home.svg');
    expect(await stored(t, 'page-home')).toBe(2);
  });

  it.each([
    ['color=notacolor', 'color'],
    ['labelColor=%23zzzzzz', 'labelColor'],
    ['style=round', 'style'],
    ['abbreviated=maybe', 'abbreviated'],
    ['count=perhaps', 'count'],
    ['base=1.5', 'base'],
    ['base=1e20', 'base'],
    [`label=${'x'.repeat(65)}`, 'label'],
    ['logo=https%3A%2F%2Fexample.com%2Fa.png', 'logo'],
    ['show=everything', 'show'],
    ['label=a&label=b', 'label'],
  ])('%s answers 400 INVALID_QUERY, drawn as a badge, and counts nothing', async (query, field) => {
    const t = await make();
    const r = await get(t, `/badge/blog/post-1.svg?${query}`);
    expect(r.statusCode).toBe(400);
    expect(r.headers['tally-error-code']).toBe('INVALID_QUERY');
    expect(r.headers['content-type']).toBe('image/svg+xml; charset=utf-8');
    expect(r.body).toContain(`&quot;${field}&quot;`);
    const json = await get(t, `/badge/blog/post-1.json?${query}`);
    expect(json.statusCode).toBe(400);
    expect(json.json().error.code).toBe('INVALID_QUERY');
    expect(await stored(t, 'blog/post-1')).toBe(0);
  });

  it('a bad name is 400 INVALID_NAMESPACE; another extension is 404', async () => {
    const t = await make();
    const bad = await get(t, '/badge/bad%20ns/x.svg');
    expect(bad.statusCode).toBe(400);
    expect(bad.headers['tally-error-code']).toBe('INVALID_NAMESPACE');
    const gif = await get(t, '/badge/blog/x.gif');
    expect(gif.statusCode).toBe(404);
    expect(gif.json().error.code).toBe('NOT_FOUND');
  });
});

describe('GET /badge/:ns/:key.json', () => {
  it("answers shields.io's endpoint schema and counts", async () => {
    const t = await make();
    await get(t, '/badge/blog/post-1.json');
    const r = await get(t, '/badge/blog/post-1.json?label=reads&color=orange&style=flat-square');
    expect(r.statusCode).toBe(200);
    expect(r.headers['cache-control']).toBe('max-age=0, no-cache, no-store, must-revalidate');
    expect(r.json()).toEqual({
      schemaVersion: 1,
      label: 'reads',
      message: '2',
      color: 'orange',
      labelColor: 'grey',
      style: 'flat-square',
    });
    expect(await stored(t, 'blog/post-1')).toBe(2);
  });
});

describe("Abacus's /shield routes", () => {
  it('hit counts and draws with the same renderer; get draws without counting', async () => {
    const t = await make();
    await get(t, '/abacus/hit/site/home/shield');
    const hit = await get(t, '/abacus/hit/site/home/shield?text=hits&bgcolor=ff0000');
    expect(hit.statusCode).toBe(200);
    expect(hit.headers['content-type']).toBe('image/svg+xml; charset=utf-8');
    expect(hit.body).toBe(makeBadge({ label: 'hits', message: '2', color: '#ff0000' }));
    const read = await get(t, '/abacus/get/site/home/shield?style=flat-simple');
    expect(read.body).toBe(makeBadge({ label: '', message: '2', color: '#007ec6' }));
    expect(await stored(t, 'site/home')).toBe(2);
    const missing = await get(t, '/abacus/get/site/nothing/shield');
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toEqual({ error: 'Key not found' });
    const badColor = await get(t, '/abacus/hit/site/home/shield?bgcolor=nocolor');
    expect(badColor.statusCode).toBe(400);
    expect(await stored(t, 'site/home')).toBe(2);
  });
});
