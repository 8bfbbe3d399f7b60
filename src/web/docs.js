// The interactive API reference: renders /openapi.json and lets a visitor try each operation
// against this server. Everything is built with DOM calls and textContent: the document's text
// never becomes markup.

const root = document.getElementById('operations');
const intro = document.getElementById('intro');
const filter = document.getElementById('filter');
const token = document.getElementById('token');
const TOKEN_KEY = 'tally:docs-token';
document.getElementById('settings').addEventListener('submit', (e) => e.preventDefault());
token.value = sessionStorage.getItem(TOKEN_KEY) ?? '';
token.addEventListener('input', () => sessionStorage.setItem(TOKEN_KEY, token.value));

/** A new element with attributes and children (strings become text). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (name === 'class') node.className = value;
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null) continue;
    node.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return node;
}

/** `#/components/schemas/X` → the schema it names. */
function resolve(doc, schema) {
  if (schema && typeof schema.$ref === 'string') {
    const name = schema.$ref.split('/').pop();
    return doc.components.schemas[name] ?? {};
  }
  return schema ?? {};
}

/** An example value for a schema: its default, example, first enum value or a made-up one. */
function example(doc, raw, depth = 0) {
  const schema = resolve(doc, raw);
  if (depth > 6) return null;
  if ('default' in schema) return schema.default;
  if ('const' in schema) return schema.const;
  if (Array.isArray(schema.enum)) return schema.enum[0];
  if (Array.isArray(schema.allOf)) return example(doc, schema.allOf[0], depth + 1);
  if (Array.isArray(schema.anyOf)) return example(doc, schema.anyOf[0], depth + 1);
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  if (type === 'object') {
    const out = {};
    for (const [name, prop] of Object.entries(schema.properties ?? {})) {
      out[name] = example(doc, prop, depth + 1);
    }
    return out;
  }
  if (type === 'array') return [example(doc, schema.items, depth + 1)];
  if (type === 'integer' || type === 'number') return 1;
  if (type === 'boolean') return true;
  if (type === 'null') return null;
  return 'string';
}

/** The error codes an answer documents, from `allOf: [Error, {…code: {enum}}]`. */
function codesOf(response) {
  const codes = [];
  for (const media of Object.values(response.content ?? {})) {
    const walk = (s) => {
      if (!s || typeof s !== 'object') return;
      const en = s.properties?.error?.properties?.code?.enum;
      if (Array.isArray(en)) codes.push(...en);
      for (const k of ['allOf', 'anyOf', 'oneOf']) if (Array.isArray(s[k])) s[k].forEach(walk);
    };
    walk(media.schema);
  }
  return [...new Set(codes)];
}

function renderOperation(doc, path, method, op) {
  const params = op.parameters ?? [];
  const inputs = new Map();
  const rows = params.map((p) => {
    const input = el('input', {
      type: 'text',
      name: p.name,
      spellcheck: 'false',
      placeholder: p.example !== undefined ? String(p.example) : (p.schema?.default ?? ''),
      required: p.required,
      'aria-label': `${p.name} (${p.in})`,
    });
    if (p.in === 'path' && p.example !== undefined) input.value = String(p.example);
    inputs.set(p, input);
    return el(
      'tr',
      {},
      el('td', {}, el('code', {}, p.name), p.required ? ' *' : ''),
      el('td', { class: 'muted' }, p.in),
      el('td', {}, p.description ?? ''),
      el('td', {}, input),
    );
  });
  const bodySchema = op.requestBody?.content?.['application/json']?.schema;
  const body = bodySchema
    ? el('textarea', { rows: 4, spellcheck: 'false', 'aria-label': 'JSON body' })
    : undefined;
  if (body) body.value = JSON.stringify(example(doc, bodySchema), null, 2);

  const responses = Object.entries(op.responses ?? {}).map(([status, r]) => {
    const codes = codesOf(r);
    const types = Object.keys(r.content ?? {});
    return el(
      'li',
      {},
      el('strong', {}, status),
      ' ',
      codes.length > 0 ? codes.map((c) => [el('code', { class: 'code' }, c), ' ']) : r.description,
      types.length > 0 ? el('span', { class: 'muted' }, ` · ${types.join(', ')}`) : undefined,
    );
  });

  const result = el('pre', { class: 'result', hidden: true, 'aria-live': 'polite' });
  const send = el('button', { class: 'button', type: 'button' }, 'Send');
  send.addEventListener('click', async () => {
    let url = path;
    const query = new URLSearchParams();
    const headers = {};
    for (const [p, input] of inputs) {
      const v = input.value;
      if (v === '') continue;
      if (p.in === 'path')
        url = url.replace(`{${p.name}}`, p.name === 'path' ? v : encodeURIComponent(v));
      else if (p.in === 'query') query.set(p.name, v);
      else if (p.in === 'header') headers[p.name] = v;
    }
    if (/\{[^}]+\}/.test(url)) {
      result.hidden = false;
      result.textContent = 'Fill in every path parameter (*) first.';
      return;
    }
    if (token.value !== '') headers.authorization = `Bearer ${token.value}`;
    const init = { method: method.toUpperCase(), headers };
    if (body && body.value.trim() !== '') {
      headers['content-type'] = 'application/json';
      init.body = body.value;
    }
    // String(query), not query.size: older browsers have no URLSearchParams#size.
    const qs = String(query);
    const target = qs === '' ? url : `${url}?${qs}`;
    result.hidden = false;
    result.textContent = `${init.method} ${target} …`;
    try {
      const res = await fetch(target, init);
      const type = res.headers.get('content-type') ?? '';
      let text;
      if (type.includes('event-stream')) {
        text = '(a live stream: open it with EventSource)';
        res.body?.cancel();
      } else if (type.startsWith('image/') && !type.includes('svg')) text = `(${type} image)`;
      else text = await res.text();
      if (type.includes('json')) {
        try {
          text = JSON.stringify(JSON.parse(text), null, 2);
        } catch {}
      }
      const shown = ['content-type', 'x-request-id', 'retry-after', 'location']
        .map((h) => [h, res.headers.get(h)])
        .filter(([, v]) => v !== null)
        .map(([h, v]) => `${h}: ${v}`)
        .join('\n');
      result.textContent = `${res.status} ${res.statusText}\n${shown}\n\n${text.slice(0, 20000)}`;
    } catch (err) {
      result.textContent = `The request failed: ${err.message}`;
    }
  });

  const details = el(
    'details',
    {
      class: 'op',
      'data-search':
        `${method} ${path} ${op.summary} ${responses.map((r) => r.textContent).join(' ')}`.toLowerCase(),
    },
    el(
      'summary',
      {},
      el('span', { class: `method method-${method}` }, method.toUpperCase()),
      ' ',
      el('code', { class: 'path' }, path),
      ' ',
      el('span', { class: 'muted' }, op.summary ?? ''),
    ),
    op.description ? el('p', {}, op.description) : undefined,
    op.security?.some((s) => 'bearer' in s)
      ? el(
          'p',
          { class: 'muted' },
          op.security.some((s) => Object.keys(s).length === 0)
            ? 'A key is optional.'
            : 'Needs a key or the admin token.',
        )
      : undefined,
    rows.length > 0
      ? el(
          'table',
          { class: 'list params' },
          el(
            'thead',
            {},
            el(
              'tr',
              {},
              el('th', {}, 'Parameter'),
              el('th', {}, 'In'),
              el('th', {}, 'Description'),
              el('th', {}, 'Value'),
            ),
          ),
          el('tbody', {}, rows),
        )
      : undefined,
    body ? el('label', { class: 'body-label' }, 'Body (JSON)', body) : undefined,
    el('h3', {}, 'Responses'),
    el('ul', { class: 'responses' }, responses),
    el('p', {}, send),
    result,
  );
  return details;
}

async function main() {
  const main = document.getElementById('docs');
  let doc;
  try {
    const res = await fetch('/openapi.json');
    doc = await res.json();
  } catch (err) {
    intro.textContent = `Could not load /openapi.json: ${err.message}`;
    main.dataset.state = 'error';
    return;
  }
  intro.textContent = `${doc.info.title} ${doc.info.version}. ${doc.info.description}`;
  const byTag = new Map(doc.tags.map((t) => [t.name, []]));
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = op.tags?.[0] ?? 'Other';
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(renderOperation(doc, path, method, op));
    }
  }
  for (const [name, ops] of byTag) {
    if (ops.length === 0) continue;
    const tag = doc.tags.find((t) => t.name === name);
    root.append(
      el(
        'section',
        { class: 'card tag', id: `tag-${name}` },
        el('h2', {}, name),
        tag ? el('p', { class: 'muted' }, tag.description) : undefined,
        ops,
      ),
    );
  }
  filter.addEventListener('input', () => {
    const q = filter.value.trim().toLowerCase();
    for (const op of root.querySelectorAll('.op'))
      op.hidden = q !== '' && !op.dataset.search.includes(q);
    for (const section of root.querySelectorAll('.tag')) {
      section.hidden = [...section.querySelectorAll('.op')].every((op) => op.hidden);
    }
  });
  main.dataset.state = 'ready';
}

main();
