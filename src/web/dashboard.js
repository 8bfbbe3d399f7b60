// Tally dashboard: one page of the counter list, refreshed every second, with paging and a filter.

import { mountHistory } from './chart.js';

const root = document.getElementById('dashboard');
const chartNameEl = document.getElementById('chart-name');
const historyEl = document.getElementById('history');
/** The counter whose history is drawn: the one picked, else the first on the page. */
let charted = null;
let chart = null;
const rowsEl = document.getElementById('rows');
const emptyEl = document.getElementById('empty');
const statusEl = document.getElementById('status');
const pageEl = document.getElementById('page');
const prevButton = document.getElementById('prev');
const nextButton = document.getElementById('next');
const prefixInput = document.getElementById('prefix');

// One list request per second refreshes every visible value. An EventSource per row would need
// one HTTP/1.1 connection each, and browsers allow six per host.
const REFRESH_MS = 1000;
const PREFIX_RE = /^[A-Za-z0-9_.:-]{0,128}$/;
const numberFormat = new Intl.NumberFormat();

const params = new URLSearchParams(location.search);
const limitParam = Number(params.get('limit'));
const limit =
  Number.isInteger(limitParam) && limitParam >= 1 && limitParam <= 100 ? limitParam : 25;
let prefix = PREFIX_RE.test(params.get('prefix') ?? '') ? (params.get('prefix') ?? '') : '';
prefixInput.value = prefix;

/** Cursors of the pages before this one; the last is this page's own (undefined = first page). */
let cursors = [undefined];
let nextCursor = null;
/** Bumped on every navigation, so an answer for a page we left is ignored. */
let generation = 0;
let timer = null;
/** Values on screen, by name, to mark the ones that changed. */
let values = new Map();

prevButton.addEventListener('click', () => {
  if (cursors.length > 1) cursors.pop();
  navigate();
});
nextButton.addEventListener('click', () => {
  if (nextCursor === null) return;
  cursors.push(nextCursor);
  navigate();
});
let typing = null;
prefixInput.addEventListener('input', () => {
  clearTimeout(typing);
  typing = setTimeout(() => {
    if (!PREFIX_RE.test(prefixInput.value) || prefixInput.value === prefix) return;
    prefix = prefixInput.value;
    const url = new URL(location.href);
    if (prefix === '') url.searchParams.delete('prefix');
    else url.searchParams.set('prefix', prefix);
    history.replaceState(null, '', url);
    cursors = [undefined];
    navigate();
  }, 300);
});
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) refresh();
});
navigate();

function navigate() {
  generation++;
  values = new Map();
  nextCursor = null;
  refresh();
}

async function refresh() {
  clearTimeout(timer);
  const mine = generation;
  const cursor = cursors[cursors.length - 1];
  const query = new URLSearchParams({ limit: String(limit) });
  if (prefix !== '') query.set('prefix', prefix);
  if (cursor !== undefined) query.set('cursor', cursor);
  try {
    const res = await fetch(`/api/v1/counters?${query}`, { cache: 'no-store' });
    const body = await res.json();
    if (mine !== generation) return;
    if (!res.ok) throw new Error(body?.error?.message ?? `HTTP ${res.status}`);
    renderPage(body.items, body.nextCursor ?? null);
    root.dataset.state = 'live';
    statusEl.textContent = `Live · updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    if (mine !== generation) return;
    root.dataset.state = 'reconnecting';
    statusEl.textContent = `Reconnecting… (${err instanceof Error ? err.message : 'error'})`;
  }
  // Hidden tabs stop polling; visibilitychange starts it again.
  if (mine === generation && !document.hidden) timer = setTimeout(refresh, REFRESH_MS);
}

function renderPage(items, next) {
  nextCursor = next;
  const seen = new Map();
  const rows = items.map((item) => {
    const tr = document.createElement('tr');
    tr.dataset.name = item.name;
    const nameCell = document.createElement('td');
    const link = document.createElement('a');
    link.href = `/c/${encodeURIComponent(item.name)}`;
    link.textContent = item.name;
    nameCell.append(link);
    const valueCell = document.createElement('td');
    valueCell.className = 'num';
    valueCell.dataset.value = String(item.value);
    valueCell.textContent = numberFormat.format(item.value);
    const before = values.get(item.name);
    if (before !== undefined && before !== item.value) valueCell.classList.add('changed');
    seen.set(item.name, item.value);
    const chartCell = document.createElement('td');
    const pick = document.createElement('button');
    pick.type = 'button';
    pick.className = 'button chart-pick';
    pick.textContent = 'Chart';
    pick.setAttribute('aria-label', `Chart the history of ${item.name}`);
    pick.addEventListener('click', () => showChart(item.name, item.value));
    chartCell.append(pick);
    tr.append(nameCell, valueCell, chartCell);
    return tr;
  });
  const current = items.find((i) => i.name === charted) ?? items[0];
  if (current !== undefined) {
    if (current.name !== charted) showChart(current.name, current.value);
    else chart?.live(current.value);
  }
  values = seen;
  rowsEl.replaceChildren(...rows);
  emptyEl.hidden = items.length > 0;
  const page = cursors.length;
  const count = items.length === 1 ? '1 counter' : `${items.length} counters`;
  pageEl.textContent = `Page ${page}${items.length > 0 ? ` · ${count}` : ''}`;
  prevButton.disabled = page <= 1;
  nextButton.disabled = nextCursor === null;
}

/** The API path of a counter: flat names, or `namespace/key`. */
function apiOf(name) {
  const slash = name.indexOf('/');
  if (slash < 0) return `/api/v1/counters/${encodeURIComponent(name)}`;
  const ns = encodeURIComponent(name.slice(0, slash));
  return `/api/v1/namespaces/${ns}/counters/${encodeURIComponent(name.slice(slash + 1))}`;
}

function showChart(name, value) {
  charted = name;
  chartNameEl.textContent = `History of ${name}`;
  historyEl.dataset.counter = name;
  if (chart === null) chart = mountHistory(historyEl, apiOf(name));
  else chart.show(apiOf(name));
  chart.live(value);
}
