// The README's configuration table is the settings table: every setting appears with its
// variable, flag and default, so the docs cannot drift from the code.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfig, SETTINGS } from '../../src/config.js';
import { ROOT } from '../helpers/server-process.js';

describe('configuration', () => {
  it('documents every setting in the README with its flag and default', () => {
    const readme = readFileSync(`${ROOT}README.md`, 'utf8');
    const defaults = loadConfig({}) as Record<string, unknown>;
    for (const [key, setting] of Object.entries(SETTINGS)) {
      const flag = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
      const value = defaults[key];
      const shown = value === undefined ? '—' : String(value);
      const row = `| \`${setting.env}\` | \`${flag}\` | \`${shown}\` | ${setting.doc} |`;
      expect(readme, `README row for ${setting.env}`).toContain(row);
    }
  });
});
