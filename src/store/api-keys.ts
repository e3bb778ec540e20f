import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Driver } from './driver.ts';
import * as q from './queries.ts';

/**
 * What a key may do. `service` keys submit and read their tenant's jobs and manage its
 * webhooks; `admin` keys may also recover jobs and open the dashboard of `waitless serve`.
 */
export type ApiKeyRole = 'service' | 'admin';

/** A freshly created key. `token` is shown once and never stored. */
export interface CreatedApiKey {
  id: string;
  tenant: string;
  role: ApiKeyRole;
  token: string;
}

/** Who a verified key belongs to. */
export interface ApiKeyOwner {
  tenant: string;
  role: ApiKeyRole;
}

export interface CreateApiKeyOptions {
  /** A note for people (`keys list` shows it). Default: none. */
  label?: string;
  /** Create an admin key. Default: `false` (a service key). */
  admin?: boolean;
}

const hash = (secret: string) => createHash('sha256').update(secret).digest('hex');

/**
 * API keys look like `wl_<id>_<secret>`. Only a SHA-256 of the secret is stored: the secret is
 * 32 random bytes, so a slow password hash would add nothing but latency to every request.
 */
export class ApiKeyStore {
  private readonly driver: Driver;
  constructor(driver: Driver) {
    this.driver = driver;
  }

  async create(tenant: string, options: CreateApiKeyOptions = {}): Promise<CreatedApiKey> {
    if (!/^[A-Za-z0-9._-]{1,100}$/.test(tenant)) throw new TypeError(`Invalid tenant "${tenant}": use letters, digits, ".", "_" and "-".`);
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const role: ApiKeyRole = options.admin ? 'admin' : 'service';
    await this.driver.query(q.insertApiKey(id, tenant, hash(secret), options.label ?? null, role));
    return { id, tenant, role, token: `wl_${id}_${secret}` };
  }

  /** Who a bearer token belongs to, or undefined when it is unknown, malformed or revoked. */
  async verify(token: string): Promise<ApiKeyOwner | undefined> {
    const match = /^wl_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/.exec(token);
    if (!match) return undefined;
    const [row] = await this.driver.query<{ tenant_id: string; secret_hash: string; role: ApiKeyRole }>(q.findApiKey(match[1]!));
    if (!row) return undefined;
    const expected = Buffer.from(row.secret_hash, 'hex');
    const actual = Buffer.from(hash(match[2]!), 'hex');
    return expected.length === actual.length && timingSafeEqual(expected, actual) ? { tenant: row.tenant_id, role: row.role } : undefined;
  }

  async revoke(id: string): Promise<boolean> {
    return (await this.driver.query(q.revokeApiKey(id))).length > 0;
  }

  async list(): Promise<Array<{ id: string; tenant: string; role: ApiKeyRole; label: string | null; createdAt: string; revokedAt?: string }>> {
    const rows = await this.driver.query<{ id: string; tenant_id: string; role: ApiKeyRole; label: string | null; created_at: Date; revoked_at: Date | null }>(q.listApiKeys());
    return rows.map((r) => ({
      id: r.id,
      tenant: r.tenant_id,
      role: r.role,
      label: r.label,
      createdAt: r.created_at.toISOString(),
      ...(r.revoked_at ? { revokedAt: r.revoked_at.toISOString() } : {}),
    }));
  }
}
