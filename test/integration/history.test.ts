// History, rankings and unique visitors over HTTP on SQLite: increments land in the current
// minute, hour and day buckets once flushed; /history answers JSON and CSV; bad queries answer
// 400 INVALID_QUERY; /top ranks a namespace by total and by day; with TALLY_UNIQUES on, visitors
// (address + User-Agent) are counted once each in readings and badges, and off, asking for them
// is a clear 400.
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Tally } from '../../src/app.js';
import type { ConfigInput } from '../../src/config.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import { testApp } from '../helpers/app.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('tally-history');
let n = 0;
afterAll(() => dir.remove());

let tally: Tally | undefined;
afterEach(async () => {
  await tally?.close();
  tally = undefined;
});

async function make(overrides: ConfigInput = {}): Promise<Tally> {
  tally = await testApp(overrides, new SqliteStore({ path: join(dir.path, `h${n++}.db`) }));
  return tally;
}

const get = (t: Tally, url: string, headers: Record<string, string> = {}, remote = '127.0.0.1') =>
  t.app.inject({ method: 'GET', url, headers, remoteAddress: remote });

const hit = (
  t: Tally,
  path: string,
  by = 1,
  headers: Record<string, string> = {},
  remote = '127.0.0.1',
) =>
  t.app.inject({
    method: 'POST',
    url: `${path}/increment`,
    payload: { by },
    headers,
    remoteAddress: remote,
  });

/** Every accepted increment is in the store (strong read). */
async function flushed(t: Tally, path: string): Promise<number> {
  return (await get(t, `${path}?consistency=strong`)).json().value;
}

describe('history', () => {
  it('counts flushed increments in the current minute, hour and day buckets', async () => {
    const t = await make();
    const path = '/api/v1/namespaces/blog/counters/post-1';
    const before = Date.now();
    for (let i = 0; i < 5; i++) expect((await hit(t, path, 2)).statusCode).toBe(202);
    expect(await flushed(t, path)).toBe(10);
    const now = Date.now();
    for (const granularity of ['minute', 'hour', 'day']) {
      const res = await get(
        t,
        `${path}/history?granularity=${granularity}&from=${before}&to=${now}`,
      );
      expect(res.statusCode).toBe(200);
      const body = res.json();
      expect(body).toMatchObject({
        name: 'blog/post-1',
        namespace: 'blog',
        key: 'post-1',
        granularity,
      });
      const total = body.buckets.reduce((sum: number, b: { count: number }) => sum + b.count, 0);
      expect(total).toBe(10);
      expect(body.buckets.at(-1).count).toBe(10);
      expect(Number.isNaN(Date.parse(body.buckets[0].start))).toBe(false);
    }
    // The default range of the hour view: 48 hours, every bucket present.
    const hours = (await get(t, `${path}/history`)).json().buckets;
    expect(hours).toHaveLength(49);
    expect(hours.slice(0, -1).every((b: { count: number }) => b.count === 0)).toBe(true);
  });

  it('answers CSV for spreadsheets', async () => {
    const t = await make();
    await hit(t, '/api/v1/counters/page', 3);
    expect(await flushed(t, '/api/v1/counters/page')).toBe(3);
    const res = await get(
      t,
      '/api/v1/counters/page/history?granularity=day&format=csv&from=2026-01-01',
    );
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/csv; charset=utf-8');
    const lines = res.body.trim().split('\n');
    expect(lines[0]).toBe('start,count');
    expect(lines.at(-1)).toMatch(/^\d{4}-\d{2}-\d{2}T00:00:00\.000Z,3$/);
    expect(lines[1]).toBe('2026-01-01T00:00:00.000Z,0');
  });

  it('refuses bad queries with INVALID_QUERY and changes nothing', async () => {
    const t = await make();
    const path = '/api/v1/counters/page/history';
    for (const query of [
      'granularity=week',
      'format=xml',
      'from=yesterday',
      'from=2026-12-02&to=2026-12-01',
      'granularity=minute&from=2026-11-01&to=2026-11-04',
      'granularity=hour&from=2026-01-01&to=2026-12-01',
    ]) {
      const res = await get(t, `${path}?${query}`);
      expect(res.statusCode, query).toBe(400);
      expect(res.json().error.code, query).toBe('INVALID_QUERY');
    }
    expect((await get(t, '/api/v1/counters/bad name/history')).statusCode).toBe(400);
    expect((await get(t, '/api/v1/counters')).json().items).toEqual([]);
  });
});

describe('top counters', () => {
  it('ranks a namespace by total and by day, leaving other namespaces out', async () => {
    const t = await make();
    await hit(t, '/api/v1/namespaces/site/counters/home', 5);
    await hit(t, '/api/v1/namespaces/site/counters/about', 2);
    await hit(t, '/api/v1/namespaces/site/counters/blog', 9);
    await hit(t, '/api/v1/namespaces/other/counters/big', 100);
    await hit(t, '/api/v1/counters/flat', 50);
    expect(await flushed(t, '/api/v1/counters/flat')).toBe(50);
    const total = (await get(t, '/api/v1/namespaces/site/top?limit=2')).json();
    expect(total).toMatchObject({ namespace: 'site', by: 'total' });
    expect(total.items.map((i: { key: string; value: number }) => [i.key, i.value])).toEqual([
      ['blog', 9],
      ['home', 5],
    ]);
    const today = (await get(t, '/api/v1/namespaces/site/top?by=day')).json();
    expect(today.items.map((i: { key: string }) => i.key)).toEqual(['blog', 'home', 'about']);
    expect(today.day).toBe(new Date().toISOString().slice(0, 10));
    // The default namespace holds the flat names only.
    const flat = (await get(t, '/api/v1/namespaces/default/top?by=day')).json();
    expect(flat.items.map((i: { name: string }) => i.name)).toEqual(['flat']);
    // A day with nothing: an empty ranking.
    expect(
      (await get(t, '/api/v1/namespaces/site/top?by=day&day=2020-01-01')).json().items,
    ).toEqual([]);
    for (const q of ['by=week', 'limit=0', 'limit=101', 'day=never']) {
      const res = await get(t, `/api/v1/namespaces/site/top?${q}`);
      expect(res.statusCode, q).toBe(400);
      expect(res.json().error.code, q).toBe('INVALID_QUERY');
    }
  });
});

describe('unique visitors', () => {
  const visitors = [
    { remote: '10.0.0.1', ua: 'Firefox' },
    { remote: '10.0.0.1', ua: 'Chrome' },
    { remote: '10.0.0.2', ua: 'Firefox' },
  ];

  it('counts each visitor once per counter in readings, history and badges', async () => {
    const t = await make({ uniques: true });
    const path = '/api/v1/namespaces/blog/counters/post';
    // Every visitor three times (refreshes), and one only on another counter.
    for (let round = 0; round < 3; round++) {
      for (const v of visitors) {
        expect((await hit(t, path, 1, { 'user-agent': v.ua }, v.remote)).statusCode).toBe(202);
      }
    }
    await hit(
      t,
      '/api/v1/namespaces/blog/counters/other',
      1,
      { 'user-agent': 'Safari' },
      '10.0.0.9',
    );
    expect(await flushed(t, path)).toBe(9);
    const reading = (await get(t, `${path}?consistency=strong`)).json();
    expect(reading).toMatchObject({ value: 9, uniques: { total: 3, today: 3 } });
    const days = (await get(t, `${path}/history?granularity=day`)).json().buckets;
    expect(days.at(-1)).toMatchObject({ count: 9, uniques: 3 });
    const csv = (await get(t, `${path}/history?granularity=day&format=csv`)).body
      .trim()
      .split('\n');
    expect(csv[0]).toBe('start,count,uniques');
    expect(csv.at(-1)).toMatch(/,9,3$/);
    const badge = await get(t, '/badge/blog/post.json?show=uniques&count=false');
    expect(badge.json().message).toBe('3');
    // A counting badge with show=uniques counts the view and the visitor (already seen: 3).
    const counted = await get(
      t,
      '/badge/blog/other.json?show=uniques',
      { 'user-agent': 'Safari' },
      '10.0.0.9',
    );
    expect(counted.statusCode).toBe(200);
    expect(await flushed(t, '/api/v1/namespaces/blog/counters/other')).toBe(2);
  });

  it('counts visitors of the CountAPI and Abacus hit routes too', async () => {
    const t = await make({ uniques: true });
    for (const v of [...visitors, ...visitors]) {
      const countapi = await get(t, '/countapi/hit/site/home', { 'user-agent': v.ua }, v.remote);
      expect(countapi.statusCode).toBe(200);
      const abacus = await get(t, '/abacus/hit/site/about', { 'user-agent': v.ua }, v.remote);
      expect(abacus.statusCode).toBe(200);
    }
    for (const key of ['home', 'about']) {
      const reading = (
        await get(t, `/api/v1/namespaces/site/counters/${key}?consistency=strong`)
      ).json();
      expect(reading, key).toMatchObject({ value: 6, uniques: { total: 3, today: 3 } });
    }
  });

  it('keeps no raw address or User-Agent in the store', async () => {
    const t = await make({ uniques: true });
    await hit(t, '/api/v1/counters/page', 1, { 'user-agent': 'Secret-UA/1.0' }, '10.9.8.7');
    expect(await flushed(t, '/api/v1/counters/page')).toBe(1);
    await new Promise((r) => setTimeout(r, 200));
    const db = new SqliteStore({ path: join(dir.path, `h${n - 1}.db`) });
    try {
      const raw = JSON.stringify(await db.list({ prefix: '', limit: 1000 }));
      const visitors = await db.countVisitors(['page!all']);
      expect(visitors).toEqual([1]);
      expect(raw).not.toContain('10.9.8.7');
      expect(raw).not.toContain('Secret-UA');
    } finally {
      await db.close();
    }
  });

  it('answers 400 UNIQUES_OFF when asked for visitors it does not count', async () => {
    const t = await make();
    await hit(t, '/api/v1/counters/page', 1);
    const reading = (await get(t, '/api/v1/counters/page')).json();
    expect(reading.uniques).toBeUndefined();
    const json = await get(t, '/badge/page.json?show=uniques');
    expect(json.statusCode).toBe(400);
    expect(json.json().error.code).toBe('UNIQUES_OFF');
    const svg = await get(t, '/badge/page.svg?show=uniques');
    expect(svg.statusCode).toBe(400);
    expect(svg.headers['tally-error-code']).toBe('UNIQUES_OFF');
    // Refused before counting: the view did not count.
    expect(await flushed(t, '/api/v1/counters/page')).toBe(1);
  });
});
