// The README's Quick start examples, run as written against `tally serve` with its default of
// one worker per core (only the address differs: the test's server is on a free port, so
// `127.0.0.1:8080` becomes its address and the CLI gets it from TALLY_URL). Each line's comment
// is the answer the README promises; the line must print exactly that.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const run = promisify(execFile);
const dir = tempDir('tally-readme');
let server: ServerProcess;

beforeAll(async () => {
  server = await startServer(
    {
      TALLY_WORKERS: '0',
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

/** The Quick start's example commands: the second sh block after "## Quick start". */
function quickStartExamples(): Array<{ command: string; expected: string | undefined }> {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(
    readme.indexOf('## Quick start'),
    readme.indexOf('## API reference'),
  );
  const blocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
  const examples = blocks[1];
  if (examples === undefined) throw new Error('the Quick start has no example block');
  return examples
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

describe('the README Quick start', () => {
  it('prints what each example line says it prints, whichever worker answers', async () => {
    const examples = quickStartExamples();
    expect(examples.length).toBeGreaterThanOrEqual(3);
    expect(examples.every((e) => e.expected !== undefined)).toBe(true);
    const address = server.url.replace('http://', '');
    for (const { command, expected } of examples) {
      const { stdout } = await run('sh', ['-c', command.replaceAll('127.0.0.1:8080', address)], {
        cwd: ROOT,
        env: { ...process.env, TALLY_URL: server.url },
      });
      if (expected?.startsWith('{')) {
        expect(JSON.parse(stdout), command).toEqual(JSON.parse(expected));
      } else expect(stdout.trim(), command).toBe(expected);
    }
  });
});
