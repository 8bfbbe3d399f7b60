// The docs name files that exist: every `src/…`, `test/…` or `tools/…` path in README.md and
// docs/*.md, and every entry of docs/architecture.md's folder list, is in the tree.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/server-process.js';

const docs = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

describe('docs', () => {
  it('name only files that exist', () => {
    const missing: string[] = [];
    for (const doc of docs) {
      const text = readFileSync(join(ROOT, doc), 'utf8');
      for (const [path] of text.matchAll(/\b(?:src|test|tools)\/[A-Za-z0-9_./-]+\.(?:ts|js)\b/g)) {
        if (!existsSync(join(ROOT, path))) missing.push(`${doc}: ${path}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('list only folders and files that exist in docs/architecture.md', () => {
    const text = readFileSync(join(ROOT, 'docs/architecture.md'), 'utf8');
    const block = text.slice(text.indexOf('## Folders'));
    const tree = (block.match(/```\n([\s\S]*?)```/)?.[1] ?? '').split('\n');
    const missing: string[] = [];
    const parents: string[] = [];
    for (const line of tree) {
      const m = /^( *)(\S+)\s/.exec(`${line} `);
      // Entries sit at indent 0, 2 or 4; deeper lines continue a description.
      const indent = (m?.[1] as string | undefined)?.length ?? 99;
      if (m === null || indent > 4 || !/^[a-z][\w.-]*\/?$/.test(m[2] as string)) continue;
      const depth = indent / 2;
      parents.length = depth;
      const path = join(...parents, m[2] as string);
      if (!existsSync(join(ROOT, path))) missing.push(path);
      if ((m[2] as string).endsWith('/')) parents[depth] = m[2] as string;
    }
    expect(tree.length).toBeGreaterThan(10);
    expect(missing).toEqual([]);
  });
});
