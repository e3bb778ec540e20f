/**
 * Where `useSubmitJob` keeps the job it submitted, so that a reload finds it again: the tab's
 * `sessionStorage`, or the page URL's query. Every access is guarded: no storage (server
 * rendering, a locked-down browser) means nothing is kept, never an exception.
 */

/** The submit intent in progress: its idempotency key and the fingerprint of its input. */
export interface SubmitIntent {
  key: string;
  fingerprint: string;
}

/** What is kept across reloads. */
export interface PersistedJob {
  jobId?: string;
  /** The job token (`wlt_…`) the app's endpoint returned with the job. */
  token?: string;
  /** The subject the job was submitted for. */
  subject?: string;
  /** A submit that was sent (or about to be) when the page went away: its key is reused for the same input. */
  intent?: SubmitIntent;
}

/** Loads, saves and clears one {@link PersistedJob}. */
export interface Persistence {
  load(): PersistedJob;
  save(record: PersistedJob): void;
  clear(): void;
}

/** The subset of the Web Storage API used here. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** The subset of `location` + `history` used by the `url` persistence. */
export interface UrlLike {
  /** The current URL (`location.href`). */
  href(): string;
  /** Replaces the current URL without navigating (`history.replaceState`). */
  replace(url: string): void;
}

/** Keeps nothing (no `persist` option): the record lives as long as the page. */
export function memoryPersistence(): Persistence {
  let record: PersistedJob = {};
  return {
    load: () => ({ ...record }),
    save: (next) => void (record = { ...next }),
    clear: () => void (record = {}),
  };
}

/** Keeps the record as JSON under `key` in `storage` (default: `sessionStorage`). */
export function storagePersistence(key: string, storage: StorageLike | undefined = sessionStorageOrUndefined()): Persistence {
  return {
    load: () => parseRecord(guard(() => storage?.getItem(key) ?? null, null)),
    save: (record) => guard(() => storage?.setItem(key, JSON.stringify(clean(record))), undefined),
    clear: () => guard(() => storage?.removeItem(key), undefined),
  };
}

/**
 * Keeps the job id in the URL's query (`?job=<id>` by default, replaced in place, no new
 * history entry) and the rest (token, subject, intent) in `storage` under `key`, used only
 * while it belongs to the job the URL names. A URL pasted in another tab thus names the job but
 * carries no token.
 */
export function urlPersistence(key: string, param = 'job', url: UrlLike | undefined = browserUrlOrUndefined(), storage?: StorageLike): Persistence {
  const rest = storagePersistence(key, storage);
  const read = () => guard(() => (url ? new URL(url.href()).searchParams.get(param) : null), null) ?? undefined;
  const write = (jobId: string | undefined) =>
    guard(() => {
      if (!url) return;
      const next = new URL(url.href());
      if (jobId === undefined) next.searchParams.delete(param);
      else next.searchParams.set(param, jobId);
      if (next.href !== url.href()) url.replace(next.href);
    }, undefined);
  return {
    load() {
      const jobId = read();
      const stored = rest.load();
      if (jobId === undefined) return stored.intent ? { intent: stored.intent } : {};
      return stored.jobId === jobId ? stored : { jobId };
    },
    save(record) {
      write(record.jobId);
      rest.save(record);
    },
    clear() {
      write(undefined);
      rest.clear();
    },
  };
}

function clean(record: PersistedJob): PersistedJob {
  const out: PersistedJob = {};
  if (typeof record.jobId === 'string') out.jobId = record.jobId;
  if (typeof record.token === 'string') out.token = record.token;
  if (typeof record.subject === 'string') out.subject = record.subject;
  if (record.intent && typeof record.intent.key === 'string' && typeof record.intent.fingerprint === 'string') {
    out.intent = { key: record.intent.key, fingerprint: record.intent.fingerprint };
  }
  return out;
}

function parseRecord(text: string | null): PersistedJob {
  if (!text) return {};
  try {
    const value: unknown = JSON.parse(text);
    return value && typeof value === 'object' && !Array.isArray(value) ? clean(value) : {};
  } catch {
    return {};
  }
}

function guard<T>(fn: () => T, fallback: T): T {
  try {
    return fn();
  } catch {
    return fallback; // storage disabled, quota exceeded, no window
  }
}

function sessionStorageOrUndefined(): StorageLike | undefined {
  return guard(() => (typeof sessionStorage === 'undefined' ? undefined : sessionStorage), undefined);
}

function browserUrlOrUndefined(): UrlLike | undefined {
  if (typeof location === 'undefined' || typeof history === 'undefined') return undefined;
  return { href: () => location.href, replace: (next) => history.replaceState(history.state, '', next) };
}

// -----------------------------------------------------------------------------------------
// Intents

/** JSON with object keys sorted, so two equal inputs give the same text whatever their key order. */
export function stableStringify(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      return Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    }
    return v;
  }) ?? 'undefined';
}

/** A short fingerprint of an input (53-bit cyrb53 hash of its stable JSON, as hex). Not a security measure. */
export function fingerprintOf(input: unknown): string {
  const text = stableStringify(input);
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(16).padStart(14, '0');
}

/**
 * The intent for submitting an input: the current one when it is for the same input (a retry
 * after a failure, or after a reload mid-submit: the server then answers with the job the first
 * try created), else a new one with a fresh key.
 */
export function intentFor(current: SubmitIntent | undefined, input: unknown, newKey: () => string = () => crypto.randomUUID()): SubmitIntent {
  const fingerprint = fingerprintOf(input);
  return current?.fingerprint === fingerprint ? current : { key: newKey(), fingerprint };
}
