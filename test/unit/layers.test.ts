// The import check that `npm run lint` runs: it passes on src/, and it does catch a module
// importing from a higher layer (so it cannot pass by accident).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkLayers } from '../../tools/check-layers.js';
import { ROOT } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

describe('layers', () => {
  it('every import in src/ points down', () => {
    expect(checkLayers(join(ROOT, 'src'))).toEqual([]);
  });

  it('reports a store importing from the service layer, a module in no layer, and request.log', () => {
    const dir = tempDir('tally-layers');
    mkdirSync(join(dir.path, 'store'));
    mkdirSync(join(dir.path, 'counters'));
    writeFileSync(join(dir.path, 'counters/service.ts'), 'export const limit = 1;\n');
    writeFileSync(
      join(dir.path, 'store/sqlite.ts'),
      "import type { X } from '../domain.js';\nimport {\n  limit,\n} from '../counters/service.js';\n",
    );
    writeFileSync(join(dir.path, 'stray.ts'), '');
    mkdirSync(join(dir.path, 'http'));
    writeFileSync(
      join(dir.path, 'http/route.ts'),
      "export const f = (request) => request.log.info('x');\n",
    );
    const problems = checkLayers(dir.path);
    dir.remove();
    expect(problems).toHaveLength(3);
    expect(problems).toContain(
      'http/route.ts: request.log discards every line; log through requestLog',
    );
    expect(problems.some((p) => p.startsWith('store/sqlite.ts imports counters/service.ts'))).toBe(
      true,
    );
    expect(problems.some((p) => p.startsWith('stray.ts: not in any layer'))).toBe(true);
  });
});
