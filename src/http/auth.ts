import type { MiddlewareHandler } from 'hono';
import type { ApiKeyStore } from '../store/api-keys.ts';
import { problem } from './problem.ts';

export type AuthMode =
  /** Every request acts as one tenant. Only for local development (`waitless dev`). */
  | { mode: 'none'; tenant: string }
  /** `Authorization: Bearer wl_…`; the key decides the tenant. */
  | { mode: 'api-key'; keys: ApiKeyStore; cacheMs?: number };

export type AuthEnv = { Variables: { tenant: string } };

/** Resolves the caller's tenant, or answers 401. Verified keys are cached briefly (default 10 s). */
export function authenticate(auth: AuthMode): MiddlewareHandler<AuthEnv> {
  if (auth.mode === 'none') {
    return async (c, next) => {
      c.set('tenant', auth.tenant);
      await next();
    };
  }
  const cacheMs = auth.cacheMs ?? 10_000;
  const cache = new Map<string, { tenant: string; until: number }>();
  return async (c, next) => {
    const header = c.req.header('authorization') ?? '';
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    const unauthorized = (detail: string) =>
      problem(c, 401, { type: '/problems/unauthorized', title: 'Unauthorized', detail }, { 'www-authenticate': 'Bearer realm="waitless"' });
    if (!match) return unauthorized('Send an API key as "Authorization: Bearer <key>". Create one with "waitless keys create".');
    const token = match[1]!;
    const now = Date.now();
    const cached = cache.get(token);
    let tenant = cached && cached.until > now ? cached.tenant : undefined;
    if (!tenant) {
      tenant = await auth.keys.verify(token);
      if (!tenant) return unauthorized('The API key is unknown or revoked.');
      if (cache.size > 10_000) cache.clear();
      cache.set(token, { tenant, until: now + cacheMs });
    }
    c.set('tenant', tenant);
    await next();
  };
}
