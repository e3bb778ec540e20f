// @ts-check
/** The page's state: its elements, the signed-in session, the connection badge, the sign-in form. */
import { byId, showError } from './helpers.js';

/** @typedef {import('./types.js').ConnectionState} ConnectionState */

const KEY_STORAGE = 'waitless.dashboard.apiKey';

/** What the entry module does on a sign-in and on a refused key (set once, by it). */
export const hooks = {
  /** The form gave a key: start the signed-in session. */
  signIn: () => {},
  /** The key was refused: close whatever is open. */
  signOut: () => {},
};

/** The API key of this tab (serve mode), or '' (dev mode needs none). */
export function storedKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) ?? '';
  } catch {
    return '';
  }
}

export const els = {
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
export let session = new AbortController();
export let signedIn = false;

/** Starts a signed-in session (a fresh signal for its streams and polls). */
export function beginSession() {
  session = new AbortController();
  signedIn = true;
  els.authView.hidden = true;
  setConnection('connecting');
}

/** @param {ConnectionState} state */
export function setConnection(state) {
  els.connection.dataset.state = state;
  els.connectionLabel.textContent = { connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…', 'signed-out': 'signed out' }[state];
}

/**
 * The API refused the key (or there is none): stop everything and ask for one.
 * @param {string | undefined} detail the server's explanation
 * @param {boolean} showDetail false for the very first 401 of a tab that never sent a key
 */
export function requireKey(detail, showDetail) {
  if (signedIn || els.authView.hidden) {
    session.abort();
    signedIn = false;
    hooks.signOut();
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
  hooks.signIn();
});
