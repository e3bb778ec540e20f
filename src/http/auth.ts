import type { Context, MiddlewareHandler } from 'hono';
import { isJobToken, type JobTokens, type JobTokenScope } from '../access/job-tokens.ts';
import type { ApiKeyRole, ApiKeyStore } from '../store/api-keys.ts';
import { problem } from './problem.ts';

export type AuthMode =
  /** Every request acts as one tenant, with admin rights. Only for local development (`waitless dev`). */
  | { mode: 'none'; tenant: string }
  /**
   * `Authorization: Bearer wl_…`; the key decides the tenant and role. Verified keys are cached
   * for `cacheMs` (default `10_000`); a revoked key is dropped from every process's cache at once
   * (the revoke notifies them), the time limit is only the backstop.
   */
  | { mode: 'api-key'; keys: ApiKeyStore; cacheMs?: number };

/**
 * Who is calling: a key of a role (its id, absent when the API runs without keys, and the
 * highest priority it may set, absent when any), or a browser holding a token for one job.
 */
export type Caller = { kind: 'key'; role: ApiKeyRole; keyId?: string; maxPriority?: number } | { kind: 'job-token'; jobId: string; scopes: JobTokenScope[] };

export type AuthEnv = { Variables: { tenant: string; caller: Caller } };

/** The routes a job token opens, each on its own job only (paths relative to the API's base). */
const JOB_TOKEN_ROUTES: Array<{ method: string; pattern: RegExp; scope: JobTokenScope }> = [
  { method: 'GET', pattern: /^\/v1\/jobs\/([^/]+)$/, scope: 'read' },
  { method: 'GET', pattern: /^\/v1\/jobs\/([^/]+)\/events$/, scope: 'read' },
  { method: 'POST', pattern: /^\/v1\/jobs\/([^/]+)\/cancel$/, scope: 'cancel' },
];

const unauthorized = (c: Context, detail: string) =>
  problem(c, 401, { type: '/problems/unauthorized', title: 'Unauthorized', detail }, { 'www-authenticate': 'Bearer realm="waitless"' });

/**
 * The bearer credential: the Authorization header, or `?access_token=` for EventSource, which
 * cannot set headers. Only a job token may come in the query (`fromQuery`): a URL ends up in
 * logs, browser history and Referer headers, and a job token is short-lived and reads one job.
 */
function credentialOf(c: Context): { credential: string | undefined; fromQuery: boolean } {
  const header = c.req.header('authorization');
  if (header) return { credential: /^Bearer\s+(\S+)$/i.exec(header)?.[1] ?? '', fromQuery: false };
  const query = c.req.query('access_token');
  return { credential: query, fromQuery: query !== undefined };
}

/** Whom the cache forgets when a key is revoked: its tokens are `wl_<id>_<secret>`. */
const keyIdOf = (token: string) => /^wl_([0-9a-f]{16})_/.exec(token)?.[1];

/**
 * Resolves the caller's tenant and rights, or answers 401. Verified keys are cached briefly
 * (default 10 s). A job token is checked here too, against the route: it reads (and, if
 * minted so, cancels) its own job; another job's id answers 404 as if the job did not exist,
 * and every other route 403.
 */
export function authenticate(
  auth: AuthMode,
  jobTokens: JobTokens,
  basePath: string,
  onKeyRevoked?: (listener: (keyId: string | undefined) => void) => void,
): MiddlewareHandler<AuthEnv> {
  const cacheMs = auth.mode === 'api-key' ? (auth.cacheMs ?? 10_000) : 0;
  const cache = new Map<string, { id: string; tenant: string; role: ApiKeyRole; maxPriority?: number; until: number }>();
  const verifying = new Map<string, ReturnType<ApiKeyStore['verify']>>();
  // Bumped by every revocation: a lookup that began before it may have seen the key still valid, so is not cached.
  let revocations = 0;
  if (auth.mode === 'api-key') {
    onKeyRevoked?.((keyId) => {
      revocations++;
      verifying.clear();
      if (keyId === undefined) cache.clear();
      else for (const token of cache.keys()) if (keyIdOf(token) === keyId) cache.delete(token);
    });
  }

  const withJobToken = async (c: Context<AuthEnv>, token: string, next: () => Promise<void>) => {
    const check = await jobTokens.verify(token);
    if (!check.ok) {
      return unauthorized(c, check.reason === 'expired' ? 'The job token has expired. Ask the application for a new one.' : 'The job token is not valid.');
    }
    const path = c.req.path.slice(basePath.length);
    const route = JOB_TOKEN_ROUTES.find((r) => r.method === c.req.method && r.pattern.test(path));
    if (!route || !check.claims.scopes.includes(route.scope)) {
      return problem(c, 403, {
        type: '/problems/forbidden',
        title: 'Forbidden',
        detail: route ? `This job token may not ${route.scope} the job.` : 'A job token reads its own job (and cancels it, if allowed), nothing else.',
      });
    }
    const id = route.pattern.exec(path)![1]!;
    // Compared undecoded: a job id is a UUID, which needs no escapes, and a malformed escape must not throw.
    if (id !== check.claims.jobId) {
      return problem(c, 404, { type: '/problems/job-not-found', title: 'Job not found', detail: `No job with id "${id}" exists for this token.` });
    }
    c.set('tenant', check.claims.tenant);
    c.set('caller', { kind: 'job-token', jobId: check.claims.jobId, scopes: check.claims.scopes });
    await next();
  };

  return async (c, next) => {
    const { credential, fromQuery } = credentialOf(c);
    if (credential && isJobToken(credential)) return withJobToken(c, credential, next);
    if (credential && fromQuery) {
      return unauthorized(c, 'Only a job token may be sent as "?access_token=". Send an API key as "Authorization: Bearer <key>": a URL ends up in logs and browser history.');
    }
    if (auth.mode === 'none') {
      c.set('tenant', auth.tenant);
      c.set('caller', { kind: 'key', role: 'admin' });
      return next();
    }
    if (!credential) return unauthorized(c, 'Send an API key as "Authorization: Bearer <key>". Create one with "waitless keys create".');
    const now = Date.now();
    const cached = cache.get(credential);
    let owner = cached && cached.until > now ? cached : undefined;
    if (!owner) {
      // Requests arriving together with the same key share one lookup.
      let lookup = verifying.get(credential);
      if (!lookup) {
        lookup = auth.keys.verify(credential).finally(() => verifying.delete(credential));
        verifying.set(credential, lookup);
      }
      const seen = revocations;
      const verified = await lookup;
      if (!verified) return unauthorized(c, 'The API key is unknown or revoked.');
      owner = { ...verified, until: now + cacheMs };
      if (seen === revocations) {
        if (cache.size > 10_000) cache.clear();
        cache.set(credential, owner);
      }
    }
    c.set('tenant', owner.tenant);
    c.set('caller', { kind: 'key', role: owner.role, keyId: owner.id, ...(owner.maxPriority !== undefined ? { maxPriority: owner.maxPriority } : {}) });
    await next();
  };
}

/** Answers 403 unless the caller holds an admin key (or the server runs without keys). */
export function requireAdmin(c: Context<AuthEnv>, action: string): Response | undefined {
  const caller = c.get('caller');
  if (caller.kind === 'key' && caller.role === 'admin') return undefined;
  return problem(c, 403, {
    type: '/problems/forbidden',
    title: 'Forbidden',
    detail: `Only an admin key may ${action}. Create one with "waitless keys create --tenant <tenant> --admin".`,
  });
}

/**
 * For a stream opened with a job token: `endWhen` of the event stream. It ends the stream
 * when the token stops being valid — at its expiry, at the end of its secret's overlap, or at
 * once when a rotation (here or in another process) invalidates it — as any new request with
 * it would then be refused. Undefined for other callers.
 */
export function whileJobTokenValid(c: Context<AuthEnv>, jobTokens: JobTokens): ((end: () => void) => () => void) | undefined {
  const { credential } = credentialOf(c);
  if (c.get('caller').kind !== 'job-token' || !credential) return undefined;
  return (end) => {
    let timer: NodeJS.Timeout | undefined;
    const check = () =>
      void jobTokens.verify(credential).then(
        (verdict) => {
          clearTimeout(timer);
          if (!verdict.ok) return end();
          // setTimeout's longest wait is about 24.8 days; a token lives 24 h at most.
          timer = setTimeout(check, Math.max(0, verdict.validUntil - Date.now()));
        },
        () => {}, // The database is away: the token stays trusted until the next rotation or its expiry check.
      );
    check();
    const unsubscribe = jobTokens.onRotated(check);
    return () => {
      clearTimeout(timer);
      unsubscribe();
    };
  };
}
