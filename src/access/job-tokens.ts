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

export type JobTokenCheck = { ok: true; claims: JobTokenClaims } | { ok: false; reason: 'invalid' | 'expired' };

const PREFIX = 'wlt_';
const SECRET_NAME = 'job-tokens';

/** True when a bearer credential is a job token rather than an API key. */
export const isJobToken = (credential: string): boolean => credential.startsWith(PREFIX);

/**
 * Short-lived bearer tokens scoped to one job, for browsers: a page streams its own job without
 * ever holding a key. Stateless (an HMAC over the claims), so verifying costs no query; the
 * signing secret lives in the database, created by whichever process needs it first, so every
 * API process on that database accepts every other's tokens.
 */
export class JobTokens {
  private readonly driver: Driver;
  private secret: Promise<Buffer> | undefined;

  constructor(driver: Driver) {
    this.driver = driver;
  }

  async mint(claims: JobTokenClaims): Promise<MintedJobToken> {
    const payload = Buffer.from(JSON.stringify({ v: 1, t: claims.tenant, j: claims.jobId, s: claims.scopes, e: claims.expiresAt })).toString('base64url');
    const signature = createHmac('sha256', await this.key()).update(payload).digest('base64url');
    return { token: `${PREFIX}${payload}.${signature}`, expiresAt: new Date(claims.expiresAt * 1000).toISOString() };
  }

  async verify(token: string, now = Date.now()): Promise<JobTokenCheck> {
    const match = /^wlt_([A-Za-z0-9_-]{1,2048})\.([A-Za-z0-9_-]{43})$/.exec(token);
    if (!match) return { ok: false, reason: 'invalid' };
    const expected = createHmac('sha256', await this.key()).update(match[1]!).digest();
    const actual = Buffer.from(match[2]!, 'base64url');
    if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) return { ok: false, reason: 'invalid' };
    const raw = JSON.parse(Buffer.from(match[1]!, 'base64url').toString('utf8')) as { t: string; j: string; s: JobTokenScope[]; e: number };
    if (raw.e * 1000 <= now) return { ok: false, reason: 'expired' };
    return { ok: true, claims: { tenant: raw.t, jobId: raw.j, scopes: raw.s, expiresAt: raw.e } };
  }

  private key(): Promise<Buffer> {
    this.secret ??= (async () => {
      await this.driver.query(q.insertServerSecret(SECRET_NAME, randomBytes(32).toString('base64url')));
      const [row] = await this.driver.query<{ secret: string }>(q.getServerSecret(SECRET_NAME));
      if (!row) throw new Error('The job-token secret could not be stored.');
      return Buffer.from(row.secret, 'base64url');
    })();
    // A failed read (database down) is retried by the next caller instead of being cached.
    void this.secret.catch(() => (this.secret = undefined));
    return this.secret;
  }
}
