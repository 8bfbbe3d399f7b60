// The README's examples (the Quick start's and the API reference's), run as written against
// `tally serve` with its default of one worker per core (only the address differs: the test's
// server is on a free port, so `127.0.0.1:8080` becomes its address and the CLI gets it from
// TALLY_URL). Each line's comment is the answer the README promises; the line must print exactly
// that (a JSON answer with `…` may have more fields than it shows).
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const run = promisify(execFile);
/** The admin token the API reference's examples start the server with. */
const ADMIN_TOKEN = 'change-me-to-a-long-secret';
const dir = tempDir('tally-readme');
let server: ServerProcess;

beforeAll(async () => {
  server = await startServer(
    {
      TALLY_WORKERS: '0',
      TALLY_ADMIN_TOKEN: ADMIN_TOKEN,
      TALLY_DATA_DIR: join(dir.path, 'data'),
      TALLY_SQLITE_PATH: join(dir.path, 'tally.db'),
    },
    30_000,
  );
});

afterAll(async () => {
  await server?.stop('SIGTERM');
  dir.remove();
});

type Example = { command: string; expected: string | undefined };

/** The example lines of the `n`th sh block of a README section. */
function examples(section: string, next: string, n: number): Example[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const text = readme.slice(readme.indexOf(section), readme.indexOf(next));
  const blocks = [...text.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
  const block = blocks[n];
  if (block === undefined) throw new Error(`${section} has no example block ${n}`);
  return block
    .trim()
    .split('\n')
    .map((line) => {
      const hash = line.indexOf('  #');
      const command = (hash < 0 ? line : line.slice(0, hash)).trim();
      const comment = hash < 0 ? undefined : line.slice(hash + 3).trim();
      // The answer is the comment's first word ("6   (the CLI …)" → "6"), or all of a JSON one.
      const expected = comment?.startsWith('{') ? comment : comment?.split(/\s+/)[0];
      return { command, expected };
    });
}

async function runExamples(list: Example[]): Promise<void> {
  expect(list.every((e) => e.expected !== undefined)).toBe(true);
  const address = server.url.replace('http://', '');
  for (const { command, expected } of list) {
    const { stdout } = await run('sh', ['-c', command.replaceAll('127.0.0.1:8080', address)], {
      cwd: ROOT,
      env: { ...process.env, TALLY_URL: server.url, TALLY_ADMIN_TOKEN: ADMIN_TOKEN },
    });
    if (expected?.startsWith('{')) {
      // `, …` (or `…`) stands for the fields the README leaves out.
      const partial = expected.includes('…');
      const shown = JSON.parse(expected.replace(/,?\s*…/g, ''));
      if (partial) expect(JSON.parse(stdout), command).toMatchObject(shown);
      else expect(JSON.parse(stdout), command).toEqual(shown);
    } else expect(stdout.trim(), command).toBe(expected);
  }
}

describe('the README', () => {
  it('Quick start: prints what each example line says it prints, whichever worker answers', async () => {
    const list = examples('## Quick start', '## API reference', 1);
    expect(list.length).toBeGreaterThanOrEqual(3);
    await runExamples(list);
  });

  it('API reference: prints what each example line says it prints', async () => {
    const list = examples('## API reference', '### CLI', 0);
    expect(list.length).toBeGreaterThanOrEqual(10);
    await runExamples(list);
  });
});
