/**
 * @module tools/badge-examples — writes the example badges the README shows (docs/badges/*.svg),
 * drawn by Tally's own renderer: `npx tsx tools/badge-examples.ts`. A test checks they are current.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BadgeRenderer, badgeMessage, parseBadgeOptions } from '../src/http/badges.js';

/** File name → the query of a badge URL and the value it shows. */
export const EXAMPLES: Record<string, { query: Record<string, string>; value: number }> = {
  'views.svg': { query: {}, value: 1234 },
  'visitors-abbreviated.svg': {
    query: { label: 'visitors', color: 'brightgreen', abbreviated: 'true' },
    value: 48_213,
  },
  'flat-square.svg': {
    query: { style: 'flat-square', color: 'orange', label: 'downloads' },
    value: 907,
  },
  'for-the-badge.svg': {
    query: { style: 'for-the-badge', label: 'page views', color: '#6f42c1' },
    value: 15_402,
  },
  'social.svg': { query: { style: 'social', label: 'likes' }, value: 321 },
  'plastic-base.svg': { query: { style: 'plastic', label: 'hits', base: '10000' }, value: 52 },
};

export function drawExample(name: string): string {
  const example = EXAMPLES[name];
  if (example === undefined) throw new Error(`no example ${name}`);
  const options = parseBadgeOptions(example.query);
  return new BadgeRenderer().render(options, badgeMessage(example.value, options));
}

if (process.argv[1]?.endsWith('badge-examples.ts')) {
  const dir = join(import.meta.dirname, '..', 'docs', 'badges');
  for (const name of Object.keys(EXAMPLES)) writeFileSync(join(dir, name), drawExample(name));
  process.stdout.write(`wrote ${Object.keys(EXAMPLES).length} badges to ${dir}\n`);
}
