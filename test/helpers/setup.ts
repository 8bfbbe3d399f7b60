// Runs in every test file: a file whose in-process apps answered anything their OpenAPI document
// does not describe fails (test/helpers/openapi-check.ts).
import { afterAll } from 'vitest';
import { violations } from './openapi-check.js';

afterAll(() => {
  if (violations.length === 0) return;
  const distinct = [...new Set(violations)];
  throw new Error(
    `${distinct.length} answer(s) do not match /openapi.json:\n${distinct.slice(0, 20).join('\n')}`,
  );
});
