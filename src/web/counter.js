// Tally click page: batches clicks into increment requests (sent with Tally's typed client,
// tally-counter/client, served as /assets/client.js) and follows the live value over SSE.

import { mountHistory } from './chart.js';
import { TallyClient } from './client.js';

const root = document.getElementById('counter');
const name = root.dataset.counter;
const sendIntervalMs = Number(root.dataset.sendIntervalMs) || 100;
const flushIntervalMs = Number(root.dataset.flushIntervalMs) || 100;
const api = `/api/v1/counters/${encodeURIComponent(name)}`;

const valueEl = document.getElementById('value');
const rateEl = document.getElementById('rate');
const statusEl = document.getElementById('status');
const outboxEl = document.getElementById('outbox');
const problemEl = document.getElementById('problem');
const announceEl = document.getElementById('announce');
const button = document.getElementById('click');
const chart = mountHistory(document.getElementById('history'), api);

/**
 * The client gives up an attempt after REQUEST_TIMEOUT_MS (its outcome is unknown, so it is sent
 * again with the same key) and retries what may be retried, forever, with backoff from
 * RETRY_MIN_MS, at least what Retry-After says.
 */
const REQUEST_TIMEOUT_MS = 10_000;
const RETRY_MIN_MS = 250;
const client = new TallyClient({
  baseUrl: location.origin,
  timeoutMs: REQUEST_TIMEOUT_MS,
  retryBaseMs: RETRY_MIN_MS,
});
/**
 * The shown value goes down (someone reset or decremented the counter) only once the stream has
 * said so for this long with nothing of ours in flight; longer than a flush, which is how far the
 * stream may lag behind an acknowledged increment.
 */
const SETTLE_MS = Math.max(3_000, 3 * flushIntervalMs);
const RATE_WINDOW_MS = 5_000;
const STORAGE_KEY = `tally:outbox:${name}`;
const numberFormat = new Intl.NumberFormat();

// The outbox. `queued` clicks are in no request yet. `batch` is the one request whose outcome we
// wait for: until the server answers it, it is resent with the same Idempotency-Key and the same
// `by`, never merged with newer clicks, so the server counts it exactly once.
let queued = 0;
/** @type {{ key: string, by: number } | null} */
let batch = null;
let sending = false;
let lastSendAt = 0;
let sendFailed = false;
let sendTimer = null;

// The value. Every number shown is a lower bound of the count once our clicks land, so it never
// has to step back: a click adds one; a server value V (from the stream or an answer) raises it to
// V + queued clicks. The batch in flight is left out of that sum because the stream may or may not
// carry it yet; counting it could show a click twice.
let streamValue = null;
let lastAckAt = 0;
let shown = null;
let settleTimer = null;
let state = 'connecting';
/** Shown values over the last RATE_WINDOW_MS, for the clicks/s figure. */
const samples = [];
let announceTimer = null;
let source = null;
let reconnectDelayMs = 1000;

/** Sends the next request when the previous one is answered and the send interval has passed. */
function pump() {
  if (sending || sendTimer !== null) return;
  if (batch === null && queued === 0) return;
  const wait = lastSendAt + sendIntervalMs - Date.now();
  if (wait > 0) {
    sendTimer = setTimeout(() => {
      sendTimer = null;
      pump();
    }, wait);
    return;
  }
  if (batch === null) {
    batch = { key: newKey(), by: queued };
    queued = 0;
    saveOutbox();
  }
  void send(batch);
}

async function send(current) {
  sending = true;
  lastSendAt = Date.now();
  try {
    // One key for this batch, every attempt: the server counts it once however often it is sent.
    // A strong increment held but not confirmed (NOT_CONFIRMED) is sent again with its key too,
    // and answered as a replay.
    const value = await client.increment(name, current.by, {
      idempotencyKey: current.key,
      attempts: Number.POSITIVE_INFINITY,
      onRetry: () => {
        sendFailed = true;
        render();
      },
    });
    confirmed(value);
  } catch (err) {
    // Only what the server will never take (a code the client does not retry: a 4xx such as an
    // overflow) ends here; network faults and 5xx are retried with the same key.
    refused(current.by, err?.message ?? String(err));
  } finally {
    sending = false;
  }
  render();
  pump();
}

function confirmed(value) {
  batch = null;
  saveOutbox();
  sendFailed = false;
  lastAckAt = Date.now();
  if (typeof value === 'number') raise(value + queued);
  problemEl.hidden = true;
}

/** The server will never take this request (a 4xx): drop it and say so. */
function refused(by, message) {
  batch = null;
  saveOutbox();
  sendFailed = false;
  // These clicks were shown but will never count: the one time the value steps back.
  if (shown !== null) show(shown - by);
  problemEl.textContent = `${by} ${by === 1 ? 'click was' : 'clicks were'} not counted: ${message}`;
  problemEl.hidden = false;
}

/** The connection is back: stop waiting out the backoff. */
function retryNow() {
  client.retryNow();
  if (sendTimer !== null) {
    clearTimeout(sendTimer);
    sendTimer = null;
  }
  pump();
}

/** Leaving the page: hand what is unsent to the browser; a reload resends it with the same key. */
function flushOnLeave() {
  if (batch === null && queued > 0) {
    batch = { key: newKey(), by: queued };
    queued = 0;
    saveOutbox();
  }
  if (batch === null) return;
  // keepalive: the browser sends it after the page is gone; a reload resends it with its key.
  client
    .increment(name, batch.by, { idempotencyKey: batch.key, attempts: 1, keepalive: true })
    .catch(() => {});
}

function unconfirmed() {
  return queued + (batch === null ? 0 : batch.by);
}

// sessionStorage keeps the outbox across a reload of this tab, so clicks made offline survive it.
function saveOutbox() {
  try {
    if (unconfirmed() === 0) sessionStorage.removeItem(STORAGE_KEY);
    else sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ queued, batch }));
  } catch {
    // Storage disabled or full: the outbox still lives in memory.
  }
}

function restoreOutbox() {
  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) ?? 'null');
  } catch {
    return;
  }
  if (Number.isSafeInteger(saved?.queued) && saved.queued > 0) queued = saved.queued;
  const b = saved?.batch;
  if (typeof b?.key === 'string' && Number.isSafeInteger(b.by) && b.by > 0) batch = b;
}

function newKey() {
  // crypto.randomUUID needs a secure context; plain-HTTP self-hosted pages may not be one.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `web-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

// ---- live stream ----

function connect() {
  source = new EventSource(`${api}/events`);
  source.addEventListener('open', () => {
    reconnectDelayMs = 1000;
    setState('live');
    retryNow();
  });
  source.addEventListener('value', (event) => {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    if (typeof data?.value !== 'number') return;
    streamValue = data.value;
    chart.live(streamValue);
    setState('live');
    raise(streamValue + queued);
  });
  source.addEventListener('error', () => {
    setState('reconnecting');
    // CONNECTING: the browser retries by itself. CLOSED (an HTTP error such as a 503 while the
    // server stops): it gave up, so we open a new stream after a backoff.
    if (source.readyState === EventSource.CLOSED) {
      source.close();
      const delay = reconnectDelayMs * (0.8 + Math.random() * 0.4);
      reconnectDelayMs = Math.min(10_000, reconnectDelayMs * 2);
      setTimeout(connect, delay);
    }
  });
}

function setState(next) {
  if (state === next) return;
  state = next;
  root.dataset.state = next;
  statusEl.textContent =
    next === 'live' ? 'Live' : next === 'reconnecting' ? 'Reconnecting…' : 'Connecting…';
  render();
}

// ---- display ----

/** Updates the outbox line; the value itself changes only through raise, show and settle. */
function render() {
  const pending = unconfirmed();
  root.dataset.unsent = String(pending);
  if (pending > 0 && (sendFailed || state !== 'live')) {
    outboxEl.textContent = `${pending} ${pending === 1 ? 'click' : 'clicks'} not sent yet; they will be sent when the connection is back.`;
    outboxEl.hidden = false;
  } else {
    outboxEl.hidden = true;
  }
}

/** A lower bound from the server: show it if it is higher, else check later for a reset. */
function raise(candidate) {
  if (shown === null || candidate > shown) show(candidate);
  else if (candidate < shown && settleTimer === null) settleTimer = setTimeout(settle, SETTLE_MS);
}

/** Lowers the shown value when the stream has stayed below it with nothing of ours unanswered. */
function settle() {
  settleTimer = null;
  if (streamValue === null || shown === null) return;
  const target = streamValue + queued;
  if (target >= shown) return;
  if (state !== 'live' || batch !== null || Date.now() - lastAckAt < SETTLE_MS) {
    settleTimer = setTimeout(settle, SETTLE_MS);
    return;
  }
  samples.length = 0;
  show(target);
}

function show(value) {
  if (value === shown) return;
  const bump = shown !== null;
  shown = value;
  valueEl.dataset.value = String(value);
  valueEl.textContent = numberFormat.format(value);
  if (bump) {
    valueEl.classList.add('bump');
    requestAnimationFrame(() => requestAnimationFrame(() => valueEl.classList.remove('bump')));
  }
  scheduleAnnouncement();
}

// Screen readers hear the value once it has been still for a moment, not on every change.
function scheduleAnnouncement() {
  if (announceTimer !== null) clearTimeout(announceTimer);
  announceTimer = setTimeout(() => {
    announceTimer = null;
    if (shown !== null) announceEl.textContent = `${name}: ${numberFormat.format(shown)}`;
  }, 1000);
}

// The rate counts everyone's clicks: how far the shown value moved over the last few seconds.
function updateRate() {
  if (shown === null) return;
  const now = Date.now();
  samples.push({ t: now, v: shown });
  while (samples.length > 2 && (samples[1]?.t ?? now) <= now - RATE_WINDOW_MS) samples.shift();
  const first = samples[0];
  const elapsedS = Math.max(1, (now - first.t) / 1000);
  const rate = Math.max(0, (shown - first.v) / elapsedS);
  const shownRate = rate === 0 ? '0' : rate < 10 ? rate.toFixed(1) : String(Math.round(rate));
  rateEl.textContent = `${shownRate} clicks/s`;
}

restoreOutbox();
button.addEventListener('click', () => {
  queued++;
  saveOutbox();
  if (shown !== null) show(shown + 1);
  button.classList.add('pressed');
  setTimeout(() => button.classList.remove('pressed'), 90);
  render();
  pump();
});
window.addEventListener('pagehide', flushOnLeave);
window.addEventListener('online', retryNow);
connect();
setInterval(updateRate, 500);
pump();
