// @ts-check
/** Small helpers: elements, text and times, JSON. */
/** @typedef {import('./types.js').JobStatus} JobStatus */
/** @typedef {import('./types.js').JobView} JobView */

/**
 * @param {string} id
 * @returns {HTMLElement}
 */
export function byId(id) {
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
export function h(tag, options = {}, children = []) {
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
export function sleep(ms, signal) {
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
export function backoff(failures) {
  const base = Math.min(15_000, 500 * 2 ** Math.max(0, failures - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/** @param {JobStatus | string} status */
export const statusLabel = (status) => status.replace('_', ' ');

/** @param {string} id */
export const shortId = (id) => (id.length > 12 ? `…${id.slice(-12)}` : id);

/**
 * "12s ago", "in 5s", "3h ago".
 * @param {string | undefined} iso
 */
export function relativeTime(iso) {
  if (!iso) return '—';
  const seconds = Math.round((Date.now() - Date.parse(iso)) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 3) return 'just now';
  const [value, unit] = abs < 60 ? [abs, 's'] : abs < 3600 ? [Math.floor(abs / 60), 'm'] : abs < 86_400 ? [Math.floor(abs / 3600), 'h'] : [Math.floor(abs / 86_400), 'd'];
  return seconds >= 0 ? `${value}${unit} ago` : `in ${value}${unit}`;
}

/** @param {string | undefined} iso */
export function absoluteTime(iso) {
  return iso ? new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' }) : '';
}

/**
 * `14:03:27.512`, local time.
 * @param {string} iso
 */
export function clockTime(iso) {
  const d = new Date(iso);
  const pad = (/** @type {number} */ n, width = 2) => String(n).padStart(width, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/**
 * A `<time>` that the page keeps relative ("12s ago"), with the exact time on hover.
 * @param {string | undefined} iso
 */
export function timeElement(iso) {
  const element = h('time', { text: relativeTime(iso), title: absoluteTime(iso) });
  if (iso) {
    element.dateTime = iso;
    element.dataset.relative = '';
  }
  return element;
}

/** @param {unknown} value */
export function pretty(value) {
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
export function preview(value, max = 80) {
  let text;
  try {
    text = JSON.stringify(value) ?? '';
  } catch {
    text = '(not JSON)';
  }
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** @param {unknown} value */
export const isRecord = (value) => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Reads a job (view or summary) off the wire; anything without an id and a version is dropped.
 * @param {unknown} value
 * @returns {JobView | undefined}
 */
export function asJob(value) {
  if (!isRecord(value)) return undefined;
  const job = /** @type {Partial<JobView>} */ (value);
  return typeof job.id === 'string' && typeof job.version === 'number' && typeof job.status === 'string' ? /** @type {JobView} */ (job) : undefined;
}

/** @param {string} text */
export function parseJson(text) {
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
export async function copy(text, button) {
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
export function showError(element, message) {
  element.textContent = message ?? '';
  element.hidden = !message;
}