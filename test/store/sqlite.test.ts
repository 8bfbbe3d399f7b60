import { join } from 'node:path';
import { afterAll } from 'vitest';
import { SqliteStore } from '../../src/store/sqlite.js';
import { tempDir } from '../helpers/tmp.js';
import { runStoreConformance } from './conformance.js';

const dir = tempDir('tally-sqlite');
let n = 0;
afterAll(() => dir.remove());

runStoreConformance('sqlite', {
  create: async () => new SqliteStore({ path: join(dir.path, `t${n++}.db`) }),
});
