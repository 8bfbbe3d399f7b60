// `tally import` against a real server process: CSV and JSON lists (CountAPI and Abacus shapes)
// are set over HTTP, a second run changes nothing, a bad row stops the import before any write,
// a wrong token fails each counter with exit code 1. The CLI runs as `node dist/main.js import`.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  detectFormat,
  ImportInputError,
  type ImportIO,
  importCommand,
  importRows,
  parseImport,
} from '../../src/cli/import.js';
import { MAIN, ROOT, type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const TOKEN = 'import-admin-token-0123456789';
const dir = tempDir('tally-import');
let server: ServerProcess;

beforeAll(async () => {
  server = await startServer({
    TALLY_STORE: 'memory',
    TALLY_DATA_DIR: join(dir.path, 'data'),
    TALLY_ADMIN_TOKEN: TOKEN,
  });
});
afterAll(async () => {
  await server?.stop('SIGKILL');
  dir.remove();
});

const exec = promisify(execFile);

/** This process's environment without the CLI's defaults, plus `env`. */
function cliEnv(env: Record<string, string> = {}): NodeJS.ProcessEnv {
  const { TALLY_URL: _url, TALLY_ADMIN_TOKEN: _token, ...rest } = process.env;
  return { ...rest, ...env };
}

/** Runs the CLI; resolves with its output and exit code, whatever the code. */
async function cli(args: string[], env: Record<string, string> = {}) {
  try {
    const r = await exec(process.execPath, [MAIN, ...args], { cwd: ROOT, env: cliEnv(env) });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

function file(name: string, text: string): string {
  const path = join(dir.path, name);
  writeFileSync(path, text);
  return path;
}

/** The stored value over the native API; `ref` is a flat name or `namespace/key`. */
async function stored(ref: string): Promise<number> {
  const slash = ref.indexOf('/');
  const path =
    slash < 0
      ? `/api/v1/counters/${ref}`
      : `/api/v1/namespaces/${ref.slice(0, slash)}/counters/${ref.slice(slash + 1)}`;
  const r = await fetch(`${server.url}${path}?consistency=strong`);
  expect(r.status).toBe(200);
  return ((await r.json()) as { value: number }).value;
}

async function put(ref: string, value: number): Promise<void> {
  const r = await fetch(`${server.url}/api/v1/counters/${ref}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ value }),
  });
  expect(r.status).toBe(200);
}

/** importCommand in this process, its lines collected. */
async function direct(path: string, flags: Record<string, unknown> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const io: ImportIO = {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    read: (f) => readFile(f, 'utf8'),
  };
  const code = await importCommand(path, { url: server.url, token: TOKEN, ...flags }, io);
  return { code, out, err };
}

const lines = (s: string) => s.trim().split('\n');

describe('tally import', () => {
  it('sets the counters of a CSV and a JSON file, then reports them unchanged', async () => {
    await put('site-home', 5);
    const csv = file(
      'counts.csv',
      [
        'namespace,key,value',
        'mysite.com,home,120',
        ',site-home,42',
        'default,flat.name,3',
        'mysite.com,about,0',
        '"mysite.com","contact",-7',
        'default,_hidden,4',
        '',
      ].join('\r\n'),
    );
    const json = file(
      'counts.json',
      JSON.stringify([
        // CountAPI /info answers.
        {
          namespace: 'mysite.com',
          key: 'blog',
          ttl: -1,
          created: 1600000000000,
          update_lowerbound: 0,
          update_upperbound: 1,
          enable_reset: false,
          value: 9001,
        },
        // Abacus /info answers.
        {
          exists: true,
          expires_in: -1e-9,
          expires_str: '-1ns',
          full_key: 'K:abacus-ns:page_views',
          is_genuine: true,
          value: 77,
        },
        { full_key: 'K:default:stars', value: 12 },
        // /get answers wrapped with their path, and Tally names.
        { path: 'other/key-1', value: 1 },
        { path: '/get/other/key-2', value: 2 },
        { name: 'other/key-3', value: Number.MAX_SAFE_INTEGER },
      ]),
    );

    const first = await cli(['import', csv, '--url', server.url, '--token', TOKEN]);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(lines(first.stdout)).toEqual([
      'set mysite.com/home 0 -> 120',
      'set site-home 5 -> 42',
      'set flat.name 0 -> 3',
      'unchanged mysite.com/about 0',
      'set mysite.com/contact 0 -> -7',
      'set _hidden 0 -> 4',
      'imported 5, unchanged 1, failed 0',
    ]);
    // URL and token from the environment, as the other client commands.
    const second = await cli(['import', json], { TALLY_URL: server.url, TALLY_ADMIN_TOKEN: TOKEN });
    expect(second.code).toBe(0);
    expect(lines(second.stdout)).toEqual([
      'set mysite.com/blog 0 -> 9001',
      'set abacus-ns/page_views 0 -> 77',
      'set stars 0 -> 12',
      'set other/key-1 0 -> 1',
      'set other/key-2 0 -> 2',
      `set other/key-3 0 -> ${Number.MAX_SAFE_INTEGER}`,
      'imported 6, unchanged 0, failed 0',
    ]);

    const expected: Record<string, number> = {
      'mysite.com/home': 120,
      'site-home': 42,
      'flat.name': 3,
      'mysite.com/about': 0,
      'mysite.com/contact': -7,
      'default/_hidden': 4,
      'mysite.com/blog': 9001,
      'abacus-ns/page_views': 77,
      stars: 12,
      'other/key-1': 1,
      'other/key-2': 2,
      'other/key-3': Number.MAX_SAFE_INTEGER,
    };
    for (const [ref, value] of Object.entries(expected)) expect(await stored(ref)).toBe(value);
    // The compatible routes see the same counters.
    const viaCountapi = await fetch(`${server.url}/countapi/get/mysite.com/home`);
    expect(await viaCountapi.json()).toEqual({ value: 120 });
    const viaAbacus = await fetch(`${server.url}/abacus/get/abacus-ns/page_views`);
    expect(await viaAbacus.json()).toEqual({ value: 77 });

    // Again: nothing changes, and the report says so.
    const again = await cli(['import', csv, '--url', server.url, '--token', TOKEN]);
    expect(again.code).toBe(0);
    expect(lines(again.stdout)).toEqual([
      'unchanged mysite.com/home 120',
      'unchanged site-home 42',
      'unchanged flat.name 3',
      'unchanged mysite.com/about 0',
      'unchanged mysite.com/contact -7',
      'unchanged _hidden 4',
      'imported 0, unchanged 6, failed 0',
    ]);
    const againJson = await direct(json);
    expect(againJson.code).toBe(0);
    expect(againJson.out.at(-1)).toBe('imported 0, unchanged 6, failed 0');
    expect(againJson.out.slice(0, -1).every((l) => l.startsWith('unchanged '))).toBe(true);
    for (const [ref, value] of Object.entries(expected)) expect(await stored(ref)).toBe(value);
  }, 60_000);

  it('sets values rather than adding them, so traffic since is overwritten', async () => {
    const path = file('overwrite.json', JSON.stringify({ 'ow/a': 10, 'ow-b': 20 }));
    expect((await direct(path)).code).toBe(0);
    await fetch(`${server.url}/api/v1/namespaces/ow/counters/a/increment?consistency=strong`, {
      method: 'POST',
    });
    expect(await stored('ow/a')).toBe(11);
    const r = await direct(path);
    expect(r.out).toEqual([
      'set ow/a 11 -> 10',
      'unchanged ow-b 20',
      'imported 1, unchanged 1, failed 0',
    ]);
    expect(await stored('ow/a')).toBe(10);
  });

  it('prints what would change on --dry-run and writes nothing, also from stdin', async () => {
    await put('dry-a', 1);
    const text = 'name,value\ndry-a,1\ndry/b,50\n';
    const run = exec(process.execPath, [MAIN, 'import', '-', '--dry-run', '--url', server.url], {
      cwd: ROOT,
      env: cliEnv(),
    });
    run.child.stdin?.end(text);
    const { stdout, stderr } = await run;
    expect(stderr).toBe('');
    expect(lines(stdout)).toEqual([
      'unchanged dry-a 1',
      'would set dry/b 0 -> 50',
      'would import 1, unchanged 1, failed 0 (dry run: nothing written)',
    ]);
    expect(await stored('dry/b')).toBe(0);
  });

  it('refuses a file with bad rows, naming each line, and writes nothing', async () => {
    const path = file(
      'bad.csv',
      [
        'namespace,key,value',
        'good,one,5',
        'good,two,12x',
        'bad ns,three,1',
        'good,four',
        'good,five,9007199254740992',
        'good,one,6',
      ].join('\n'),
    );
    const r = await cli(['import', path, '--url', server.url, '--token', TOKEN]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(lines(r.stderr)).toEqual([
      `tally: ${path}: line 3: value "12x" is not an integer`,
      `tally: ${path}: line 4: namespace "bad ns" is not valid (1-64 characters of A-Za-z0-9_.-, not only dots)`,
      `tally: ${path}: line 5: expected 3 fields (namespace,key,value), found 2`,
      `tally: ${path}: line 6: value 9007199254740992 is outside ±(2^53-1)`,
      `tally: ${path}: line 7: good/one is listed again (first at line 2)`,
      `tally: ${path}: nothing imported; fix the input and run again`,
    ]);
    expect(await stored('good/one')).toBe(0);
  });

  it('fails each counter it cannot set on a wrong token, with exit code 1', async () => {
    await put('tok-same', 3);
    const path = file('token.csv', 'key,value\ntok-same,3\ntok-new,8\n');
    const r = await cli(['import', path, '--url', server.url, '--token', 'wrong-token']);
    expect(r.code).toBe(1);
    expect(lines(r.stdout)).toEqual([
      'unchanged tok-same 3',
      expect.stringMatching(/^failed tok-new: UNAUTHORIZED \(.+\)$/),
      'imported 0, unchanged 1, failed 1',
    ]);
    expect(await stored('tok-new')).toBe(0);
    // No token at all: a hint on stderr, the same failure.
    const none = await cli(['import', path, '--url', server.url]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('no token');
    expect(none.stdout).toContain('failed tok-new: UNAUTHORIZED');
  });

  it('fails every counter when the server cannot be reached', async () => {
    const path = file('down.json', JSON.stringify({ x: 1 }));
    const r = await direct(path, { url: 'http://127.0.0.1:1' });
    expect(r.code).toBe(1);
    expect(r.out[0]).toMatch(/^failed x: UNREACHABLE \(/);
    expect(r.out[1]).toBe('imported 0, unchanged 0, failed 1');
  });

  it('reports in input order with many in flight', async () => {
    const rows = Array.from({ length: 60 }, (_, i) => ({ name: `order/c${i}`, value: i + 1 }));
    const seen: string[] = [];
    const report = await importRows(
      rows.map((r, i) => ({ ...r, at: `index ${i}` })),
      { url: server.url, token: TOKEN, concurrency: 16 },
      (o) => seen.push(o.name),
    );
    expect(report).toMatchObject({ imported: 60, unchanged: 0, failed: 0 });
    expect(seen).toEqual(rows.map((r) => r.name));
    expect(await stored('order/c59')).toBe(60);
  });

  it('checks its options', async () => {
    const path = file('opts.json', '{}');
    expect((await direct(path, { format: 'xml' })).err).toEqual([
      'tally: --format must be csv or json, not "xml"',
    ]);
    expect((await direct(path, { concurrency: '0' })).code).toBe(1);
    expect((await direct(join(dir.path, 'missing.csv'))).err[0]).toMatch(/cannot read .*missing/);
    // An empty list is nothing to do.
    expect((await direct(path)).out).toEqual(['imported 0, unchanged 0, failed 0']);
  });
});

describe('reading import lists', () => {
  const problems = (text: string, format: 'csv' | 'json') => {
    try {
      parseImport(text, format);
    } catch (err) {
      if (err instanceof ImportInputError) return err.problems;
      throw err;
    }
    return [];
  };

  it('detects the format from the extension, else the content', () => {
    expect(detectFormat('a.CSV', '[')).toBe('csv');
    expect(detectFormat('a.json', 'key,value')).toBe('json');
    expect(detectFormat('-', '  [{"name":"a","value":1}]')).toBe('json');
    expect(detectFormat('counts.txt', '\uFEFF{"a":1}')).toBe('json');
    expect(detectFormat('counts.txt', 'key,value')).toBe('csv');
    expect(detectFormat('a.json', '', 'csv')).toBe('csv');
  });

  it('reads every CSV header, in any column order', () => {
    const names = (text: string) => parseImport(text, 'csv').map((r) => [r.name, r.value]);
    expect(names('key,value\na,1\n_b,2\n')).toEqual([
      ['a', 1],
      ['_b', 2],
    ]);
    expect(names('value,key,namespace\n3,k,ns\n4,j,\n')).toEqual([
      ['ns/k', 3],
      ['j', 4],
    ]);
    expect(names('Name,Value\nns/k,1\ndefault/x,2\nflat:name,3\n')).toEqual([
      ['ns/k', 1],
      ['x', 2],
      ['flat:name', 3],
    ]);
    expect(problems('count,value\na,1\n', 'csv')).toEqual([
      'line 1: the header must be namespace,key,value or key,value or name,value (found "count,value")',
    ]);
    expect(problems('', 'csv')[0]).toContain('header');
    expect(problems('key,value\n"a,1\n', 'csv')).toEqual(['line 2: a quoted field is not closed']);
    expect(problems('key,value\nns/k,1\n', 'csv')[0]).toContain('line 2: key "ns/k" has a "/"');
  });

  it('reads JSON arrays of CountAPI, Abacus and Tally answers, and maps', () => {
    const rows = parseImport(
      JSON.stringify([
        { namespace: 'default', key: 'a', value: 1 },
        { key: 'b', value: 2 },
        { name: 'ns/c', namespace: 'ns', key: 'c', value: 3 },
        { full_key: 'K:ns:d', value: 4 },
        { path: 'https://api.countapi.xyz/get/ns/e', value: 5 },
        { path: '/info/f', value: 6 },
        { path: 'g', value: 7 },
      ]),
      'json',
    );
    expect(rows.map((r) => `${r.at} ${r.name}=${r.value}`)).toEqual([
      'index 0 a=1',
      'index 1 b=2',
      'index 2 ns/c=3',
      'index 3 ns/d=4',
      'index 4 ns/e=5',
      'index 5 f=6',
      'index 6 g=7',
    ]);
    const map = parseImport('{"ns/key": 42, "flat": -1}', 'json');
    expect(map.map((r) => [r.name, r.value, r.at])).toEqual([
      ['ns/key', 42, 'entry "ns/key"'],
      ['flat', -1, 'entry "flat"'],
    ]);
  });

  it('names the index of each bad JSON row', () => {
    expect(
      problems(
        JSON.stringify([
          { namespace: 'ns', key: 'ok', value: 1 },
          { namespace: 'ns', key: 'x', value: 1.5 },
          { namespace: 'ns', key: 'y', value: '7' },
          { value: 3 },
          { namespace: null, key: null, value: null },
          { full_key: 'K:ns:gone', exists: false, value: -1 },
          { full_key: 'ns:key', value: 1 },
          { name: 'ns/a', full_key: 'K:ns:b', value: 1 },
          { path: '/hit/ns/k', value: 1 },
          { namespace: 'ns', key: '..', value: 1 },
          'ns/ok',
          { name: 'ns/ok', value: 2 },
        ]),
        'json',
      ),
    ).toEqual([
      'index 1: value 1.5 is not an integer',
      'index 2: "value" must be an integer, found "7"',
      'index 3: names no counter: give "namespace" and "key", "name", "full_key" or "path"',
      'index 4: "value" is null: the counter did not exist where it was read; leave it out',
      'index 5: ns/gone did not exist where it was read ("exists": false); leave it out',
      'index 6: "full_key" must look like "K:namespace:key", found "ns:key"',
      'index 7: "name" names ns/a but "full_key" names ns/b',
      'index 8: "path" "/hit/ns/k" is not a /get/ or /info/ request path (write "namespace/key" for a counter)',
      'index 9: key ".." is not valid (1-64 characters of A-Za-z0-9_.-, not only dots)',
      'index 10: expected an object with a counter and its "value", found "ns/ok"',
      'index 11: ns/ok is listed again (first at index 0)',
    ]);
    expect(problems('{"a": 1, "b c": 2, "d": "3"}', 'json')).toEqual([
      'entry "b c": the name "b c" is neither a counter name nor "namespace/key"',
      'entry "d": "value" must be an integer, found "3"',
    ]);
    expect(problems('{"namespace": "ns", "key": "k", "value": 1}', 'json')[0]).toContain(
      'put single answers in an array',
    );
    expect(problems('[{"name": "a", "value": 1},]', 'json')[0]).toMatch(/^not valid JSON: /);
    expect(problems('42', 'json')[0]).toContain('must be an array');
  });
});
