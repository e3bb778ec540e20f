// @ts-check
/**
 * The API, as the page calls it: with the tab's key, problem+json errors as exceptions, a
 * refused key bringing the sign-in form back, and event streams followed across reconnections.
 */
import { readSse } from '../contract/sse.ts';
import { backoff, isRecord, parseJson, sleep } from './helpers.js';
import { requireKey, storedKey } from './page.js';

/** @typedef {import('./types.js').Problem} Problem */
/** @typedef {import('../contract/sse.ts').SseMessage} SseMessage */

/**
 * Where the API lives: everything before `/dashboard` in this page's own path, so the page works
 * wherever the app is mounted (`/dashboard/` → `/v1`, `/jobs-api/dashboard/` → `/jobs-api/v1`).
 */
export const API = `${location.pathname.replace(/\/dashboard(?:\/[^/]*)?$/, '')}/v1`;

/** A non-2xx answer, with its problem+json body. */
export class ApiError extends Error {
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
export class AuthError extends ApiError {}

/** @param {Response} response */
async function readProblem(response) {
  const body = parseJson(await response.text().catch(() => ''));
  return isRecord(body) ? /** @type {Problem} */ (body) : { title: response.statusText || `HTTP ${response.status}` };
}

/**
 * Calls the API with the tab's key. A 401/403 brings the sign-in form back and throws AuthError.
 * @param {string} path below `/v1`
 * @param {RequestInit} [init]
 */
export async function request(path, init = {}) {
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
export async function api(path, init) {
  const response = await request(path, init);
  if (!response.ok) throw new ApiError(response.status, await readProblem(response));
  const body = /** @type {unknown} */ (await response.json());
  return /** @type {T} */ (body);
}

/** @param {unknown} error */
export const isAbort = (error) => error instanceof DOMException && error.name === 'AbortError';

/** @param {unknown} error */
export const describe = (error) => (error instanceof Error ? error.message : String(error));

const NOT_ADMIN =
  'This key is not an admin key. The dashboard shows every job of the tenant and can recover them: sign in with an admin key (waitless keys create --tenant <tenant> --admin).';

/**
 * Whether the tab's key may use the dashboard, which is for admins (README: "an admin key:
 * recover jobs, open the dashboard"), asked of `GET /v1/whoami`. A refused key brings the
 * sign-in form back, saying why.
 * @param {AbortSignal} signal
 * @returns {Promise<boolean>}
 */
export async function checkAdmin(signal) {
  const key = storedKey();
  const headers = new Headers();
  if (key) headers.set('authorization', `Bearer ${key}`);
  const response = await fetch(`${API}/whoami`, { headers, cache: 'no-store', signal });
  if (response.status === 401) {
    const problem = await readProblem(response);
    requireKey(problem.detail ?? problem.title, key !== '');
    return false;
  }
  // 403: a job token, which reads one job and nothing else.
  const caller = response.ok ? /** @type {{ role?: string }} */ (await response.json()) : (await response.body?.cancel(), {});
  if (response.status === 403 || (response.ok && caller.role !== 'admin')) {
    requireKey(NOT_ADMIN, true);
    return false;
  }
  return true;
}

/**
 * Follows an SSE endpoint: reconnects with backoff when the stream drops or fails, until the
 * server answers 204 (nothing more will come), the signal aborts, or the key is refused. A
 * stream silent for `idleMs` (the server sends a keep-alive every 15 s) is taken for dead and
 * reopened.
 * @param {object} options
 * @param {() => string} options.path the path to (re)connect to, asked again on every attempt
 * @param {AbortSignal} options.signal
 * @param {(message: SseMessage) => void} options.onMessage
 * @param {() => void} [options.onOpen] on every successful (re)connection
 * @param {(error: unknown) => void} [options.onDrop] when the stream ended or failed
 * @param {boolean} [options.stopOn404] give up when the resource does not exist
 * @param {number} [options.idleMs]
 * @returns {Promise<void>}
 */
export async function follow(options) {
  const idleMs = options.idleMs ?? 45_000;
  let failures = 0;
  while (!options.signal.aborted) {
    /** @type {unknown} */
    let dropped;
    const connection = new AbortController();
    const signal = AbortSignal.any([options.signal, connection.signal]);
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let idle;
    const arm = () => {
      clearTimeout(idle);
      idle = setTimeout(() => connection.abort(), idleMs);
    };
    try {
      arm();
      const response = await request(options.path(), { signal, headers: { accept: 'text/event-stream' } });
      if (response.status === 204) return;
      if (!response.ok || !response.body) throw new ApiError(response.status, await readProblem(response));
      failures = 0;
      options.onOpen?.();
      for await (const message of readSse(response.body, { onBytes: arm })) options.onMessage(message);
    } catch (error) {
      if (options.signal.aborted || error instanceof AuthError) return;
      if (options.stopOn404 && error instanceof ApiError && error.status === 404) throw error;
      if (!connection.signal.aborted) {
        dropped = error;
        failures += 1;
      }
    } finally {
      clearTimeout(idle);
    }
    if (options.signal.aborted) return;
    options.onDrop?.(dropped);
    await sleep(failures === 0 ? 100 : backoff(failures), options.signal);
  }
}
