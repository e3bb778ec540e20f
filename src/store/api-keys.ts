import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { InvalidOptionError, PriorityAboveCapError } from '../errors.ts';
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
  /** The highest priority the key may give a job; absent: any. */
  maxPriority?: number;
}

/** Who a verified key belongs to. */
export interface ApiKeyOwner {
  /** The key's id (the `<id>` of `wl_<id>_<secret>`). */
  id: string;
  tenant: string;
  role: ApiKeyRole;
  /** The highest priority the key may give a job; absent: any. */
  maxPriority?: number;
}

export interface CreateApiKeyOptions {
  /** A note for people (`keys list` shows it). Default: none. */
  label?: string;
  /** Create an admin key. Default: `false` (a service key). */
  admin?: boolean;
  /**
   * The highest priority the key may give a job (an integer from -1000 to 1000): a submit
   * asking for more is refused with a `PriorityAboveCapError` (HTTP 403), and a submit that
   * asks for none gets this cap when it is below the default 0. Admin keys are capped the same
   * way when given one. Default: none (the whole range).
   */
  maxPriority?: number;
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
    const { maxPriority } = options;
    if (maxPriority !== undefined && !(Number.isInteger(maxPriority) && maxPriority >= -1000 && maxPriority <= 1000)) {
      throw new InvalidOptionError(`maxPriority must be a whole number from -1000 to 1000, got ${String(maxPriority)}.`);
    }
    await this.driver.query(q.insertApiKey(id, tenant, hash(secret), options.label ?? null, role, maxPriority ?? null));
    return { id, tenant, role, token: `wl_${id}_${secret}`, ...(maxPriority !== undefined ? { maxPriority } : {}) };
  }

  /** Who a bearer token belongs to, or undefined when it is unknown, malformed or revoked. */
  async verify(token: string): Promise<ApiKeyOwner | undefined> {
    const match = /^wl_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/.exec(token);
    if (!match) return undefined;
    const [row] = await this.driver.query<{ tenant_id: string; secret_hash: string; role: ApiKeyRole; max_priority: number | null }>(q.findApiKey(match[1]!));
    if (!row) return undefined;
    const expected = Buffer.from(row.secret_hash, 'hex');
    const actual = Buffer.from(hash(match[2]!), 'hex');
    if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) return undefined;
    return { id: match[1]!, tenant: row.tenant_id, role: row.role, ...(row.max_priority !== null ? { maxPriority: row.max_priority } : {}) };
  }

  async revoke(id: string): Promise<boolean> {
    return (await this.driver.query(q.revokeApiKey(id))).length > 0;
  }

  async list(): Promise<Array<{ id: string; tenant: string; role: ApiKeyRole; label: string | null; maxPriority?: number; createdAt: string; revokedAt?: string }>> {
    const rows = await this.driver.query<{ id: string; tenant_id: string; role: ApiKeyRole; label: string | null; max_priority: number | null; created_at: Date; revoked_at: Date | null }>(
      q.listApiKeys(),
    );
    return rows.map((r) => ({
      id: r.id,
      tenant: r.tenant_id,
      role: r.role,
      label: r.label,
      ...(r.max_priority !== null ? { maxPriority: r.max_priority } : {}),
      createdAt: r.created_at.toISOString(),
      ...(r.revoked_at ? { revokedAt: r.revoked_at.toISOString() } : {}),
    }));
  }
}

/**
 * The priority a submit gets under a key's cap (see {@link CreateApiKeyOptions.maxPriority}):
 * the one asked for, refused with a {@link PriorityAboveCapError} above the cap; none asked
 * for, the default 0 or the cap when that is lower. Undefined: the engine's default.
 */
export function cappedPriority(requested: number | undefined, maxPriority: number | undefined): number | undefined {
  if (maxPriority === undefined) return requested;
  if (requested === undefined) return maxPriority < 0 ? maxPriority : undefined;
  if (requested > maxPriority) throw new PriorityAboveCapError(requested, maxPriority);
  return requested;
}
