// Tally's drop-in embed: <script src="https://tally.example.com/embed.js" async></script>, then
// <span data-tally="blog/hello"></span> (counts one view, shows the count) or
// <button data-tally="blog/hello-likes" data-tally-mode="like"></button> (a like button). Values
// stay live through the counter's event stream. Every write is a keyless +1 with an
// Idempotency-Key of its own, retried with backoff (Retry-After honoured) and counted once.
// Opt out on a browser: open any page of the site with ?tally=ignore (?tally=count undoes it),
// or set localStorage["tally:ignore"] = "1"; the counts then show but nothing is counted.
(() => {
  const script = document.currentScript;
  if (!script || !script.src) return;
  const base = new URL(script.src).origin;
  const IGNORE = 'tally:ignore';
  const RETRIES = 6;

  const storage = () => {
    try {
      return window.localStorage;
    } catch {
      return null; // storage blocked: nothing to remember an opt-out in
    }
  };
  const wish = new URLSearchParams(location.search).get('tally');
  if (wish === 'ignore') storage()?.setItem(IGNORE, '1');
  if (wish === 'count') storage()?.removeItem(IGNORE);
  const ignored = () => storage()?.getItem(IGNORE) === '1';

  const format = (n) => Number(n).toLocaleString('en-US');
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const newKey = () =>
    crypto.randomUUID
      ? crypto.randomUUID()
      : `${Date.now()}-${Math.random().toString(36).slice(2)}`;

  /** `ns/key`, or a bare key in the default namespace. */
  function pathOf(id) {
    const slash = id.indexOf('/');
    const ns = slash < 0 ? 'default' : id.slice(0, slash);
    const key = slash < 0 ? id : id.slice(slash + 1);
    return `${base}/api/v1/namespaces/${encodeURIComponent(ns)}/counters/${encodeURIComponent(key)}`;
  }

  /** An answer a retry would not change. */
  class Refused extends Error {}

  /** One +1, sent until it is answered: the same Idempotency-Key on every attempt. */
  async function hit(path) {
    const key = newKey();
    for (let attempt = 0; ; attempt++) {
      let wait = Math.min(8000, 250 * 2 ** attempt) * (0.5 + Math.random() / 2);
      try {
        const res = await fetch(`${path}/increment`, {
          method: 'POST',
          headers: { 'idempotency-key': key },
          keepalive: true,
        });
        if (res.ok) return (await res.json()).value;
        // 4xx but 408/409/429 will not change on a retry.
        if (res.status < 500 && ![408, 409, 429].includes(res.status))
          throw new Refused(res.status);
        const after = Number(res.headers.get('retry-after'));
        if (after > 0) wait = after * 1000;
      } catch (err) {
        if (err instanceof Refused) throw err;
      }
      if (attempt + 1 >= RETRIES) throw new Error('gave up');
      await sleep(wait);
    }
  }

  async function read(path) {
    const res = await fetch(path);
    if (!res.ok) throw new Error(String(res.status));
    return (await res.json()).value;
  }

  function mount(el) {
    const id = el.getAttribute('data-tally');
    if (!id || el.dataset.tallyMounted) return;
    el.dataset.tallyMounted = '1';
    const path = pathOf(id);
    const like = el.getAttribute('data-tally-mode') === 'like';
    let value = null; // what the server last said
    let unsent = 0; // clicks not yet answered
    let sending = false;
    let answeredAt = 0; // when a write of ours last answered
    const out = like ? document.createElement('span') : el;
    if (like) {
      el.textContent = `${el.getAttribute('data-tally-label') ?? '♥'} `;
      el.appendChild(out);
      if (el.tagName !== 'BUTTON') {
        el.setAttribute('role', 'button');
        el.tabIndex = 0;
        el.addEventListener('keydown', (event) => {
          if (event.key !== 'Enter' && event.key !== ' ') return;
          event.preventDefault();
          el.click();
        });
      }
    }
    const show = () => {
      out.textContent = value === null ? '…' : format(value + unsent);
      el.dataset.tallyValue = value === null ? '' : String(value + unsent);
    };
    show();

    async function pump() {
      if (sending) return;
      sending = true;
      while (unsent > 0) {
        try {
          const v = await hit(path);
          unsent--;
          value = v;
          answeredAt = Date.now();
        } catch {
          unsent = 0; // refused or unreachable for good: show what the server holds
          el.dataset.tallyError = '1';
        }
        show();
      }
      sending = false;
    }

    if (like) {
      el.addEventListener('click', () => {
        if (ignored()) {
          el.title = 'Not counted: this browser opted out (?tally=count undoes it)';
          return;
        }
        unsent++;
        show();
        void pump();
      });
    }
    const first = !like && !ignored() ? hit(path) : read(path);
    first.then(
      (v) => {
        value = v;
        answeredAt = Date.now();
        show();
      },
      () => {
        el.dataset.tallyError = '1';
      },
    );
    // Live values: the stored value after each flush, from every visitor.
    if (window.EventSource) {
      const live = new EventSource(`${path}/events`);
      live.addEventListener('value', (event) => {
        const v = JSON.parse(event.data).value;
        // A write's answer counts what is pending here; a stored value from before the next
        // flush may be lower for a moment, so it only wins once that flush had time to land.
        if (!sending && (value === null || v >= value || Date.now() - answeredAt > 2000)) value = v;
        show();
      });
    }
  }

  const start = () => {
    for (const el of document.querySelectorAll('[data-tally]')) mount(el);
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
  window.Tally = { mount, rescan: start };
})();
