// @ts-check
/**
 * The Waitless dashboard: one page, no build step, no framework. It is a client of the public
 * HTTP API like any other — the same routes, the same key — so it can show nothing the API does
 * not. Live updates come from two Server-Sent Event streams read with `fetch` (EventSource cannot
 * send an `Authorization` header): the tenant's job changes (`GET /v1/events`) for the list, and
 * one job's event log (`GET /v1/jobs/:id/events`) for the detail.
 *
 * Every piece of server data reaches the DOM through `textContent` or attribute setters, never
 * through HTML parsing.
 */

/** @typedef {'queued' | 'running' | 'completed' | 'failed' | 'cancelled' | 'timed_out' | 'stale'} JobStatus */
/** @typedef {{ percent?: number, stage?: string, message?: string, data?: unknown }} Progress */
/** @typedef {{ code?: string, message?: string, name?: string, [key: string]: unknown }} JobError */

/**
 * A job as the list and the tenant stream show it (the stream leaves out input, output, result
 * and fallback).
 * @typedef {object} JobSummary
 * @property {string} id
 * @property {string} name
 * @property {JobStatus} status
 * @property {boolean} done
 * @property {Progress} [progress]
 * @property {JobError} [error]
 * @property {number} attempt
 * @property {number} maxAttempts
 * @property {number} version
 * @property {string} createdAt
 * @property {string} [startedAt]
 * @property {string} [finishedAt]
 * @property {string} updatedAt
 * @property {string} runAt
 */

/**
 * A job as `GET /v1/jobs/:id` shows it.
 * @typedef {JobSummary & { input?: unknown, output?: string, result?: unknown, fallback?: { result: unknown, provisional: true },
 *   steps?: Array<{ name: string, status: string, attempt: number, durationMs?: number, error?: string }>,
 *   usage?: { promptTokens: number, completionTokens: number, totalTokens: number },
 *   priority?: number, supersedeKey?: string, concurrency?: { key: string, limit: number } }} JobView
 */

/** @typedef {{ seq: number, type: string, data: Record<string, unknown>, at: string }} JobEvent */
/** @typedef {{ n: number, startedAt: string, statusCode?: number, latencyMs: number, responseExcerpt?: string, error?: string }} DeliveryAttempt */

/**
 * @typedef {object} Delivery
 * @property {string} id
 * @property {string} jobId
 * @property {string} url
 * @property {string} eventType
 * @property {string} status
 * @property {DeliveryAttempt[]} attempts
 * @property {string} [nextAttemptAt]
 * @property {string} [lastError]
 * @property {string} createdAt
 * @property {string} [deliveredAt]
 */

/** @typedef {{ type?: string, title?: string, status?: number, detail?: string }} Problem */
/** @typedef {{ event: string, data: string, id?: string }} SseMessage */
/** @typedef {'connecting' | 'live' | 'reconnecting' | 'signed-out'} ConnectionState */

/** @type {readonly JobStatus[]} */
const STATUSES = ['queued', 'running', 'completed', 'failed', 'cancelled', 'timed_out', 'stale'];
/** @type {readonly JobStatus[]} */
const TERMINAL = ['completed', 'failed', 'cancelled', 'timed_out', 'stale'];
const PAGE_SIZE = 25;
const KEY_STORAGE = 'waitless.dashboard.apiKey';
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

/**
 * Where the API lives: everything before `/dashboard` in this page's own path, so the page works
 * wherever the app is mounted (`/dashboard/` → `/v1`, `/jobs-api/dashboard/` → `/jobs-api/v1`).
 */
const API = `${location.pathname.replace(/\/dashboard(?:\/[^/]*)?$/, '')}/v1`;

// ------------------------------------------------------------------------------ small helpers

/**
 * @param {string} id
 * @returns {HTMLElement}
 */
function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`The page has no #${id}.`);
  return element;
}

/**
 * Creates an element. Text goes in as text, never as HTML.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {{ className?: string, text?: string, title?: string, testid?: string, attrs?: Record<string, string> }} [options]
 * @param {Array<Node | string>} [children]
 * @returns {HTMLElementTagNameMap[K]}
 */
function h(tag, options = {}, children = []) {
  const element = document.createElement(tag);
  if (options.className) element.className = options.className;
  if (options.text !== undefined) element.textContent = options.text;
  if (options.title) element.title = options.title;
  if (options.testid) element.dataset.testid = options.testid;
  for (const [name, value] of Object.entries(options.attrs ?? {})) element.setAttribute(name, value);
  element.append(...children);
  return element;
}

/**
 * Resolves after `ms`, or at once when `signal` aborts (never rejects: loops check the signal).
 * @param {number} ms
 * @param {AbortSignal} [signal]
 * @returns {Promise<void>}
 */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Reconnect delay: 0.5 s doubling to 15 s, with jitter so many tabs do not reconnect in step.
 * @param {number} failures
 */
function backoff(failures) {
  const base = Math.min(15_000, 500 * 2 ** Math.max(0, failures - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/** @param {JobStatus | string} status */
const statusLabel = (status) => status.replace('_', ' ');

/** @param {string} id */
const shortId = (id) => (id.length > 12 ? `…${id.slice(-12)}` : id);

/**
 * "12s ago", "in 5s", "3h ago".
 * @param {string | undefined} iso
 */
function relativeTime(iso) {
  if (!iso) return '—';
  const seconds = Math.round((Date.now() - Date.parse(iso)) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 3) return 'just now';
  const [value, unit] = abs < 60 ? [abs, 's'] : abs < 3600 ? [Math.floor(abs / 60), 'm'] : abs < 86_400 ? [Math.floor(abs / 3600), 'h'] : [Math.floor(abs / 86_400), 'd'];
  return seconds >= 0 ? `${value}${unit} ago` : `in ${value}${unit}`;
}

/** @param {string | undefined} iso */
function absoluteTime(iso) {
  return iso ? new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' }) : '';
}

/**
 * `14:03:27.512`, local time.
 * @param {string} iso
 */
function clockTime(iso) {
  const d = new Date(iso);
  const pad = (/** @type {number} */ n, width = 2) => String(n).padStart(width, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/**
 * A `<time>` that the page keeps relative ("12s ago"), with the exact time on hover.
 * @param {string | undefined} iso
 */
function timeElement(iso) {
  const element = h('time', { text: relativeTime(iso), title: absoluteTime(iso) });
  if (iso) {
    element.dateTime = iso;
    element.dataset.relative = '';
  }
  return element;
}

/** @param {unknown} value */
function pretty(value) {
  if (value === undefined) return '';
  try {
    return JSON.stringify(value, null, 2) ?? '';
  } catch {
    return '(not JSON)';
  }
}

/**
 * One line of JSON, cut to `max` characters.
 * @param {unknown} value
 * @param {number} max
 */
function preview(value, max = 80) {
  let text;
  try {
    text = JSON.stringify(value) ?? '';
  } catch {
    text = '(not JSON)';
  }
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** @param {unknown} value */
const isRecord = (value) => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Reads a job (view or summary) off the wire; anything without an id and a version is dropped.
 * @param {unknown} value
 * @returns {JobView | undefined}
 */
function asJob(value) {
  if (!isRecord(value)) return undefined;
  const job = /** @type {Partial<JobView>} */ (value);
  return typeof job.id === 'string' && typeof job.version === 'number' && typeof job.status === 'string' ? /** @type {JobView} */ (job) : undefined;
}

/** @param {string} text */
function parseJson(text) {
  try {
    return /** @type {unknown} */ (JSON.parse(text));
  } catch {
    return undefined;
  }
}

/**
 * Copies to the clipboard; says so on the button for a moment.
 * @param {string} text
 * @param {HTMLButtonElement} button
 */
async function copy(text, button) {
  const label = button.textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = 'Copied';
  } catch {
    button.textContent = 'Copy failed';
  }
  setTimeout(() => (button.textContent = label), 1200);
}

/**
 * Shows or hides an error line.
 * @param {HTMLElement} element
 * @param {string | undefined} message
 */
function showError(element, message) {
  element.textContent = message ?? '';
  element.hidden = !message;
}

// ------------------------------------------------------------------------------ the API

/** A non-2xx answer, with its problem+json body. */
class ApiError extends Error {
  /**
   * @param {number} status
   * @param {Problem} problem
   */
  constructor(status, problem) {
    super(problem.detail ?? problem.title ?? `The server answered ${status}.`);
    this.status = status;
    this.problem = problem;
  }
}

/** 401/403: the key is missing, wrong, revoked or not allowed. The sign-in form is showing. */
class AuthError extends ApiError {}

/** @param {Response} response */
async function readProblem(response) {
  const body = parseJson(await response.text().catch(() => ''));
  return isRecord(body) ? /** @type {Problem} */ (body) : { title: response.statusText || `HTTP ${response.status}` };
}

/** The API key of this tab (serve mode), or '' (dev mode needs none). */
function storedKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) ?? '';
  } catch {
    return '';
  }
}

/**
 * Calls the API with the tab's key. A 401/403 brings the sign-in form back and throws AuthError.
 * @param {string} path below `/v1`
 * @param {RequestInit} [init]
 */
async function request(path, init = {}) {
  const headers = new Headers(init.headers);
  const key = storedKey();
  if (key) headers.set('authorization', `Bearer ${key}`);
  const response = await fetch(`${API}${path}`, { ...init, headers, cache: 'no-store' });
  if (response.status === 401 || response.status === 403) {
    const problem = await readProblem(response);
    requireKey(problem.detail ?? problem.title, key !== '' || response.status === 403);
    throw new AuthError(response.status, problem);
  }
  return response;
}

/**
 * Calls the API and answers the JSON body; a non-2xx answer throws ApiError.
 * @template T
 * @param {string} path
 * @param {RequestInit} [init]
 * @returns {Promise<T>}
 */
async function api(path, init) {
  const response = await request(path, init);
  if (!response.ok) throw new ApiError(response.status, await readProblem(response));
  const body = /** @type {unknown} */ (await response.json());
  return /** @type {T} */ (body);
}

/** @param {unknown} error */
const isAbort = (error) => error instanceof DOMException && error.name === 'AbortError';

/** @param {unknown} error */
const describe = (error) => (error instanceof Error ? error.message : String(error));

// ------------------------------------------------------------------------------ SSE over fetch

/**
 * An incremental `text/event-stream` parser (the WHATWG rules: CR, LF or CRLF line ends, `:`
 * comments, one optional space after the colon, multi-line `data`, blank line dispatches).
 */
class SseParser {
  /** @param {(message: SseMessage) => void} onMessage */
  constructor(onMessage) {
    this.onMessage = onMessage;
    this.buffer = '';
    this.event = '';
    /** @type {string[]} */
    this.data = [];
    /** @type {string | undefined} */
    this.lastId = undefined;
  }

  /** @param {string} chunk */
  push(chunk) {
    this.buffer += chunk;
    for (;;) {
      const end = /\r\n|\r|\n/.exec(this.buffer);
      if (!end) return;
      // A CR at the very end may be the first half of a CRLF split across chunks: wait.
      if (end[0] === '\r' && end.index === this.buffer.length - 1) return;
      const line = this.buffer.slice(0, end.index);
      this.buffer = this.buffer.slice(end.index + end[0].length);
      this.line(line);
    }
  }

  /** @param {string} line */
  line(line) {
    if (line === '') {
      if (this.data.length > 0) this.onMessage({ event: this.event || 'message', data: this.data.join('\n'), id: this.lastId });
      this.event = '';
      this.data = [];
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.event = value;
    else if (field === 'data') this.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.lastId = value;
  }
}

/**
 * Reads one SSE response to its end. A stream silent for `idleMs` (the server sends a keep-alive
 * every 15 s) is taken for dead and ended, so the caller reconnects.
 * @param {ReadableStream<Uint8Array>} body
 * @param {(message: SseMessage) => void} onMessage
 * @param {number} [idleMs]
 */
async function readEventStream(body, onMessage, idleMs = 45_000) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser(onMessage);
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let idle;
  const arm = () => {
    clearTimeout(idle);
    idle = setTimeout(() => void reader.cancel().catch(() => {}), idleMs);
  };
  try {
    arm();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      arm();
      parser.push(decoder.decode(value, { stream: true }));
    }
  } finally {
    clearTimeout(idle);
  }
}

/**
 * Follows an SSE endpoint: reconnects with backoff when the stream drops or fails, until the
 * server answers 204 (nothing more will come), the signal aborts, or the key is refused.
 * @param {object} options
 * @param {() => string} options.path the path to (re)connect to, asked again on every attempt
 * @param {AbortSignal} options.signal
 * @param {(message: SseMessage) => void} options.onMessage
 * @param {() => void} [options.onOpen] on every successful (re)connection
 * @param {(error: unknown) => void} [options.onDrop] when the stream ended or failed
 * @param {boolean} [options.stopOn404] give up when the resource does not exist
 * @returns {Promise<void>}
 */
async function follow(options) {
  let failures = 0;
  while (!options.signal.aborted) {
    /** @type {unknown} */
    let dropped;
    try {
      const response = await request(options.path(), { signal: options.signal, headers: { accept: 'text/event-stream' } });
      if (response.status === 204) return;
      if (!response.ok || !response.body) throw new ApiError(response.status, await readProblem(response));
      failures = 0;
      options.onOpen?.();
      await readEventStream(response.body, options.onMessage);
    } catch (error) {
      if (options.signal.aborted || error instanceof AuthError) return;
      if (options.stopOn404 && error instanceof ApiError && error.status === 404) throw error;
      dropped = error;
      failures += 1;
    }
    if (options.signal.aborted) return;
    options.onDrop?.(dropped);
    await sleep(failures === 0 ? 100 : backoff(failures), options.signal);
  }
}

// ------------------------------------------------------------------------------ shared widgets

/**
 * A status badge.
 * @param {string} status
 * @param {string} [testid]
 */
function badge(status, testid) {
  return h('span', { className: `badge status-${status}`, text: statusLabel(status), testid });
}

/**
 * Renders a progress bar (`.progress > .progress-fill`) for a job.
 * @param {HTMLElement} bar
 * @param {JobSummary} job
 */
function paintProgress(bar, job) {
  const percent = progressPercent(job);
  const fill = /** @type {HTMLElement | null} */ (bar.firstElementChild);
  bar.dataset.status = job.status;
  bar.classList.toggle('indeterminate', percent === undefined && job.status === 'running');
  if (percent === undefined) bar.removeAttribute('aria-valuenow');
  else bar.setAttribute('aria-valuenow', String(percent));
  // CSSOM (not a style attribute), which the page's Content-Security-Policy allows.
  if (fill) fill.style.width = `${percent ?? 0}%`;
}

/**
 * The percent to draw: the reported one, 100 once completed, none when nothing was reported.
 * @param {JobSummary} job
 * @returns {number | undefined}
 */
function progressPercent(job) {
  if (job.status === 'completed') return 100;
  const percent = job.progress?.percent;
  return typeof percent === 'number' && Number.isFinite(percent) ? Math.max(0, Math.min(100, Math.round(percent))) : undefined;
}

/** @param {JobSummary} job */
function progressNote(job) {
  const p = job.progress;
  return [p?.stage, p?.message].filter((part) => typeof part === 'string' && part !== '').join(' · ');
}

// ------------------------------------------------------------------------------ page state

const els = {
  connection: byId('connection'),
  connectionLabel: /** @type {HTMLElement} */ (byId('connection').querySelector('.connection-label')),
  authView: byId('auth-view'),
  authForm: /** @type {HTMLFormElement} */ (byId('auth-form')),
  authKey: /** @type {HTMLInputElement} */ (byId('auth-key')),
  authError: byId('auth-error'),
  listView: byId('list-view'),
  detailView: byId('detail-view'),
  openForm: /** @type {HTMLFormElement} */ (byId('open-form')),
  openId: /** @type {HTMLInputElement} */ (byId('open-id')),
  openError: byId('open-error'),
  filters: /** @type {HTMLFormElement} */ (byId('filters')),
  statusOptions: byId('status-options'),
  nameFilter: /** @type {HTMLInputElement} */ (byId('name-filter')),
  jobNames: byId('job-names'),
  listError: byId('list-error'),
  jobsBody: byId('jobs-body'),
  jobsEmpty: byId('jobs-empty'),
  jobsCount: byId('jobs-count'),
  loadMore: /** @type {HTMLButtonElement} */ (byId('load-more')),
};

/** Aborted when the key is refused: every stream and poll of the signed-in session stops. */
let session = new AbortController();
let signedIn = false;

/** @param {ConnectionState} state */
function setConnection(state) {
  els.connection.dataset.state = state;
  els.connectionLabel.textContent = { connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…', 'signed-out': 'signed out' }[state];
}

/**
 * The API refused the key (or there is none): stop everything and ask for one.
 * @param {string | undefined} detail the server's explanation
 * @param {boolean} showDetail false for the very first 401 of a tab that never sent a key
 */
function requireKey(detail, showDetail) {
  if (signedIn || els.authView.hidden) {
    session.abort();
    signedIn = false;
    closeDetail();
    setConnection('signed-out');
    els.listView.hidden = true;
    els.detailView.hidden = true;
    els.authView.hidden = false;
  }
  showError(els.authError, showDetail ? (detail ?? 'The API key was refused.') : undefined);
  const submit = /** @type {HTMLButtonElement} */ (els.authForm.querySelector('button[type=submit]'));
  submit.disabled = false;
  els.authKey.focus();
  els.authKey.select();
}

els.authForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const key = els.authKey.value.trim();
  if (!key) return;
  try {
    sessionStorage.setItem(KEY_STORAGE, key);
  } catch {
    // Storage refused (private mode): the key lives until the form shows again.
  }
  showError(els.authError, undefined);
  const submit = /** @type {HTMLButtonElement} */ (els.authForm.querySelector('button[type=submit]'));
  submit.disabled = true;
  start();
});

/** Signs in (or starts open, in dev mode): list, tenant stream, current route. */
function start() {
  session = new AbortController();
  signedIn = true;
  els.authView.hidden = true;
  setConnection('connecting');
  route();
  void list.load('reset').then(() => {
    if (signedIn) void followTenant(session.signal);
  });
}

/**
 * The tenant-wide stream: every change of any job, as its summary. Re-lists on every
 * (re)connection, since the stream has no backlog and changes during a gap would be missed.
 * @param {AbortSignal} signal
 */
async function followTenant(signal) {
  let opened = false;
  await follow({
    path: () => '/events',
    signal,
    onOpen: () => {
      setConnection('live');
      // Also the first time: a change between the first list and this connection would be lost.
      void list.load('refresh');
      if (opened) detail?.resync();
      opened = true;
    },
    onDrop: () => setConnection('reconnecting'),
    onMessage: (message) => {
      if (message.event === 'resync') {
        // The server may have missed changes (its database connection dropped): catch up.
        void list.load('refresh');
        detail?.resync();
        return;
      }
      if (message.event !== 'job') return;
      const job = asJob(parseJson(message.data));
      if (!job) return;
      list.upsert(job, 'stream');
      if (detail?.id === job.id) detail.applySummary(job);
    },
  });
}

// ------------------------------------------------------------------------------ the list

/** @param {JobSummary} a @param {JobSummary} b */
const newestFirst = (a, b) => (a.createdAt === b.createdAt ? (a.id < b.id ? 1 : a.id > b.id ? -1 : 0) : a.createdAt < b.createdAt ? 1 : -1);

const list = {
  /** @type {Map<string, JobSummary>} */
  jobs: new Map(),
  /** @type {Map<string, HTMLTableRowElement>} */
  rows: new Map(),
  /** @type {string | undefined} */
  nextCursor: undefined,
  /** Bumped by every filter change, so the answer to an outdated request is dropped. */
  generation: 0,
  loaded: false,
  /** @type {Set<string>} */
  names: new Set(),
  orderScheduled: false,
  /** Counts stream news; `touched` remembers when each job last had some. */
  tick: 0,
  /** @type {Map<string, number>} */
  touched: new Map(),

  /** @returns {{ statuses: string[], name: string }} */
  filters() {
    const statuses = [...els.statusOptions.querySelectorAll('input:checked')].map((input) => /** @type {HTMLInputElement} */ (input).value);
    return { statuses, name: els.nameFilter.value.trim() };
  },

  /** @param {JobSummary} job */
  matches(job) {
    const { statuses, name } = this.filters();
    return (statuses.length === 0 || statuses.includes(job.status)) && (!name || job.name === name);
  },

  /**
   * `reset`: the first page for the current filters. `refresh`: the pages already shown, merged
   * in (after a reconnection). `more`: the next page.
   * @param {'reset' | 'refresh' | 'more'} mode
   */
  async load(mode) {
    if (mode === 'reset') this.generation += 1;
    if (mode === 'more' && !this.nextCursor) return;
    const generation = this.generation;
    const { statuses, name } = this.filters();
    const query = new URLSearchParams();
    if (statuses.length > 0) query.set('status', statuses.join(','));
    if (name) query.set('name', name);
    const limit = mode === 'refresh' ? Math.min(100, Math.max(PAGE_SIZE, this.jobs.size)) : PAGE_SIZE;
    query.set('limit', String(limit));
    if (mode === 'more' && this.nextCursor) query.set('cursor', this.nextCursor);
    els.loadMore.disabled = true;
    const startTick = this.tick;
    try {
      /** @type {{ jobs: JobView[], nextCursor?: string }} */
      const page = await api(`/jobs?${query.toString()}`, { signal: session.signal });
      if (generation !== this.generation) return;
      showError(els.listError, undefined);
      if (mode === 'reset') this.clear();
      if (mode === 'refresh') this.dropMissing(page, startTick);
      for (const job of page.jobs) this.upsert(job, 'list');
      if (mode !== 'refresh' || this.jobs.size <= page.jobs.length) this.nextCursor = page.nextCursor;
      this.loaded = true;
    } catch (error) {
      if (error instanceof AuthError || isAbort(error)) return;
      showError(els.listError, `Could not load the jobs: ${describe(error)}`);
    } finally {
      if (generation === this.generation) this.renderFoot();
    }
  },

  /**
   * After a refresh: a listed job the answer leaves out, within the range the answer covers,
   * no longer matches the filters (it changed while the stream was down). Jobs the stream
   * told about after the request went out are kept: the answer may predate them.
   * @param {{ jobs: JobSummary[], nextCursor?: string }} page
   * @param {number} startTick
   */
  dropMissing(page, startTick) {
    const answered = new Set(page.jobs.map((job) => job.id));
    const oldest = page.jobs.at(-1);
    for (const job of [...this.jobs.values()]) {
      if (answered.has(job.id) || (this.touched.get(job.id) ?? 0) > startTick) continue;
      if (!page.nextCursor || (oldest && newestFirst(job, oldest) <= 0)) this.remove(job.id);
    }
  },

  clear() {
    this.touched.clear();
    this.jobs.clear();
    for (const row of this.rows.values()) row.remove();
    this.rows.clear();
    this.nextCursor = undefined;
  },

  /**
   * Applies news about a job. A higher version wins; a job that no longer matches the filters
   * leaves the list; a new one from the stream enters it (at its place, newest first) when it
   * falls within the loaded range.
   * @param {JobSummary} job
   * @param {'list' | 'stream'} source
   */
  upsert(job, source) {
    if (source === 'stream') this.touched.set(job.id, ++this.tick);
    const known = this.jobs.get(job.id);
    if (known && known.version > job.version) return;
    this.rememberName(job.name);
    if (!this.matches(job)) {
      if (known) this.remove(job.id);
      return;
    }
    if (!known && source === 'stream' && this.nextCursor) {
      const oldest = [...this.jobs.values()].sort(newestFirst).at(-1);
      if (oldest && newestFirst(job, oldest) > 0) return; // belongs to a page not loaded yet
    }
    this.jobs.set(job.id, job);
    let row = this.rows.get(job.id);
    if (!row) {
      row = createRow(job);
      if (source === 'stream' && this.loaded) row.classList.add('row-new');
      this.rows.set(job.id, row);
      this.scheduleOrder();
    }
    paintRow(row, job);
    this.renderFoot();
  },

  /** @param {string} id */
  remove(id) {
    this.jobs.delete(id);
    this.rows.get(id)?.remove();
    this.rows.delete(id);
    this.renderFoot();
  },

  /** @param {string} name */
  rememberName(name) {
    if (this.names.has(name)) return;
    this.names.add(name);
    els.jobNames.replaceChildren(...[...this.names].sort().map((n) => h('option', { attrs: { value: n } })));
  },

  scheduleOrder() {
    if (this.orderScheduled) return;
    this.orderScheduled = true;
    queueMicrotask(() => {
      this.orderScheduled = false;
      const ordered = [...this.jobs.values()].sort(newestFirst);
      let cursor = els.jobsBody.firstElementChild;
      for (const job of ordered) {
        const row = this.rows.get(job.id);
        if (!row) continue;
        if (row === cursor) cursor = cursor.nextElementSibling;
        else els.jobsBody.insertBefore(row, cursor);
      }
    });
  },

  renderFoot() {
    const count = this.jobs.size;
    els.jobsEmpty.hidden = !this.loaded || count > 0;
    els.jobsCount.textContent = this.loaded ? `${count} job${count === 1 ? '' : 's'} shown${this.nextCursor ? ', more below' : ''}` : 'Loading…';
    els.loadMore.hidden = !this.nextCursor;
    els.loadMore.disabled = false;
  },
};

/** @param {JobSummary} job */
function createRow(job) {
  const idLink = h('a', { className: 'mono job-id', text: shortId(job.id), title: job.id, testid: 'job-id', attrs: { href: `#/jobs/${encodeURIComponent(job.id)}` } });
  const copyButton = h('button', { className: 'copy', text: 'copy', title: 'Copy the full id', testid: 'copy-job-id', attrs: { type: 'button', 'aria-label': `Copy job id ${job.id}` } });
  copyButton.addEventListener('click', (event) => {
    event.stopPropagation();
    void copy(job.id, copyButton);
  });
  const bar = h('div', { className: 'progress', attrs: { role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-label': `Progress of ${job.id}` } }, [h('div', { className: 'progress-fill' })]);
  const row = h('tr', { testid: 'job-row' }, [
    h('td', { className: 'cell-id' }, [idLink, copyButton]),
    h('td', { className: 'cell-name', text: job.name, testid: 'job-name' }),
    h('td', { className: 'cell-status' }),
    h('td', { className: 'col-progress' }, [
      h('div', { className: 'progress-line' }, [bar, h('span', { className: 'progress-percent', testid: 'job-percent' })]),
      h('div', { className: 'progress-note', testid: 'job-stage' }),
    ]),
    h('td', { className: 'cell-attempt', testid: 'job-attempt' }),
    h('td', { className: 'cell-created' }),
    h('td', { className: 'cell-updated' }),
  ]);
  row.dataset.jobId = job.id;
  row.addEventListener('animationend', () => row.classList.remove('row-new'));
  return row;
}

/**
 * Updates a row in place, so a moving progress bar animates instead of being redrawn.
 * @param {HTMLTableRowElement} row
 * @param {JobSummary} job
 */
function paintRow(row, job) {
  const [, , statusCell, progressCell, attemptCell, createdCell, updatedCell] = row.cells;
  if (!statusCell || !progressCell || !attemptCell || !createdCell || !updatedCell) return;
  const percent = progressPercent(job);
  row.dataset.status = job.status;
  row.dataset.version = String(job.version);
  row.dataset.percent = percent === undefined ? '' : String(percent);
  if (row.dataset.shownStatus !== job.status) {
    statusCell.replaceChildren(badge(job.status, 'job-status'));
    row.dataset.shownStatus = job.status;
  }
  const bar = /** @type {HTMLElement} */ (progressCell.querySelector('.progress'));
  paintProgress(bar, job);
  const percentText = /** @type {HTMLElement} */ (progressCell.querySelector('.progress-percent'));
  percentText.textContent = percent === undefined ? (job.status === 'running' ? '…' : '—') : `${percent}%`;
  const note = /** @type {HTMLElement} */ (progressCell.querySelector('.progress-note'));
  const failure = job.error?.message && job.status !== 'completed' ? job.error.message : undefined;
  note.textContent = failure ?? progressNote(job);
  // A cancellation is someone's decision, not a fault: said, not flagged.
  note.classList.toggle('is-error', failure !== undefined && job.status !== 'cancelled');
  note.title = note.textContent;
  attemptCell.textContent = `${job.attempt}/${job.maxAttempts}`;
  createdCell.replaceChildren(timeElement(job.createdAt));
  updatedCell.replaceChildren(timeElement(job.updatedAt));
}

els.jobsBody.addEventListener('click', (event) => {
  const target = /** @type {Element} */ (event.target);
  if (target.closest('a, button')) return;
  const row = /** @type {HTMLTableRowElement | null} */ (target.closest('tr[data-job-id]'));
  if (row?.dataset.jobId) location.hash = `#/jobs/${encodeURIComponent(row.dataset.jobId)}`;
});

els.loadMore.addEventListener('click', () => void list.load('more'));

for (const status of STATUSES) {
  const input = h('input', { testid: `filter-status-${status}`, attrs: { type: 'checkbox', name: 'status', value: status } });
  els.statusOptions.append(h('label', { className: `chip chip-${status}` }, [input, h('span', { text: statusLabel(status) })]));
}

/** @type {ReturnType<typeof setTimeout> | undefined} */
let filterTimer;
const reloadSoon = (delay = 250) => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => void list.load('reset'), delay);
};
els.statusOptions.addEventListener('change', () => reloadSoon(0));
els.nameFilter.addEventListener('input', () => reloadSoon());
els.filters.addEventListener('submit', (event) => {
  event.preventDefault();
  reloadSoon(0);
});
els.filters.addEventListener('reset', () => reloadSoon(0));

els.openForm.addEventListener('submit', (event) => {
  event.preventDefault();
  void openById(els.openId.value.trim());
});

/**
 * The search box: a job id (or a URL holding one) opens that job; a tail of an id opens the one
 * listed job it ends.
 * @param {string} text
 */
async function openById(text) {
  if (!text) return;
  showError(els.openError, undefined);
  const full = UUID.exec(text)?.[0]?.toLowerCase();
  if (!full) {
    const tail = text.replace(/^…/, '').toLowerCase();
    const hits = [...list.jobs.keys()].filter((id) => id.endsWith(tail));
    if (hits.length === 1 && hits[0]) {
      location.hash = `#/jobs/${hits[0]}`;
      return;
    }
    showError(els.openError, `"${text}" is not a job id. Paste the full id (like 01a208c4-03be-78e4-807a-e431693e3473).`);
    return;
  }
  try {
    await api(`/jobs/${encodeURIComponent(full)}`, { signal: session.signal });
    els.openId.value = '';
    location.hash = `#/jobs/${full}`;
  } catch (error) {
    if (error instanceof AuthError || isAbort(error)) return;
    if (error instanceof ApiError && error.status === 404) showError(els.openError, `No job with id ${full}. ${error.problem.detail ?? ''}`.trim());
    else showError(els.openError, `Could not open the job: ${describe(error)}`);
  }
}

// Relative times ("12s ago") age in place.
setInterval(() => {
  for (const element of document.querySelectorAll('time[data-relative]')) {
    const time = /** @type {HTMLTimeElement} */ (element);
    time.textContent = relativeTime(time.dateTime);
  }
}, 5000);

// ------------------------------------------------------------------------------ the detail

const detailEls = {
  error: byId('detail-error'),
  body: byId('detail-body'),
  name: byId('detail-title'),
  status: byId('detail-status'),
  id: byId('detail-id'),
  copyId: /** @type {HTMLButtonElement} */ (byId('copy-id')),
  actions: byId('detail-actions'),
  confirm: byId('confirm'),
  confirmText: byId('confirm-text'),
  confirmYes: /** @type {HTMLButtonElement} */ (byId('confirm-yes')),
  confirmNo: /** @type {HTMLButtonElement} */ (byId('confirm-no')),
  actionError: byId('action-error'),
  progress: byId('detail-progress'),
  progressText: byId('detail-progress-text'),
  facts: byId('detail-facts'),
  errorCard: byId('error-card'),
  errorMessage: byId('error-message'),
  errorMeta: byId('error-meta'),
  errorDetails: byId('error-details'),
  resultCard: byId('result-card'),
  resultTitle: byId('result-title'),
  resultJson: byId('result-json'),
  output: byId('output'),
  outputSize: byId('output-size'),
  input: byId('input-json'),
  timelineBody: /** @type {HTMLTableSectionElement} */ (byId('timeline-body')),
  timelineCount: byId('timeline-count'),
  deliveries: byId('deliveries'),
  deliveriesError: byId('deliveries-error'),
};

/**
 * @typedef {object} ActionSpec
 * @property {'cancel' | 'recover'} kind
 * @property {string} label
 * @property {string} question
 * @property {string} confirm
 */

/**
 * What can be done to a job in this status.
 * @param {JobStatus} status
 * @returns {ActionSpec[]}
 */
function actionsFor(status) {
  /** @type {ActionSpec[]} */
  const actions = [];
  if (status === 'queued' || status === 'running') {
    actions.push({ kind: 'cancel', label: 'Cancel', question: 'Cancel this job? A running handler is aborted and its late result discarded.', confirm: 'Cancel job' });
  }
  if (status === 'running') {
    actions.push({
      kind: 'recover',
      label: 'Stuck? Recover',
      question: 'Recover this running job? Its current worker is fenced out and the job goes back to the queue with a fresh attempt budget.',
      confirm: 'Recover job',
    });
  }
  if (status === 'failed' || status === 'timed_out' || status === 'cancelled') {
    actions.push({ kind: 'recover', label: 'Recover', question: 'Send this job back to the queue with a fresh attempt budget? Its history is kept.', confirm: 'Recover job' });
  }
  return actions;
}

/**
 * Summarises one event for the timeline: the words, and an error line if there is one.
 * @param {JobEvent} event
 * @returns {{ text: string, error?: string, tone?: string }}
 */
function summarise(event) {
  const d = event.data;
  const str = (/** @type {unknown} */ v) => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '');
  const errorOf = (/** @type {unknown} */ e) => (isRecord(e) ? str(/** @type {Record<string, unknown>} */ (e).message) || preview(e) : undefined);
  if (event.type === 'output') {
    const text = str(d.text);
    return { text: `+${text.length} chars “${text.length > 60 ? `${text.slice(0, 59)}…` : text}”` };
  }
  if (event.type === 'progress') {
    const percent = typeof d.percent === 'number' ? `${Math.round(d.percent)}%` : '';
    return { text: [percent, str(d.stage), str(d.message)].filter(Boolean).join(' · ') || preview(d) };
  }
  if (event.type === 'step') {
    const took = typeof d.durationMs === 'number' ? ` in ${Math.round(d.durationMs)} ms` : '';
    return { text: `step “${str(d.name)}” ${str(d.status)}${took}`, error: typeof d.error === 'string' ? d.error : undefined };
  }
  if (event.type !== 'status') return { text: preview(d) };
  const status = str(d.status);
  const attempt = str(d.attempt);
  if (status === 'queued') {
    if (d.recovered === true) return { text: `recovered from ${statusLabel(str(d.from) || 'unknown')} → queued, fresh attempt budget`, tone: 'recovered' };
    if (d.reason === 'retry') return { text: `attempt ${attempt} failed; retry scheduled${d.runAt ? ` for ${clockTime(str(d.runAt))}` : ''}`, error: errorOf(d.error), tone: 'retry' };
    if (d.reason === 'lease_expired') return { text: `attempt ${attempt}: the worker's lease expired; queued again`, error: errorOf(d.error), tone: 'retry' };
    if (d.reason === 'worker_shutdown') return { text: `attempt ${attempt}: handed back on worker shutdown; queued again`, tone: 'retry' };
    if (d.reason) return { text: `queued again (${str(d.reason)})`, error: errorOf(d.error) };
    return { text: 'submitted, queued' };
  }
  if (status === 'running') return { text: `running, attempt ${attempt}` };
  if (status === 'completed') return { text: `completed${attempt ? ` on attempt ${attempt}` : ''}${d.result !== undefined ? ` → ${preview(d.result, 60)}` : ''}`, tone: 'completed' };
  return { text: `${statusLabel(status)}${attempt ? ` on attempt ${attempt}` : ''}`, error: errorOf(d.error), tone: status };
}

/** The open job: its view, its event log (live), its deliveries (polled), its actions. */
class JobDetail {
  /** @param {string} id */
  constructor(id) {
    this.id = id;
    this.controller = new AbortController();
    /** @type {JobView | undefined} */
    this.job = undefined;
    /** Version of the first view fetched: the event replay is complete once past it. */
    this.firstVersion = 0;
    this.lastSeq = 0;
    /** The current attempt's output, built from `output` events (each `running` starts afresh). */
    this.eventOutput = '';
    this.streaming = false;
    this.deliveriesJson = '';
    this.fastPollUntil = 0;
    /** @type {() => void} */
    this.wakePoll = () => {};
    /** @type {ActionSpec | undefined} */
    this.pending = undefined;
    this.busy = false;
    this.shownActions = '';
    this.renderScheduled = false;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.refetchTimer = undefined;
  }

  get signal() {
    return this.controller.signal;
  }

  close() {
    this.controller.abort();
    clearTimeout(this.refetchTimer);
  }

  async open() {
    showError(detailEls.error, undefined);
    detailEls.body.hidden = true;
    detailEls.timelineBody.replaceChildren();
    detailEls.deliveries.replaceChildren();
    detailEls.output.textContent = '';
    showError(detailEls.actionError, undefined);
    showError(detailEls.deliveriesError, undefined);
    this.hideConfirm();
    try {
      /** @type {JobView} */
      const job = await api(`/jobs/${encodeURIComponent(this.id)}`, { signal: this.signal });
      this.job = job;
      this.firstVersion = job.version;
    } catch (error) {
      if (error instanceof AuthError || isAbort(error)) return;
      const message = error instanceof ApiError && error.status === 404 ? `No job with id ${this.id}. ${error.problem.detail ?? ''}` : `Could not load the job: ${describe(error)}`;
      showError(detailEls.error, message.trim());
      return;
    }
    detailEls.input.textContent = pretty(this.job.input);
    detailEls.body.hidden = false;
    this.render();
    // Screen readers follow the view change: the job's name is the new heading.
    detailEls.name.focus({ preventScroll: true });
    void this.followEvents();
    void this.pollDeliveries();
  }

  /** After the tenant stream reconnected: catch up on the view and make sure events flow. */
  resync() {
    this.scheduleRefetch(0);
    if (this.job && !this.streaming && !TERMINAL.includes(this.job.status)) void this.followEvents();
  }

  /**
   * Takes a newer view of the job (from a refetch or an action's answer).
   * @param {JobView} view
   */
  applyView(view) {
    if (this.job && view.version < this.job.version) return;
    this.job = view;
    list.upsert(view, 'stream');
    this.scheduleRender();
    if (!this.streaming && view.version > this.lastSeq) void this.followEvents();
  }

  /**
   * Takes a summary from the tenant stream: everything but input, output, result and fallback.
   * @param {JobSummary} summary
   */
  applySummary(summary) {
    if (!this.job || summary.version <= this.job.version) return;
    const statusChanged = summary.status !== this.job.status;
    this.job = { ...summary, input: this.job.input, output: this.job.output, result: this.job.result, fallback: this.job.fallback };
    if (statusChanged) this.scheduleRefetch();
    this.scheduleRender();
    if (!this.streaming && summary.version > this.lastSeq) void this.followEvents();
  }

  /** Re-reads the full view soon (result, fallback and error come with status changes). */
  scheduleRefetch(delay = 120) {
    clearTimeout(this.refetchTimer);
    this.refetchTimer = setTimeout(() => {
      void api(`/jobs/${encodeURIComponent(this.id)}`, { signal: this.signal }).then(
        (view) => {
          const job = asJob(view);
          if (job) this.applyView(job);
        },
        () => {},
      );
    }, delay);
  }

  /** Streams the job's events from the last one seen, until the job is done and all are here. */
  async followEvents() {
    if (this.streaming || this.signal.aborted) return;
    this.streaming = true;
    let failed = false;
    try {
      await follow({
        path: () => `/jobs/${encodeURIComponent(this.id)}/events?after=${this.lastSeq}`,
        signal: this.signal,
        stopOn404: true,
        onMessage: (message) => {
          const value = parseJson(message.data);
          if (isRecord(value)) this.onEvent(/** @type {JobEvent} */ (value));
        },
      });
    } catch (error) {
      failed = true;
      if (!isAbort(error)) showError(detailEls.actionError, `The event stream stopped: ${describe(error)}`);
    } finally {
      this.streaming = false;
    }
    // A change that landed while the stream was closing (e.g. a recovery) reopens it.
    if (!failed && !this.signal.aborted && this.job && this.job.version > this.lastSeq) void this.followEvents();
  }

  /** @param {JobEvent} event */
  onEvent(event) {
    if (typeof event.seq !== 'number' || event.seq <= this.lastSeq) return;
    this.lastSeq = event.seq;
    this.appendTimeline(event);
    const job = this.job;
    if (event.type === 'output') {
      this.eventOutput += typeof event.data.text === 'string' ? event.data.text : '';
    } else if (event.type === 'status') {
      const status = /** @type {JobStatus} */ (event.data.status);
      if (status === 'running') this.eventOutput = '';
      if (job && event.seq > job.version && STATUSES.includes(status)) {
        job.status = status;
        job.done = TERMINAL.includes(status);
        job.version = event.seq;
        job.updatedAt = event.at;
        if (typeof event.data.attempt === 'number') job.attempt = event.data.attempt;
      }
      if (event.seq > this.firstVersion) this.scheduleRefetch();
      if (TERMINAL.includes(status) && event.seq > this.firstVersion) this.pollFast(5000);
    } else if (event.type === 'progress' && job && event.seq > job.version) {
      job.progress = /** @type {Progress} */ (event.data);
      job.version = event.seq;
      job.updatedAt = event.at;
    }
    this.scheduleRender();
  }

  /** @param {JobEvent} event */
  appendTimeline(event) {
    const { text, error, tone } = summarise(event);
    const what = h('td', { className: 'tl-what' }, [h('span', { text })]);
    if (error) what.append(h('div', { className: 'tl-error', text: error }));
    const row = h('tr', { testid: 'timeline-event', className: tone ? `tone-${tone}` : '' }, [
      h('td', { className: 'mono muted', text: String(event.seq) }),
      h('td', { className: 'mono' }, [h('time', { text: clockTime(event.at), title: absoluteTime(event.at), attrs: { datetime: event.at } })]),
      h('td', {}, [h('span', { className: `tl-type tl-${event.type}`, text: event.type === 'status' ? String(event.data.status) : event.type })]),
      what,
    ]);
    row.dataset.seq = String(event.seq);
    row.dataset.type = event.type;
    if (event.type === 'status') row.dataset.status = String(event.data.status);
    if (event.data.recovered === true) row.dataset.recovered = 'true';
    const wrap = /** @type {HTMLElement} */ (detailEls.timelineBody.closest('.timeline-wrap'));
    const atBottom = wrap.scrollHeight - wrap.scrollTop - wrap.clientHeight < 24;
    detailEls.timelineBody.append(row);
    detailEls.timelineCount.textContent = `${detailEls.timelineBody.rows.length} events`;
    if (atBottom) wrap.scrollTop = wrap.scrollHeight;
  }

  scheduleRender() {
    if (this.renderScheduled) return;
    this.renderScheduled = true;
    requestAnimationFrame(() => {
      this.renderScheduled = false;
      if (!this.signal.aborted) this.render();
    });
  }

  render() {
    const job = this.job;
    if (!job) return;
    document.title = `${job.name} · ${statusLabel(job.status)} · Waitless`;
    detailEls.name.textContent = job.name;
    detailEls.status.textContent = statusLabel(job.status);
    detailEls.status.className = `badge status-${job.status}`;
    detailEls.status.dataset.status = job.status;
    detailEls.id.textContent = job.id;

    paintProgress(detailEls.progress, job);
    const percent = progressPercent(job);
    detailEls.progressText.textContent = [percent === undefined ? '' : `${percent}%`, progressNote(job)].filter(Boolean).join(' · ') || (job.status === 'queued' ? 'waiting for a worker' : '');

    /** @type {Array<[string, Node | string]>} */
    const facts = [
      ['Status', badge(job.status)],
      ['Attempt', `${job.attempt} of ${job.maxAttempts}`],
      ['Created', timeWithExact(job.createdAt)],
      ['Started', job.startedAt ? timeWithExact(job.startedAt) : '—'],
      ['Finished', job.finishedAt ? timeWithExact(job.finishedAt) : '—'],
      ['Updated', timeWithExact(job.updatedAt)],
    ];
    if (job.status === 'queued' && Date.parse(job.runAt) > Date.now() + 1000) facts.push(['Runs', timeWithExact(job.runAt)]);
    if (job.priority) facts.push(['Priority', String(job.priority)]);
    if (job.supersedeKey) facts.push(['Key', job.supersedeKey]);
    if (job.concurrency) facts.push(['Limit', `${job.concurrency.limit} at once for “${job.concurrency.key}”`]);
    if (job.usage) facts.push(['Tokens', `${job.usage.totalTokens} (${job.usage.promptTokens} in, ${job.usage.completionTokens} out)`]);
    if (job.steps?.length) {
      const steps = job.steps.map((step) => {
        const took = step.durationMs === undefined ? '' : ` ${Math.round(step.durationMs)} ms`;
        return h('li', { text: `${step.name}: ${step.status}${took} (attempt ${step.attempt})${step.error ? ` — ${step.error}` : ''}` });
      });
      facts.push(['Steps', h('ul', { className: 'steps' }, steps)]);
    }
    facts.push(['Version', String(job.version)]);
    detailEls.facts.replaceChildren(...facts.flatMap(([term, value]) => [h('dt', { text: term }), h('dd', { testid: `fact-${term.toLowerCase()}` }, [value])]));

    const error = job.error;
    detailEls.errorCard.hidden = !error || job.status === 'completed';
    if (error) {
      const { message, code, name, ...rest } = error;
      detailEls.errorMessage.textContent = typeof message === 'string' ? message : 'No message.';
      detailEls.errorMeta.textContent = [code ? `code ${String(code)}` : '', name ? `name ${String(name)}` : ''].filter(Boolean).join(' · ');
      detailEls.errorDetails.hidden = Object.keys(rest).length === 0;
      detailEls.errorDetails.textContent = pretty(rest);
    }

    if (job.status === 'completed' && 'result' in job) {
      detailEls.resultCard.hidden = false;
      detailEls.resultCard.classList.remove('provisional');
      detailEls.resultTitle.replaceChildren('Result');
      detailEls.resultJson.textContent = pretty(job.result);
    } else if (job.fallback) {
      detailEls.resultCard.hidden = false;
      detailEls.resultCard.classList.add('provisional');
      detailEls.resultTitle.replaceChildren('Fallback result ', h('span', { className: 'badge provisional', text: 'provisional', testid: 'provisional' }));
      detailEls.resultJson.textContent = pretty(job.fallback.result);
    } else {
      detailEls.resultCard.hidden = true;
    }

    const output = this.lastSeq >= this.firstVersion ? this.eventOutput : (job.output ?? '');
    if (detailEls.output.textContent !== output) {
      const pre = detailEls.output;
      const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
      pre.textContent = output;
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    }
    detailEls.output.classList.toggle('is-empty', output === '');
    detailEls.outputSize.textContent = output ? `${output.length} chars${job.done ? '' : ', growing'}` : job.done ? 'none' : 'none yet';

    this.renderActions();
  }

  renderActions() {
    const job = this.job;
    if (!job) return;
    const actions = actionsFor(job.status);
    const key = `${actions.map((a) => a.label).join('|')}|${this.busy}`;
    if (this.pending && !actions.some((a) => a.kind === this.pending?.kind)) this.hideConfirm();
    if (key === this.shownActions) return;
    this.shownActions = key;
    detailEls.actions.replaceChildren(
      ...actions.map((action) => {
        // Recovering a running job is the unusual move: offered, not pushed.
        const style = action.kind === 'cancel' ? 'danger-outline' : job.status === 'running' ? '' : 'primary';
        const button = h('button', { className: style, text: action.label, testid: `action-${action.kind}`, attrs: { type: 'button' } });
        button.disabled = this.busy;
        button.addEventListener('click', () => this.askConfirm(action));
        return button;
      }),
    );
  }

  /** @param {ActionSpec} action */
  askConfirm(action) {
    this.pending = action;
    showError(detailEls.actionError, undefined);
    detailEls.confirmText.textContent = action.question;
    detailEls.confirmYes.textContent = action.confirm;
    detailEls.confirmYes.className = action.kind === 'cancel' ? 'danger' : 'primary';
    detailEls.confirmYes.disabled = false;
    detailEls.confirm.hidden = false;
    detailEls.confirmYes.focus();
  }

  hideConfirm() {
    this.pending = undefined;
    detailEls.confirm.hidden = true;
  }

  async confirm() {
    const action = this.pending;
    if (!action || this.busy) return;
    this.busy = true;
    detailEls.confirmYes.disabled = true;
    this.renderActions();
    try {
      /** @type {JobView} */
      const view = await api(`/jobs/${encodeURIComponent(this.id)}/${action.kind}`, { method: 'POST', signal: this.signal });
      this.hideConfirm();
      this.applyView(view);
      this.pollFast(4000);
    } catch (error) {
      if (error instanceof AuthError || isAbort(error)) return;
      this.hideConfirm();
      showError(detailEls.actionError, `${action.kind === 'cancel' ? 'Cancel' : 'Recover'} failed: ${describe(error)}`);
    } finally {
      this.busy = false;
      this.renderActions();
    }
  }

  /** @param {number} ms poll deliveries every 400 ms for this long */
  pollFast(ms) {
    this.fastPollUntil = Math.max(this.fastPollUntil, Date.now() + ms);
    this.wakePoll();
  }

  /** Polls the job's webhook deliveries while the detail is open (faster right after actions). */
  async pollDeliveries() {
    while (!this.signal.aborted) {
      if (!document.hidden) await this.loadDeliveries();
      const fast = Date.now() < this.fastPollUntil;
      const wake = new AbortController();
      this.wakePoll = () => wake.abort();
      await sleep(fast ? 400 : 2500, AbortSignal.any([this.signal, wake.signal]));
    }
  }

  async loadDeliveries() {
    try {
      /** @type {{ deliveries: Delivery[] }} */
      const answer = await api(`/jobs/${encodeURIComponent(this.id)}/deliveries`, { signal: this.signal });
      showError(detailEls.deliveriesError, undefined);
      const json = JSON.stringify(answer.deliveries);
      if (json === this.deliveriesJson) return;
      this.deliveriesJson = json;
      this.renderDeliveries(answer.deliveries);
    } catch (error) {
      if (error instanceof AuthError || isAbort(error)) return;
      showError(detailEls.deliveriesError, `Could not load the deliveries: ${describe(error)}`);
    }
  }

  /** @param {Delivery[]} deliveries */
  renderDeliveries(deliveries) {
    if (deliveries.length === 0) {
      detailEls.deliveries.replaceChildren(h('p', { className: 'muted', text: 'No webhook deliveries for this job. They are written when it ends (or reports progress to an endpoint that asked for it).' }));
      return;
    }
    detailEls.deliveries.replaceChildren(...deliveries.map((delivery) => this.deliveryElement(delivery)));
  }

  /** @param {Delivery} delivery */
  deliveryElement(delivery) {
    const redeliver = h('button', { className: 'small', text: 'Redeliver', testid: 'redeliver', attrs: { type: 'button' } });
    redeliver.addEventListener('click', () => void this.redeliver(delivery, redeliver));
    const facts = [`webhook-id ${delivery.id}`, `created ${relativeTime(delivery.createdAt)}`];
    if (delivery.deliveredAt) facts.push(`delivered ${relativeTime(delivery.deliveredAt)}`);
    if (delivery.status === 'pending' && delivery.nextAttemptAt) facts.push(`next attempt ${relativeTime(delivery.nextAttemptAt)}`);
    const attempts =
      delivery.attempts.length === 0
        ? h('p', { className: 'muted', text: 'No attempt yet.' })
        : h('table', { className: 'attempts' }, [
            h('thead', {}, [h('tr', {}, [h('th', { text: '#', attrs: { scope: 'col' } }), h('th', { text: 'Time', attrs: { scope: 'col' } }), h('th', { text: 'Outcome', attrs: { scope: 'col' } }), h('th', { text: 'Duration', attrs: { scope: 'col' } })])]),
            h(
              'tbody',
              {},
              delivery.attempts.map((attempt) => {
                const ok = attempt.statusCode !== undefined && attempt.statusCode >= 200 && attempt.statusCode < 300;
                const outcome = attempt.statusCode !== undefined ? `HTTP ${attempt.statusCode}` : (attempt.error ?? 'no answer');
                const outcomeCell = h('td', { className: ok ? 'ok' : 'bad' }, [h('span', { text: outcome })]);
                if (attempt.statusCode !== undefined && attempt.error) outcomeCell.append(h('div', { className: 'tl-error', text: attempt.error }));
                if (attempt.responseExcerpt) outcomeCell.title = attempt.responseExcerpt;
                const row = h('tr', { testid: 'delivery-attempt' }, [
                  h('td', { className: 'mono muted', text: String(attempt.n) }),
                  h('td', { className: 'mono' }, [h('time', { text: clockTime(attempt.startedAt), title: absoluteTime(attempt.startedAt), attrs: { datetime: attempt.startedAt } })]),
                  outcomeCell,
                  h('td', { className: 'mono', text: `${attempt.latencyMs} ms` }),
                ]);
                row.dataset.n = String(attempt.n);
                return row;
              }),
            ),
          ]);
    const article = h('article', { className: 'delivery', testid: 'delivery' }, [
      h('div', { className: 'delivery-head' }, [
        h('span', { className: 'badge event', text: delivery.eventType, testid: 'delivery-event' }),
        badge(delivery.status, 'delivery-status'),
        h('code', { className: 'delivery-url', text: delivery.url, title: delivery.url }),
        redeliver,
      ]),
      h('p', { className: 'muted small-text mono-ish', text: facts.join(' · ') }),
      ...(delivery.lastError && delivery.status !== 'succeeded' ? [h('p', { className: 'tl-error', text: delivery.lastError })] : []),
      attempts,
    ]);
    article.dataset.deliveryId = delivery.id;
    article.dataset.status = delivery.status;
    article.dataset.attempts = String(delivery.attempts.length);
    return article;
  }

  /**
   * @param {Delivery} delivery
   * @param {HTMLButtonElement} button
   */
  async redeliver(delivery, button) {
    button.disabled = true;
    button.textContent = 'Redelivering…';
    showError(detailEls.deliveriesError, undefined);
    try {
      await api(`/deliveries/${encodeURIComponent(delivery.id)}/redeliver`, { method: 'POST', signal: this.signal });
      this.deliveriesJson = ''; // redraw even if nothing changed yet, to restore the button
      this.pollFast(6000);
    } catch (error) {
      if (error instanceof AuthError || isAbort(error)) return;
      button.disabled = false;
      button.textContent = 'Redeliver';
      showError(detailEls.deliveriesError, `Redeliver failed: ${describe(error)}`);
    }
  }
}

/**
 * A relative time with the exact one beside it.
 * @param {string} iso
 */
function timeWithExact(iso) {
  const wrap = h('span', {}, [timeElement(iso)]);
  wrap.append(h('span', { className: 'muted exact', text: ` ${absoluteTime(iso)}` }));
  return wrap;
}

detailEls.confirmYes.addEventListener('click', () => void detail?.confirm());
detailEls.confirmNo.addEventListener('click', () => detail?.hideConfirm());
detailEls.copyId.addEventListener('click', () => {
  if (detail) void copy(detail.id, detailEls.copyId);
});

/** @type {JobDetail | undefined} */
let detail;

function closeDetail() {
  detail?.close();
  detail = undefined;
}

// ------------------------------------------------------------------------------ routing

/** `#/jobs/<id>` shows a job; anything else, the list. A reload keeps the selection. */
function route() {
  if (!signedIn) return;
  const match = /^#\/jobs\/([^/?#]+)$/.exec(location.hash);
  const id = match?.[1] ? decodeURIComponent(match[1]) : undefined;
  if (id) {
    els.listView.hidden = true;
    els.detailView.hidden = false;
    if (detail?.id === id) return;
    closeDetail();
    detail = new JobDetail(id);
    void detail.open();
    window.scrollTo(0, 0);
  } else {
    closeDetail();
    document.title = 'Waitless';
    els.detailView.hidden = true;
    els.listView.hidden = false;
  }
}

window.addEventListener('hashchange', route);

start();
