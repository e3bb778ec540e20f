import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Driver } from '../store/driver.ts';
import * as q from '../store/queries.ts';

/** What a job token lets its bearer do, always on its one job: `read` (status, events), `cancel`. */
export type JobTokenScope = 'read' | 'cancel';

/** The claims a job token carries. */
export interface JobTokenClaims {
  tenant: string;
  jobId: string;
  scopes: JobTokenScope[];
  /** Expiry, unix seconds. */
  expiresAt: number;
}

/** A freshly minted token. */
export interface MintedJobToken {
  token: string;
  /** ISO 8601. */
  expiresAt: string;
}

/** A token's verdict; `validUntil` (ms since the epoch) is its expiry, or sooner the end of its secret's overlap. */
export type JobTokenCheck = { ok: true; claims: JobTokenClaims; validUntil: number } | { ok: false; reason: 'invalid' | 'expired' };

const PREFIX = 'wlt_';
/** The name of the signing secret in `server_secrets`, and of the notification that it was rotated. */
export const JOB_TOKEN_SECRET = 'job-tokens';
/** The secret it replaced, still accepted until its `until`. */
const PREVIOUS_SECRET = 'job-tokens:previous';
/**
 * The longest the secrets are trusted without being read again. A rotation is heard at once
 * through a notification; this bounds how long a process that missed it (its LISTEN connection
 * was down) still accepts tokens a rotation with overlap 0 ended. Two reads per period.
 */
const SECRETS_MAX_AGE_MS = 10_000;

/** The keys tokens are checked against: the current one signs; the previous one, if any, still verifies until `until`. */
interface SigningKeys {
  current: Buffer;
  previous?: { key: Buffer; until: number };
}

/** True when a bearer credential is a job token rather than an API key. */
export const isJobToken = (credential: string): boolean => credential.startsWith(PREFIX);

/**
 * Short-lived bearer tokens scoped to one job, for browsers: a page streams its own job without
 * ever holding a key. Stateless (an HMAC over the claims), so verifying costs no query; the
 * signing secret lives in the database, created by whichever process needs it first, so every
 * API process on that database accepts every other's tokens. {@link rotate} replaces it; every
 * process hears of it (a notification) and reads the secrets again ({@link forget}); a process
 * that missed the notification reads them again within 10 s anyway.
 */
export class JobTokens {
  private readonly driver: Driver;
  private secret: Promise<SigningKeys> | undefined;
  /** When {@link secret} was read (ms since the epoch). */
  private readAt = 0;
  private readonly rotated = new Set<() => void>();

  constructor(driver: Driver) {
    this.driver = driver;
  }

  async mint(claims: JobTokenClaims): Promise<MintedJobToken> {
    const payload = Buffer.from(JSON.stringify({ v: 1, t: claims.tenant, j: claims.jobId, s: claims.scopes, e: claims.expiresAt })).toString('base64url');
    const signature = createHmac('sha256', (await this.keys()).current).update(payload).digest('base64url');
    return { token: `${PREFIX}${payload}.${signature}`, expiresAt: new Date(claims.expiresAt * 1000).toISOString() };
  }

  async verify(token: string, now = Date.now()): Promise<JobTokenCheck> {
    const match = /^wlt_([A-Za-z0-9_-]{1,2048})\.([A-Za-z0-9_-]{43})$/.exec(token);
    if (!match) return { ok: false, reason: 'invalid' };
    const keys = await this.keys(now);
    const actual = Buffer.from(match[2]!, 'base64url');
    const signedWith = (key: Buffer) => {
      const expected = createHmac('sha256', key).update(match[1]!).digest();
      return actual.length === expected.length && timingSafeEqual(actual, expected);
    };
    const previous = keys.previous && keys.previous.until > now ? keys.previous : undefined;
    const current = signedWith(keys.current);
    if (!current && !(previous && signedWith(previous.key))) return { ok: false, reason: 'invalid' };
    const raw = JSON.parse(Buffer.from(match[1]!, 'base64url').toString('utf8')) as { t: string; j: string; s: JobTokenScope[]; e: number };
    if (raw.e * 1000 <= now) return { ok: false, reason: 'expired' };
    const validUntil = current ? raw.e * 1000 : Math.min(raw.e * 1000, previous!.until);
    return { ok: true, claims: { tenant: raw.t, jobId: raw.j, scopes: raw.s, expiresAt: raw.e }, validUntil };
  }

  /**
   * Replaces the signing secret. Tokens signed with the old one are still accepted for
   * `overlapMs` (the longest a token lives, 24 h, keeps every one valid until it expires);
   * `0` invalidates them all at once. Only the secret just replaced is kept: rotating again
   * within the overlap ends the one before.
   */
  async rotate(overlapMs: number): Promise<void> {
    await this.driver.query(q.rotateServerSecret(JOB_TOKEN_SECRET, PREVIOUS_SECRET, randomBytes(32).toString('base64url'), Math.round(overlapMs)));
    this.forget();
  }

  /** Drops the secrets read before: the next token minted or checked reads them again. */
  forget(): void {
    this.secret = undefined;
    for (const listener of this.rotated) listener();
  }

  /** Calls `listener` whenever the secrets may have changed (a rotation here or in another process). */
  onRotated(listener: () => void): () => void {
    this.rotated.add(listener);
    return () => this.rotated.delete(listener);
  }

  private keys(now = Date.now()): Promise<SigningKeys> {
    if (this.secret && now - this.readAt > SECRETS_MAX_AGE_MS) this.secret = undefined;
    if (!this.secret) this.readAt = now;
    this.secret ??= (async () => {
      await this.driver.query(q.insertServerSecret(JOB_TOKEN_SECRET, randomBytes(32).toString('base64url')));
      const [row] = await this.driver.query<{ secret: string }>(q.getServerSecret(JOB_TOKEN_SECRET));
      if (!row) throw new Error('The job-token secret could not be stored.');
      const [old] = await this.driver.query<{ secret: string }>(q.getServerSecret(PREVIOUS_SECRET));
      const kept = old ? (JSON.parse(old.secret) as { secret: string; until: number }) : undefined;
      return {
        current: Buffer.from(row.secret, 'base64url'),
        ...(kept ? { previous: { key: Buffer.from(kept.secret, 'base64url'), until: Number(kept.until) } } : {}),
      };
    })();
    // A failed read (database down) is retried by the next caller instead of being cached.
    void this.secret.catch(() => (this.secret = undefined));
    return this.secret;
  }
}
