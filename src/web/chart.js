// Tally history chart: a counter's buckets drawn with uPlot (served by Tally, loaded as a global
// by the page), a minute / hour / day switch, and live updates: every new value the page sees
// adds its difference to the current bucket, and the buckets are re-read from the server every
// 30 s (what other instances counted, and the flushed truth).

const RANGES = {
  minute: { span: 60 * 60_000, step: 60_000, label: 'last hour' },
  hour: { span: 48 * 3_600_000, step: 3_600_000, label: 'last 48 hours' },
  day: { span: 30 * 86_400_000, step: 86_400_000, label: 'last 30 days' },
};
const REFRESH_MS = 30_000;

/**
 * Mounts a chart into `el` for the counter whose API path is `api`
 * (`/api/v1/counters/<name>` or `/api/v1/namespaces/<ns>/counters/<key>`).
 * Returns { live(value), show(api), destroy() }.
 */
export function mountHistory(el, api) {
  el.classList.add('history');
  el.innerHTML = '';
  const bar = document.createElement('div');
  bar.className = 'history-bar';
  const title = document.createElement('span');
  title.className = 'history-title';
  bar.append(title);
  const buttons = {};
  for (const g of Object.keys(RANGES)) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = g;
    b.dataset.granularity = g;
    b.addEventListener('click', () => {
      granularity = g;
      load();
    });
    buttons[g] = b;
    bar.append(b);
  }
  const plotEl = document.createElement('div');
  plotEl.className = 'history-plot';
  el.append(bar, plotEl);

  let granularity = 'minute';
  let path = api;
  let plot = null;
  let xs = [];
  let ys = [];
  let lastValue = null;
  let generation = 0;
  const timer = setInterval(() => load(), REFRESH_MS);

  function draw() {
    el.dataset.granularity = granularity;
    el.dataset.total = String(ys.reduce((a, b) => a + b, 0));
    el.dataset.last = String(ys.at(-1) ?? 0);
    for (const [g, b] of Object.entries(buttons))
      b.setAttribute('aria-pressed', String(g === granularity));
    title.textContent = `History, ${RANGES[granularity].label}`;
    const width = Math.max(240, plotEl.clientWidth || el.clientWidth || 480);
    const data = [xs, ys];
    if (plot !== null && plot.width === width) {
      plot.setData(data);
      return;
    }
    plot?.destroy();
    if (typeof globalThis.uPlot !== 'function') {
      plotEl.textContent = 'Chart unavailable.';
      return;
    }
    plot = new globalThis.uPlot(
      {
        width,
        height: 180,
        legend: { show: false },
        scales: { x: { time: true } },
        axes: [{}, { size: 60 }],
        series: [
          {},
          {
            label: 'count',
            stroke: '#4f6df5',
            fill: 'rgba(79,109,245,0.15)',
            width: 2,
            points: { show: false },
          },
        ],
      },
      data,
      plotEl,
    );
  }

  async function load() {
    const mine = ++generation;
    const { span } = RANGES[granularity];
    const now = Date.now();
    try {
      const res = await fetch(
        `${path}/history?granularity=${granularity}&from=${now - span}&to=${now}`,
      );
      if (!res.ok) throw new Error(String(res.status));
      const body = await res.json();
      if (mine !== generation) return;
      xs = body.buckets.map((b) => Date.parse(b.start) / 1000);
      ys = body.buckets.map((b) => b.count);
      el.dataset.state = 'ready';
      draw();
    } catch {
      if (mine === generation) el.dataset.state = 'error';
    }
  }

  /** A value the page saw: its difference since the last one goes into the current bucket. */
  function live(value) {
    if (typeof value !== 'number') return;
    const delta = lastValue === null ? 0 : value - lastValue;
    lastValue = value;
    if (delta === 0 || xs.length === 0) return;
    const step = RANGES[granularity].step;
    const current = Math.floor(Date.now() / step) * step;
    if (xs.at(-1) * 1000 < current) {
      xs = [...xs.slice(1), current / 1000];
      ys = [...ys.slice(1), 0];
    }
    ys = [...ys.slice(0, -1), (ys.at(-1) ?? 0) + delta];
    draw();
  }

  function show(nextApi) {
    path = nextApi;
    lastValue = null;
    load();
  }

  function destroy() {
    clearInterval(timer);
    plot?.destroy();
  }

  load();
  return { live, show, destroy };
}
