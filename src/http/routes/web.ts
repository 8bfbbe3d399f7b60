/** @module http/routes/web — the click page, the dashboard and their static assets, served from memory. */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { counterName, isValidName } from '../../domain.js';
import { TallyError } from '../../errors.js';
import type { NotFoundOptions } from '../errors.js';
import { media, PARAMS, type ResponseDoc, type RouteDoc } from '../openapi.js';
import { assertKey, assertPart } from '../parse.js';

export interface WebRoutesOptions {
  /**
   * The server's flush interval, in ms. The page sends at most one increment request per
   * max(100, flushIntervalMs), since sending faster than the server flushes shows nobody anything.
   */
  readonly flushIntervalMs: number;
  /**
   * Who may embed the click page (`/`, `/c/:name`) in an iframe: CSP frame-ancestors, `none`,
   * `*` or space-separated origins (TALLY_FRAME_ANCESTORS). @default 'none'
   */
  readonly frameAncestors?: string;
  /** The counter `GET /` shows. @default 'clicks' */
  readonly defaultCounter?: string;
  /**
   * Folder holding the page templates and assets; read once, when the routes are registered.
   * @default `web/` two levels up from this module: dist/web/ (`npm run build` copies src/web/
   * there, so the package carries its pages) or src/web/ when run from source
   */
  readonly assetsDir?: URL;
  /** The not-found handler's options: the web routes add the browser's 404 page to them. */
  readonly notFound?: NotFoundOptions;
}

/** One file under /assets/, held in memory. */
interface Asset {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
  /** Short content hash; pages link `?v=<version>` so browsers may cache that URL for good. */
  readonly version: string;
}

/** A rendered page, held in memory. */
interface Page {
  readonly body: Buffer;
  readonly etag: string;
}

const TYPES: Record<string, string> = {
  css: 'text/css; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  svg: 'image/svg+xml',
  png: 'image/png',
  ico: 'image/x-icon',
  webmanifest: 'application/manifest+json',
};
const HTML = 'text/html; charset=utf-8';
/** Assets taken from dependencies: served name → module path. */
const VENDOR_ASSETS = [
  ['uplot.js', 'uplot/dist/uPlot.iife.min.js'],
  ['uplot.css', 'uplot/dist/uPlot.min.css'],
] as const;
const requireFrom = createRequire(import.meta.url).resolve;
/** Templates are pages, never assets. */
const TEMPLATES = [
  'counter.html',
  'dashboard.html',
  'docs.html',
  'embed.html',
  'not-found.html',
] as const;
type Template = (typeof TEMPLATES)[number];

// Everything the pages load comes from this origin; no inline script or style is needed.
function pageHeaders(frameAncestors: string): Record<string, string> {
  const ancestors = frameAncestors === 'none' ? "'none'" : frameAncestors;
  return {
    'content-security-policy':
      "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
      `connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors ${ancestors}`,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'same-origin',
  };
}

/** Headers of pages never embedded (the dashboard, 404s). */
const PAGE_HEADERS = pageHeaders('none');

export async function webRoutes(app: FastifyInstance, opts: WebRoutesOptions): Promise<void> {
  const dir = opts.assetsDir ?? new URL('../../web/', import.meta.url);
  const defaultCounter = opts.defaultCounter ?? 'clicks';
  if (!isValidName(defaultCounter)) throw new Error(`invalid default counter "${defaultCounter}"`);
  const { assets, templates } = await loadFolder(dir);
  const sendIntervalMs = Math.min(1000, Math.max(100, opts.flushIntervalMs));

  const render = (template: Template, vars: Record<string, string>): Page => {
    let html = templates[template];
    html = html.replace(/\{\{asset:([A-Za-z0-9_.-]+)\}\}/g, (_m, file: string) => {
      const asset = assets.get(file);
      if (asset === undefined) throw new Error(`${template} links a missing asset: ${file}`);
      return `/assets/${file}?v=${asset.version}`;
    });
    html = html.replace(/\{\{([a-zA-Z]+)\}\}/g, (_m, key: string) => {
      const value = vars[key];
      if (value === undefined) throw new Error(`${template} uses an unknown variable: ${key}`);
      return escapeHtml(value);
    });
    return page(html);
  };
  const counterVars = (name: string) => ({
    name,
    sendIntervalMs: String(sendIntervalMs),
    flushIntervalMs: String(opts.flushIntervalMs),
  });

  // Rendering at startup also proves every template and asset link before the first request.
  const home = render('counter.html', counterVars(defaultCounter));
  const dashboard = render('dashboard.html', {});
  const docsPage = render('docs.html', {});
  // One 404 page, two wordings: a counter page for a name that cannot be one, and any path.
  const notFoundPage = (what: string, counter: boolean) => {
    const shown = what.length > 80 ? `${what.slice(0, 80)}…` : what;
    return render('not-found.html', {
      what: shown,
      title: counter ? 'There is no counter page here' : 'There is no page here',
      detail: counter
        ? 'is not a counter name. Names are 1 to 128 characters of letters, digits and _ . : -, starting with a letter or a digit.'
        : 'is not a page here. The API lives under /api/v1/; counter pages are /c/<name>.',
    });
  };
  notFoundPage('x', true);
  // Unknown paths asked for by a browser get a page, not JSON (http/errors.ts decides).
  if (opts.notFound !== undefined) {
    opts.notFound.html = (path) => ({
      body: notFoundPage(path, false).body,
      headers: PAGE_HEADERS,
    });
  }
  // Browsers ask for /favicon.ico whatever the page links: send them to the SVG.
  app.get('/favicon.ico', { config: { doc: FAVICON_DOC } }, async (_request, reply) =>
    reply
      .header('cache-control', 'public, max-age=86400')
      .redirect(`/assets/favicon.svg?v=${(assets.get('favicon.svg') as Asset).version}`, 301),
  );
  // A page per counter is a few KB; keep the recently asked-for ones rather than re-render.
  // Rendered counter and embed pages, by template and counter (bounded: a full cache starts over).
  const pages = new Map<string, Page>();
  const cachedPage = (key: string, make: () => Page): Page => {
    let found = pages.get(key);
    if (found === undefined) {
      found = make();
      if (pages.size >= 1000) pages.clear();
      pages.set(key, found);
    }
    return found;
  };

  const embeddable = pageHeaders(opts.frameAncestors ?? 'none');
  app.get('/', { config: { doc: HOME_DOC } }, async (request, reply) =>
    sendPage(request, reply, home, true, embeddable),
  );
  app.get('/dashboard', { config: { doc: DASHBOARD_DOC } }, async (request, reply) =>
    sendPage(request, reply, dashboard),
  );
  app.get('/docs', { config: { doc: DOCS_DOC } }, async (request, reply) =>
    sendPage(request, reply, docsPage),
  );
  app.get<{ Params: { '*': string } }>(
    '/c/*',
    { config: { doc: COUNTER_PAGE_DOC } },
    async (request, reply) => {
      const name = request.params['*'];
      // Cast: a failed guard on a string would narrow `name` to never.
      if (!isValidName(name as unknown)) {
        reply.code(404).header('cache-control', 'no-store');
        return sendPage(request, reply, notFoundPage(name, true), false);
      }
      const counterPage = cachedPage(`c ${name}`, () => render('counter.html', counterVars(name)));
      return sendPage(request, reply, counterPage, true, embeddable);
    },
  );

  // The embed (issue 14): /embed.js for any site's pages, /embed/:ns/:key as an iframe. Both are
  // meant for other sites: the iframe page may be framed by anyone (a +1 is public anyway).
  const embedScript = assets.get('embed.js') as Asset;
  app.get('/embed.js', { config: { doc: EMBED_SCRIPT_DOC } }, async (request, reply) => {
    reply.header('access-control-allow-origin', '*');
    return sendAsset(request, reply, embedScript, 'public, max-age=300');
  });
  const framed = pageHeaders('*');
  app.get<{ Params: { ns: string; key: string }; Querystring: Record<string, unknown> }>(
    '/embed/:ns/:key',
    { config: { doc: EMBED_DOC } },
    async (request, reply) => {
      const { ns, key } = request.params;
      const mode = request.query.mode ?? 'views';
      const label = request.query.label ?? '♥';
      if (mode !== 'views' && mode !== 'like') {
        throw new TallyError('INVALID_QUERY', '"mode" must be views or like');
      }
      if (typeof label !== 'string' || label.length > 32) {
        throw new TallyError('INVALID_QUERY', '"label" must be at most 32 characters');
      }
      const namespace = assertPart(ns);
      // The stored name is what data-tally takes: `ns/key`, or the key alone in `default`.
      const name = counterName(namespace, assertKey(namespace, key));
      const embedPage = cachedPage(`e ${mode} ${label} ${name}`, () =>
        render('embed.html', { name, mode, label }),
      );
      return sendPage(request, reply, embedPage, true, framed);
    },
  );

  app.get<{ Params: { file: string }; Querystring: { v?: unknown } }>(
    '/assets/:file',
    { config: { doc: ASSET_DOC } },
    async (request, reply) => {
      // Lookup in the in-memory table only: no path from the URL ever reaches the file system.
      const asset = assets.get(request.params.file);
      if (asset === undefined) throw new TallyError('NOT_FOUND', 'No such asset');
      const immutable = request.query.v === asset.version;
      return sendAsset(
        request,
        reply,
        asset,
        immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
      );
    },
  );
}

/** Sends an asset from memory, or 304 when the client holds this version. */
function sendAsset(
  request: FastifyRequest,
  reply: FastifyReply,
  asset: Asset,
  cacheControl: string,
): FastifyReply {
  reply
    .header('content-type', asset.type)
    .header('x-content-type-options', 'nosniff')
    .header('etag', asset.etag)
    .header('cache-control', cacheControl);
  if (fresh(request, asset.etag)) return reply.code(304).send();
  return reply.send(asset.body);
}

function sendPage(
  request: FastifyRequest,
  reply: FastifyReply,
  page: Page,
  cacheable = true,
  headers = PAGE_HEADERS,
): FastifyReply {
  reply.headers(headers).header('content-type', HTML);
  if (cacheable) {
    // Revalidate every time: the page is tiny and must pick up new asset versions at once.
    reply.header('cache-control', 'no-cache').header('etag', page.etag);
    if (fresh(request, page.etag)) return reply.code(304).send();
  }
  return reply.send(page.body);
}

/** True when the client's If-None-Match names this ETag (weak or strong, in a list or `*`). */
function fresh(request: FastifyRequest, etag: string): boolean {
  const header = request.headers['if-none-match'];
  if (typeof header !== 'string') return false;
  return header
    .split(',')
    .map((t) => t.trim().replace(/^W\//, ''))
    .some((t) => t === etag || t === '*');
}

function page(html: string): Page {
  const body = Buffer.from(html, 'utf8');
  return { body, etag: `"${hash(body)}"` };
}

function hash(body: Buffer): string {
  return createHash('sha256').update(body).digest('base64url').slice(0, 16);
}

/** Reads every template and asset in `dir` (flat, no subfolders) into memory. */
/** An asset of `body`: its version is its content hash, and its ETag that version. */
function asset(body: Buffer, type: string): Asset {
  const version = hash(body);
  return { body, type, etag: `"${version}"`, version };
}

async function loadFolder(
  dir: URL,
): Promise<{ assets: Map<string, Asset>; templates: Record<Template, string> }> {
  const assets = new Map<string, Asset>();
  const templates: Partial<Record<Template, string>> = {};
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = entry.name;
    const body = await readFile(new URL(file, dir));
    if ((TEMPLATES as readonly string[]).includes(file)) {
      templates[file as Template] = body.toString('utf8');
      continue;
    }
    const type = TYPES[file.slice(file.lastIndexOf('.') + 1)];
    if (type === undefined) continue;
    assets.set(file, asset(body, type));
  }
  for (const t of TEMPLATES) {
    if (templates[t] === undefined) throw new Error(`web page template missing: ${t} in ${dir}`);
  }
  // The typed client (src/client/, compiled), which the click page sends its clicks with.
  assets.set('client.js', asset(await readClient(), TYPES.js as string));
  // The charting library, from the installed package: served by Tally, no CDN.
  for (const [file, path] of VENDOR_ASSETS) {
    const type = TYPES[file.slice(file.lastIndexOf('.') + 1)] as string;
    assets.set(file, asset(await readFile(requireFrom(path)), type));
  }
  return { assets, templates: templates as Record<Template, string> };
}

/**
 * The compiled client: beside this module in dist/ (dist/client/index.js), or, when run from
 * source, the repository's build of it (`npm run build`). Its source-map comment is dropped: the
 * map is not served.
 */
async function readClient(): Promise<Buffer> {
  const places = [
    new URL('../../client/index.js', import.meta.url),
    new URL('../../../dist/client/index.js', import.meta.url),
  ];
  for (const place of places) {
    try {
      const text = await readFile(place, 'utf8');
      return Buffer.from(text.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n'), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  throw new Error('the compiled client (dist/client/index.js) is missing: run `npm run build`');
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// -- the OpenAPI descriptions of these routes (http/openapi.ts) --

const PAGE: ResponseDoc = media('The page', 'text/html');
const NOT_MODIFIED: ResponseDoc = { description: 'Not modified (If-None-Match names its ETag)' };

/** A page with no parameters: 200, or 304 to its own ETag. */
const pageDoc = (
  summary: string,
  description: string,
  tag: RouteDoc['tag'] = 'Pages',
): RouteDoc => ({
  summary,
  description,
  tag,
  responses: { 200: PAGE, 304: NOT_MODIFIED },
});

const HOME_DOC = pageDoc(
  'The click page',
  'A page with one button counting the default counter (TALLY_DEFAULT_COUNTER), live.',
);
const DASHBOARD_DOC = pageDoc(
  'The dashboard',
  'Every counter, live, with charts; admin actions with the admin token.',
);
const DOCS_DOC = pageDoc(
  'This reference, interactive',
  'Every operation of /openapi.json, with a form to try it against this server.',
  'Operations',
);
const COUNTER_PAGE_DOC: RouteDoc = {
  summary: "A counter's click page",
  description:
    'The click page for any flat counter name (`/c/page:home`); a path that is not one answers a 404 page.',
  tag: 'Pages',
  params: { '*': { ...PARAMS.name, description: 'A flat counter name' } },
  responses: {
    200: PAGE,
    304: NOT_MODIFIED,
    404: media('Not a counter name: a page saying so', 'text/html'),
  },
};
const EMBED_SCRIPT_DOC: RouteDoc = {
  summary: 'The embed script',
  description:
    'For any site: `<script src="…/embed.js" async></script>` fills each `[data-tally]` element with a live count or a like button (docs in the README, "Badges and embeds").',
  tag: 'Pages',
  responses: { 200: media('The script', 'text/javascript'), 304: NOT_MODIFIED },
};
const EMBED_DOC: RouteDoc = {
  summary: 'The embed as an iframe',
  description: 'A page for an `<iframe>`: a counted view, or a like button. Any site may frame it.',
  tag: 'Pages',
  params: { ns: PARAMS.ns, key: PARAMS.key },
  query: {
    mode: {
      description: 'Count views, or a like button',
      schema: { type: 'string', enum: ['views', 'like'], default: 'views' },
    },
    label: {
      description: 'The like button’s label, up to 32 characters',
      schema: { type: 'string', default: '♥' },
    },
  },
  responses: { 200: PAGE, 304: NOT_MODIFIED },
  errors: ['INVALID_NAMESPACE', 'INVALID_QUERY'],
};
const ASSET_DOC: RouteDoc = {
  summary: 'A page asset',
  description:
    'Scripts, styles and images of the pages, from memory. With `?v=<version>` (as the pages link them) cached for good.',
  tag: 'Pages',
  params: {
    file: { description: 'The file name', schema: { type: 'string' }, example: 'tally.css' },
  },
  query: { v: { description: "The asset's version (content hash)", schema: { type: 'string' } } },
  responses: {
    // Every type the asset table serves, without its charset.
    200: media('The file', ...new Set(Object.values(TYPES).map((t) => t.split(';')[0] as string))),
    304: NOT_MODIFIED,
  },
  errors: ['NOT_FOUND'],
};
const FAVICON_DOC: RouteDoc = {
  summary: 'The favicon',
  tag: 'Pages',
  responses: {
    301: { description: 'Moved to /assets/favicon.svg', headers: { location: 'The icon' } },
  },
};
