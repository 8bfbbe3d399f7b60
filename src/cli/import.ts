/**
 * @module cli/import — `tally import`: sets counters on a running server from a CSV or JSON list,
 * such as the values collected from CountAPI or Abacus before moving to Tally. It sets values (it
 * never adds) and reads each counter first, so running it again with the same list changes
 * nothing and reports every counter unchanged.
 */
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { TallyApiError, TallyClient } from '../client/index.js';
import {
  counterName,
  DEFAULT_NAMESPACE,
  isValidName,
  isValidPart,
  parseCounterRef,
  splitName,
} from '../domain.js';

export type ImportFormat = 'csv' | 'json';

/** One counter to set, and where the input named it (for messages). */
export interface ImportRow {
  /** The stored name: the key itself in the default namespace, else `namespace/key`. */
  readonly name: string;
  readonly value: number;
  /** Where in the input: `line 3`, `index 2` or `entry "ns/key"`. */
  readonly at: string;
}

/** The input cannot be imported; each problem names its line, index or entry. */
export class ImportInputError extends Error {
  override name = 'ImportInputError';
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
  }
}

/** A problem with one row, caught where the row's position is known. */
class RowProblem extends Error {}

/** `format` when given, else the file's extension (.csv, .json), else the first character. */
export function detectFormat(file: string, text: string, format?: ImportFormat): ImportFormat {
  if (format !== undefined) return format;
  const ext = extname(file).toLowerCase();
  if (ext === '.csv') return 'csv';
  if (ext === '.json') return 'json';
  const first = text.replace(/^\uFEFF/, '').trimStart()[0];
  return first === '[' || first === '{' ? 'json' : 'csv';
}

/**
 * The counters `text` lists, checked: names, values (safe integers) and no counter twice. Throws
 * an {@link ImportInputError} naming every bad line, index or entry.
 */
export function parseImport(text: string, format: ImportFormat): ImportRow[] {
  const body = text.replace(/^\uFEFF/, '');
  const problems: string[] = [];
  const rows = format === 'csv' ? parseCsv(body, problems) : parseJson(body, problems);
  const seen = new Map<string, string>();
  for (const row of rows) {
    const first = seen.get(row.name);
    if (first === undefined) seen.set(row.name, row.at);
    else problems.push(`${row.at}: ${row.name} is listed again (first at ${first})`);
  }
  if (problems.length > 0) throw new ImportInputError(problems);
  return rows;
}

// --- CSV ---------------------------------------------------------------------------------------

/** The headers a CSV may have, in any column order. */
const CSV_HEADERS = [
  ['namespace', 'key', 'value'],
  ['key', 'value'],
  ['name', 'value'],
];

function parseCsv(text: string, problems: string[]): ImportRow[] {
  const lines = text.split(/\r?\n/);
  const headerIndex = lines.findIndex((l) => l.trim() !== '');
  if (headerIndex < 0) {
    problems.push('the CSV is empty: it needs a header line (namespace,key,value)');
    return [];
  }
  const header = splitCsvLine(lines[headerIndex] as string)?.map((h) => h.toLowerCase());
  const known = CSV_HEADERS.find(
    (h) =>
      header !== undefined &&
      header.length === h.length &&
      h.every((column) => header.includes(column)),
  );
  if (header === undefined || known === undefined) {
    problems.push(
      `line ${headerIndex + 1}: the header must be namespace,key,value or key,value or name,value (found "${lines[headerIndex]?.trim()}")`,
    );
    return [];
  }
  const column = (name: string) => header.indexOf(name);
  const rows: ImportRow[] = [];
  for (let i = headerIndex + 1; i < lines.length; i++) {
    const line = lines[i] as string;
    if (line.trim() === '') continue;
    const at = `line ${i + 1}`;
    try {
      const fields = splitCsvLine(line);
      if (fields === undefined) throw new RowProblem('a quoted field is not closed');
      if (fields.length !== header.length) {
        throw new RowProblem(
          `expected ${header.length} fields (${header.join(',')}), found ${fields.length}`,
        );
      }
      const field = (name: string) => fields[column(name)] as string;
      const name = header.includes('name')
        ? nameOfRef(field('name'), 'name')
        : nameOf(header.includes('namespace') ? field('namespace') : undefined, field('key'));
      rows.push({ name, value: integerText(field('value')), at });
    } catch (err) {
      if (!(err instanceof RowProblem)) throw err;
      problems.push(`${at}: ${err.message}`);
    }
  }
  return rows;
}

/**
 * The fields of one CSV line, trimmed: separated by commas, each optionally in double quotes
 * (`""` inside quotes is one quote). Undefined when a quote is left open or text follows one.
 */
function splitCsvLine(line: string): string[] | undefined {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    while (line[i] === ' ' || line[i] === '\t') i++;
    let field = '';
    if (line[i] === '"') {
      i++;
      for (;;) {
        if (i >= line.length) return undefined;
        if (line[i] === '"') {
          if (line[i + 1] !== '"') break;
          i++;
        }
        field += line[i];
        i++;
      }
      i++;
      while (line[i] === ' ' || line[i] === '\t') i++;
      if (i < line.length && line[i] !== ',') return undefined;
    } else {
      const comma = line.indexOf(',', i);
      const end = comma < 0 ? line.length : comma;
      field = line.slice(i, end);
      i = end;
    }
    fields.push(field.trim());
    if (i >= line.length) return fields;
    i++;
  }
}

/** A CSV value: an integer, written in decimal, within the safe range. */
function integerText(text: string): number {
  if (!/^[+-]?\d+$/.test(text)) throw new RowProblem(`value "${text}" is not an integer`);
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new RowProblem(`value ${text} is outside ±(2^53-1)`);
  return value;
}

// --- JSON --------------------------------------------------------------------------------------

function parseJson(text: string, problems: string[]): ImportRow[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    problems.push(`not valid JSON: ${(err as Error).message}`);
    return [];
  }
  const rows: ImportRow[] = [];
  const attempt = (at: string, read: () => Omit<ImportRow, 'at'>) => {
    try {
      rows.push({ ...read(), at });
    } catch (err) {
      if (!(err instanceof RowProblem)) throw err;
      problems.push(`${at}: ${err.message}`);
    }
  };
  if (Array.isArray(data)) {
    data.forEach((item: unknown, i) => {
      attempt(`index ${i}`, () => jsonRow(item));
    });
    return rows;
  }
  if (isRecord(data)) {
    // A map {"ns/key": value}. A single answer ({"namespace", "key", "value", …}) is not one.
    const entries = Object.entries(data);
    if ('value' in data && entries.some(([, v]) => typeof v !== 'number')) {
      problems.push(
        'a top-level object is a map of counter names to values; put single answers in an array: [{…}, {…}]',
      );
      return [];
    }
    for (const [ref, value] of entries) {
      attempt(`entry ${JSON.stringify(ref)}`, () => ({
        name: nameOfRef(ref, 'the name'),
        value: integerJson(value),
      }));
    }
    return rows;
  }
  problems.push(
    'the JSON must be an array of counters ([{"namespace","key","value"}, …]) or an object {"namespace/key": value, …}',
  );
  return [];
}

/**
 * One counter of a JSON array: its value and its name, from `namespace`+`key` (CountAPI /info),
 * `name` (Tally), `full_key` "K:ns:key" (Abacus /info) or `path` "ns/key" (a /get answer with the
 * path it came from). Other fields are ignored; fields that name different counters are refused,
 * and so are the answers CountAPI and Abacus give for a missing counter.
 */
function jsonRow(item: unknown): Omit<ImportRow, 'at'> {
  if (!isRecord(item)) {
    throw new RowProblem(`expected an object with a counter and its "value", found ${kind(item)}`);
  }
  if (item.value === null) {
    // CountAPI's /get and /info answer a missing counter with `"value": null` (404).
    throw new RowProblem(
      '"value" is null: the counter did not exist where it was read; leave it out',
    );
  }
  const names: [field: string, name: string][] = [];
  if (item.namespace !== undefined || item.key !== undefined) {
    if (typeof item.key !== 'string') {
      throw new RowProblem(`"key" must be a string, found ${kind(item.key)}`);
    }
    if (item.namespace !== undefined && typeof item.namespace !== 'string') {
      throw new RowProblem(`"namespace" must be a string, found ${kind(item.namespace)}`);
    }
    names.push(['namespace/key', nameOf(item.namespace, item.key)]);
  }
  if (item.name !== undefined) names.push(['name', nameOfRef(stringField(item, 'name'), 'name')]);
  if (item.full_key !== undefined) names.push(['full_key', nameOfFullKey(item.full_key)]);
  if (item.path !== undefined) names.push(['path', nameOfPath(stringField(item, 'path'))]);
  const [first, ...others] = names;
  if (first === undefined) {
    throw new RowProblem(
      'names no counter: give "namespace" and "key", "name", "full_key" or "path"',
    );
  }
  for (const other of others) {
    if (other[1] !== first[1]) {
      throw new RowProblem(`"${first[0]}" names ${first[1]} but "${other[0]}" names ${other[1]}`);
    }
  }
  if (item.exists === false) {
    // Abacus's /info answers a missing counter with `"exists": false, "value": -1`.
    throw new RowProblem(
      `${first[1]} did not exist where it was read ("exists": false); leave it out`,
    );
  }
  if (item.value === undefined) throw new RowProblem(`${first[1]} has no "value"`);
  return { name: first[1], value: integerJson(item.value) };
}

function integerJson(value: unknown): number {
  if (typeof value !== 'number') {
    throw new RowProblem(`"value" must be an integer, found ${kind(value)}`);
  }
  if (!Number.isInteger(value)) throw new RowProblem(`value ${value} is not an integer`);
  if (!Number.isSafeInteger(value)) throw new RowProblem(`value ${value} is outside ±(2^53-1)`);
  return value;
}

function stringField(item: Record<string, unknown>, field: string): string {
  const v = item[field];
  if (typeof v !== 'string') throw new RowProblem(`"${field}" must be a string, found ${kind(v)}`);
  return v;
}

/** Abacus's `full_key`: `K:namespace:key`. */
function nameOfFullKey(raw: unknown): string {
  const m = typeof raw === 'string' ? /^K:([^:]*):([^:]*)$/.exec(raw) : null;
  if (m === null) {
    throw new RowProblem(`"full_key" must look like "K:namespace:key", found ${kind(raw)}`);
  }
  return nameOf(m[1], m[2] as string);
}

/**
 * A `path`: a counter reference (`namespace/key`, or `key` in the default namespace), or the
 * request path (or URL) of the /get or /info call it came from: `/get/namespace/key`, `/get/key`.
 */
function nameOfPath(path: string): string {
  let p = path;
  let request = p.startsWith('/');
  if (/^https?:\/\//i.test(p)) {
    try {
      p = new URL(p).pathname;
    } catch {
      throw new RowProblem(`"path" ${JSON.stringify(path)} is not a URL`);
    }
    request = true;
  }
  const parts = p.split('/');
  if (request) {
    const [, verb, ...rest] = parts;
    if ((verb !== 'get' && verb !== 'info') || rest.length < 1 || rest.length > 2) {
      throw new RowProblem(
        `"path" ${JSON.stringify(path)} is not a /get/ or /info/ request path (write "namespace/key" for a counter)`,
      );
    }
    return rest.length === 1
      ? nameOf(undefined, rest[0] as string)
      : nameOf(rest[0], rest[1] as string);
  }
  if (parts.length > 2) {
    throw new RowProblem(`"path" ${JSON.stringify(path)} is not "namespace/key" or "key"`);
  }
  return parts.length === 1 ? nameOf(undefined, p) : nameOf(parts[0], parts[1] as string);
}

// --- names -------------------------------------------------------------------------------------

/**
 * The stored name of `key` in `namespace` (absent, empty or `default`: the default namespace,
 * where flat names live). A default-namespace key may be a flat name (which allows `:`) or a
 * namespace-style key (which may start with `_`, `.` or `-`).
 */
function nameOf(namespace: string | undefined, key: string): string {
  if (key.includes('/')) {
    throw new RowProblem(`key ${JSON.stringify(key)} has a "/" (give the namespace on its own)`);
  }
  if (namespace === undefined || namespace === '' || namespace === DEFAULT_NAMESPACE) {
    if (!isValidName(key) && !isValidPart(key)) {
      throw new RowProblem(
        `key ${JSON.stringify(key)} is not a counter name (1-128 characters of A-Za-z0-9_.:-, starting with a letter or digit)`,
      );
    }
    return key;
  }
  if (!isValidPart(namespace)) {
    throw new RowProblem(
      `namespace ${JSON.stringify(namespace)} is not valid (1-64 characters of A-Za-z0-9_.-, not only dots)`,
    );
  }
  if (!isValidPart(key)) {
    throw new RowProblem(
      `key ${JSON.stringify(key)} is not valid (1-64 characters of A-Za-z0-9_.-, not only dots)`,
    );
  }
  return counterName(namespace, key);
}

/** A name as Tally's clients write it: a flat name, or `namespace/key`. */
function nameOfRef(ref: string, what: string): string {
  const name = parseCounterRef(ref);
  if (name === undefined) {
    throw new RowProblem(
      `${what} ${JSON.stringify(ref)} is neither a counter name nor "namespace/key"`,
    );
  }
  return name;
}

/**
 * The client's reference of a stored name: the name itself for flat names, else
 * `namespace/key` (a default key the flat rule refuses, `_x`, is `default/_x`).
 */
function refOf(name: string): string {
  if (isValidName(name)) return name;
  const { namespace, key } = splitName(name);
  return `${namespace}/${key}`;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function kind(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  return JSON.stringify(v);
}

// --- importing ---------------------------------------------------------------------------------

export interface ImportOptions {
  /** Base URL of a running server. */
  readonly url: string;
  /** Admin token (sets). */
  readonly token?: string;
  /** Read and compare, write nothing. */
  readonly dryRun?: boolean;
  /** Counters in flight at once. @default 8 */
  readonly concurrency?: number;
}

/** What happened to one counter. `would set` is a dry run's `set`. */
export type ImportOutcome =
  | {
      readonly status: 'set' | 'would set';
      readonly name: string;
      readonly from: number;
      readonly to: number;
    }
  | { readonly status: 'unchanged'; readonly name: string; readonly value: number }
  | {
      readonly status: 'failed';
      readonly name: string;
      readonly code: string;
      readonly message: string;
    };

export interface ImportReport {
  /** One per row, in input order. */
  readonly outcomes: readonly ImportOutcome[];
  /** Counters set (a dry run: that would be set). */
  readonly imported: number;
  readonly unchanged: number;
  readonly failed: number;
}

/** The report line of one outcome: `set ns/key 0 -> 42`, `unchanged ns/key 42`, `failed …`. */
export function describeOutcome(o: ImportOutcome): string {
  switch (o.status) {
    case 'set':
    case 'would set':
      return `${o.status} ${o.name} ${o.from} -> ${o.to}`;
    case 'unchanged':
      return `unchanged ${o.name} ${o.value}`;
    case 'failed':
      return `failed ${o.name}: ${o.code} (${o.message})`;
  }
}

/** The summary line: `imported N, unchanged M, failed K`. */
export function describeReport(report: ImportReport, dryRun = false): string {
  const counts = `unchanged ${report.unchanged}, failed ${report.failed}`;
  return dryRun
    ? `would import ${report.imported}, ${counts} (dry run: nothing written)`
    : `imported ${report.imported}, ${counts}`;
}

/**
 * Sets each row's counter to its value on the server: reads it first (strong consistency), and
 * writes only when it differs. `onOutcome` hears every outcome in input order, as soon as it and
 * those before it are known.
 */
export async function importRows(
  rows: readonly ImportRow[],
  options: ImportOptions,
  onOutcome?: (outcome: ImportOutcome) => void,
): Promise<ImportReport> {
  const outcomes: (ImportOutcome | undefined)[] = new Array(rows.length).fill(undefined);
  let reported = 0;
  let next = 0;
  // One try per call, as before: a failed row is reported, not retried.
  const client = new TallyClient({
    baseUrl: options.url,
    attempts: 1,
    timeoutMs: 15_000,
    ...(options.token === undefined ? {} : { token: options.token }),
  });
  const worker = async () => {
    while (next < rows.length) {
      const i = next++;
      outcomes[i] = await importOne(rows[i] as ImportRow, client, options);
      while (reported < rows.length && outcomes[reported] !== undefined) {
        onOutcome?.(outcomes[reported] as ImportOutcome);
        reported++;
      }
    }
  };
  const workers = Math.max(1, Math.min(options.concurrency ?? 8, rows.length));
  await Promise.all(Array.from({ length: workers }, worker));
  const done = outcomes as ImportOutcome[];
  const count = (...statuses: ImportOutcome['status'][]) =>
    done.filter((o) => statuses.includes(o.status)).length;
  return {
    outcomes: done,
    imported: count('set', 'would set'),
    unchanged: count('unchanged'),
    failed: count('failed'),
  };
}

async function importOne(
  row: ImportRow,
  client: TallyClient,
  options: ImportOptions,
): Promise<ImportOutcome> {
  const { name, value } = row;
  const ref = refOf(name);
  try {
    const answer = (await client.get(ref, { consistency: 'strong' })) as { value?: unknown };
    const current = answer?.value;
    if (typeof current !== 'number') {
      return { status: 'failed', name, code: 'BAD_ANSWER', message: 'the read had no value' };
    }
    if (current === value) return { status: 'unchanged', name, value };
    if (options.dryRun === true) return { status: 'would set', name, from: current, to: value };
    await client.set(ref, value);
    return { status: 'set', name, from: current, to: value };
  } catch (err) {
    if (!(err instanceof TallyApiError)) throw err;
    return { status: 'failed', name, code: err.code, message: err.message };
  }
}

// --- the command -------------------------------------------------------------------------------

/** `tally import`'s options as commander hands them over. */
export interface ImportFlags {
  readonly url: string;
  readonly token?: string;
  readonly format?: string;
  readonly dryRun?: boolean;
  readonly concurrency?: string;
}

export interface ImportIO {
  out(line: string): void;
  err(line: string): void;
  /** The text of `file`; `-` is standard input. */
  read(file: string): Promise<string>;
}

const processIO: ImportIO = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  read: (file) => (file === '-' ? readStdin() : readFile(file, 'utf8')),
};

/** Problems printed for a rejected file before the rest are counted. */
const MAX_PROBLEMS = 20;

/**
 * Runs `tally import <file>`: checks the whole file first (a bad row stops it before anything is
 * written), then sets the counters and prints a line for each and a summary. Resolves with the
 * exit code: 0, or 1 when the input was refused or any counter failed.
 */
export async function importCommand(
  file: string,
  flags: ImportFlags,
  io: ImportIO = processIO,
): Promise<number> {
  const refuse = (message: string) => {
    io.err(`tally: ${message}`);
    return 1;
  };
  if (flags.format !== undefined && flags.format !== 'csv' && flags.format !== 'json') {
    return refuse(`--format must be csv or json, not ${JSON.stringify(flags.format)}`);
  }
  const concurrency = Number(flags.concurrency ?? '8');
  if (!/^\d+$/.test(flags.concurrency ?? '8') || concurrency < 1 || concurrency > 64) {
    return refuse(`--concurrency must be an integer from 1 to 64, not ${flags.concurrency}`);
  }
  let text: string;
  try {
    text = await io.read(file);
  } catch (err) {
    return refuse(`cannot read ${file}: ${(err as Error).message}`);
  }
  let rows: ImportRow[];
  try {
    rows = parseImport(text, detectFormat(file, text, flags.format as ImportFormat | undefined));
  } catch (err) {
    if (!(err instanceof ImportInputError)) throw err;
    for (const problem of err.problems.slice(0, MAX_PROBLEMS)) io.err(`tally: ${file}: ${problem}`);
    if (err.problems.length > MAX_PROBLEMS) {
      io.err(`tally: ${file}: … and ${err.problems.length - MAX_PROBLEMS} more problems`);
    }
    return refuse(`${file}: nothing imported; fix the input and run again`);
  }
  const token = flags.token === '' ? undefined : flags.token;
  const dryRun = flags.dryRun === true;
  if (token === undefined && !dryRun && rows.length > 0) {
    io.err('tally: no token (--token or TALLY_ADMIN_TOKEN): writes will likely be refused');
  }
  const report = await importRows(
    rows,
    { url: flags.url, ...(token === undefined ? {} : { token }), dryRun, concurrency },
    (o) => io.out(describeOutcome(o)),
  );
  io.out(describeReport(report, dryRun));
  return report.failed > 0 ? 1 : 0;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
