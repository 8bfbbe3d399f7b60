/**
 * @module http/badges — counter badges: the options a badge URL takes, and the renderer.
 *
 * Badges are drawn by shields.io's own library (`badge-maker`). Rendering one is about a
 * thousand times dearer than counting a hit, so a counting badge uses a template: per set of
 * options and per "shape" of the shown number (its digits replaced by 0: `1,234` and `5,678`
 * share `0,000`), the badge is drawn twice, once with all digits 0 and once with all 1, and the
 * places where the two differ are the digit slots. Verdana's digits are all one width, so
 * every number of that shape lays out the same and only its digits change; a template that
 * does not reproduce a third drawing exactly is not used (the badge is then drawn in full).
 */
import { makeBadge } from 'badge-maker';
import cssColor from 'css-color-converter';
import { TallyError } from '../errors.js';

export const BADGE_STYLES = ['flat', 'flat-square', 'plastic', 'for-the-badge', 'social'] as const;
export type BadgeStyle = (typeof BADGE_STYLES)[number];

/** How a badge looks; `base` and `abbreviated` shape the number it shows. */
export interface BadgeLook {
  readonly label: string;
  readonly color: string;
  readonly labelColor: string;
  readonly style: BadgeStyle;
  /** A data: URI (SVG or PNG, base64), drawn left of the label. */
  readonly logo: string | undefined;
}

export interface BadgeOptions extends BadgeLook {
  /** Count this request as a view (default true). */
  readonly count: boolean;
  /** Added to the shown value: counts carried over from another counter service. */
  readonly base: number;
  /** 1234 → 1.2k. */
  readonly abbreviated: boolean;
  /** What the number is: the counter's total, or its unique visitors (ever, or today). */
  readonly show: 'total' | 'uniques' | 'uniques-today';
}

/** shields.io's named colors and their aliases (badge-maker resolves them). */
const NAMED_COLORS = new Set([
  'brightgreen',
  'green',
  'yellow',
  'yellowgreen',
  'orange',
  'red',
  'blue',
  'grey',
  'gray',
  'lightgrey',
  'lightgray',
  'critical',
  'important',
  'success',
  'informational',
  'inactive',
]);
const HEX = /^#?(?:[0-9a-f]{3}){1,2}$/i;
const LOGO = /^data:image\/(?:svg\+xml|png);base64,[A-Za-z0-9+/]+={0,2}$/;
const MAX_LABEL = 64;
const MAX_LOGO = 8192;
const MAX_BASE = 1e15;

/** What a badge URL may say, for the error messages. */
function bad(message: string): TallyError {
  return new TallyError('INVALID_QUERY', message);
}

function flag(query: Record<string, unknown>, field: string, fallback: boolean): boolean {
  const raw = query[field];
  if (raw === undefined) return fallback;
  if (raw === 'true' || raw === '1' || raw === '') return true;
  if (raw === 'false' || raw === '0') return false;
  throw bad(`"${field}" must be true or false`);
}

function text(query: Record<string, unknown>, field: string): string | undefined {
  const raw = query[field];
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string') throw bad(`"${field}" may be given once`);
  return raw;
}

/** A color as badge-maker takes it: a shields name, 3 or 6 hex digits, or a CSS color. */
export function parseColor(field: string, raw: string | undefined, fallback: string): string {
  if (raw === undefined || raw === '') return fallback;
  const value = raw.trim().toLowerCase();
  if (NAMED_COLORS.has(value)) return value;
  if (HEX.test(value)) return value.startsWith('#') ? value : `#${value}`;
  if (value.length <= 40 && /^[a-z(][a-z0-9(),.%\s]*\)?$/.test(value)) {
    if (cssColor.fromString(value) !== null) return value;
  }
  throw bad(`"${field}" is not a color: use a shields.io name, hex digits or a CSS color`);
}

/** Parses a badge URL's query; throws INVALID_QUERY naming the first bad option. */
export function parseBadgeOptions(
  query: Record<string, unknown>,
  defaults: Partial<BadgeLook> = {},
): BadgeOptions {
  const label = text(query, 'label') ?? defaults.label ?? 'views';
  if (label.length > MAX_LABEL) throw bad(`"label" is longer than ${MAX_LABEL} characters`);
  const style = text(query, 'style') ?? defaults.style ?? 'flat';
  if (!(BADGE_STYLES as readonly string[]).includes(style)) {
    throw bad(`"style" must be one of ${BADGE_STYLES.join(', ')}`);
  }
  const logo = text(query, 'logo');
  if (logo !== undefined && (logo.length > MAX_LOGO || !LOGO.test(logo))) {
    throw bad(
      `"logo" must be a data:image/svg+xml;base64 or data:image/png;base64 URI of at most ${MAX_LOGO} characters`,
    );
  }
  const baseText = text(query, 'base');
  let base = 0;
  if (baseText !== undefined) {
    base = Number(baseText);
    if (!/^-?\d+$/.test(baseText) || Math.abs(base) > MAX_BASE) {
      throw bad(`"base" must be an integer within ±${MAX_BASE}`);
    }
  }
  const show = text(query, 'show') ?? 'total';
  if (show !== 'total' && show !== 'uniques' && show !== 'uniques-today') {
    throw bad('"show" must be total, uniques or uniques-today');
  }
  return {
    label,
    style: style as BadgeStyle,
    color: parseColor('color', text(query, 'color'), defaults.color ?? 'blue'),
    labelColor: parseColor('labelColor', text(query, 'labelColor'), defaults.labelColor ?? 'grey'),
    logo,
    count: flag(query, 'count', true),
    base,
    abbreviated: flag(query, 'abbreviated', false),
    show,
  };
}

const UNITS = ['', 'k', 'M', 'B', 'T', 'P'];

/** The number a badge shows: `base` added, and 1234 → 1.2k when abbreviated. */
export function badgeMessage(
  value: number,
  options: Pick<BadgeOptions, 'base' | 'abbreviated'>,
): string {
  const shown = value + options.base;
  if (!options.abbreviated) return String(shown);
  const sign = shown < 0 ? '-' : '';
  let rest = Math.abs(shown);
  let unit = 0;
  while (rest >= 1000 && unit < UNITS.length - 1) {
    rest /= 1000;
    unit++;
  }
  // One decimal below 10 (1.2k), none above (12k, 123k); 999.96k rounds up into the next unit.
  let digits = rest < 10 && unit > 0 ? Math.round(rest * 10) / 10 : Math.round(rest);
  if (digits >= 1000 && unit < UNITS.length - 1) {
    digits = 1;
    unit++;
  }
  return `${sign}${digits}${UNITS[unit]}`;
}

function draw(look: BadgeLook, message: string): string {
  // Without a label badge-maker draws the message alone, but only if no label color is given.
  return makeBadge({
    label: look.label,
    message,
    color: look.color,
    ...(look.label === '' ? {} : { labelColor: look.labelColor }),
    style: look.style,
    ...(look.logo === undefined ? {} : { logoBase64: look.logo }),
  });
}

/** A drawn badge cut at its digit slots: `parts[i]`, digit, `parts[i+1]`, … */
interface Template {
  readonly parts: readonly string[];
  /** Digits per occurrence of the message (it appears in the title, aria-label and texts). */
  readonly digits: number;
}

/** Builds the template for one shape, or null when the layout moves with the digits. */
function cut(look: BadgeLook, shape: string): Template | null {
  const zeros = draw(look, shape);
  const ones = draw(look, shape.replace(/0/g, '1'));
  const digits = shape.replace(/[^0]/g, '').length;
  if (digits === 0 || zeros.length !== ones.length) return null;
  const parts: string[] = [];
  let from = 0;
  for (let i = 0; i < zeros.length; i++) {
    if (zeros[i] !== ones[i]) {
      if (zeros[i] !== '0' || ones[i] !== '1') return null;
      parts.push(zeros.slice(from, i));
      from = i + 1;
    }
  }
  parts.push(zeros.slice(from));
  const slots = parts.length - 1;
  if (slots === 0 || slots % digits !== 0) return null;
  const template = { parts, digits };
  // Proof on a third drawing: the template must reproduce it byte for byte.
  const probe = shape.replace(/0/g, '7');
  return fill(template, probe) === draw(look, probe) ? template : null;
}

function fill(template: Template, message: string): string {
  const digits = message.replace(/[^0-9]/g, '');
  const { parts } = template;
  let out = parts[0] as string;
  for (let i = 1; i < parts.length; i++) {
    out += digits[(i - 1) % template.digits];
    out += parts[i] as string;
  }
  return out;
}

/** Draws badges through per-shape templates (bounded; a full cache starts over). */
export class BadgeRenderer {
  private readonly templates = new Map<string, Template | null>();

  constructor(private readonly maxTemplates = 2000) {}

  /** The SVG of a badge showing `message`, byte for byte what badge-maker draws. */
  render(look: BadgeLook, message: string): string {
    const shape = message.replace(/[0-9]/g, '0');
    const key = `${look.style}\u0000${look.label}\u0000${look.color}\u0000${look.labelColor}\u0000${look.logo ?? ''}\u0000${shape}`;
    let template = this.templates.get(key);
    if (template === undefined) {
      if (this.templates.size >= this.maxTemplates) this.templates.clear();
      template = cut(look, shape);
      this.templates.set(key, template);
    }
    return template === null ? draw(look, message) : fill(template, message);
  }

  /** Templates held (for tests). */
  size(): number {
    return this.templates.size;
  }
}

/** shields.io's endpoint schema (`img.shields.io/endpoint?url=…`). */
export function endpointBadge(look: BadgeLook, message: string): Record<string, unknown> {
  return {
    schemaVersion: 1,
    label: look.label,
    message,
    color: look.color.replace(/^#/, ''),
    labelColor: look.labelColor.replace(/^#/, ''),
    style: look.style,
  };
}
