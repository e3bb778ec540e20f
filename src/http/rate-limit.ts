/**
 * Per-tenant limits of one HTTP process: submits per second (a token bucket per tenant) and
 * event streams open at once (per API key). Both are kept in this process's memory, so they
 * cost a submit no database round trip: N processes behind a load balancer admit up to N times
 * the rate, and N times the streams (set the options to the share of one process).
 */
import { TenantLimitError } from '../errors.ts';

/** The per-tenant limits of the HTTP API (per process). */
export interface TenantLimits {
  /**
   * Submits per second one tenant may make through this process (`POST /v1/jobs/:name`),
   * refilled continuously; past it a submit is answered `429` with `Retry-After`. `0` turns the
   * limit off. Default: `1000`.
   */
  submitsPerSecond?: number;
  /** Submits a tenant may make at once before the rate applies (the bucket's size). Default: `2 × submitsPerSecond`. */
  submitBurst?: number;
  /**
   * Event streams (`GET /v1/events`, `GET /v1/jobs/:id/events`) one API key may hold open at
   * once in this process (a job token's streams count per job); past it a stream is answered
   * `429`. A stream's slot is freed when it ends, whether the job finished or the client left.
   * `0` turns the limit off. Default: `1000`.
   */
  streamsPerKey?: number;
}

/** Above this many tenants, buckets that have filled up again are forgotten (a full bucket is the same as none). */
const SWEEP_AT = 10_000;

/** One token bucket per key: `rate` tokens a second, at most `burst` saved up. */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly rate: number;
  private readonly burst: number;
  private readonly now: () => number;
  /** When the last sweep ran: one a refill period at most, so a stream of new tenants is not an O(n) walk each. */
  private sweptAt = -Infinity;

  constructor(rate: number, burst: number, now: () => number = performance.now.bind(performance)) {
    this.rate = rate;
    this.burst = burst;
    this.now = now;
  }

  /** Takes a token for `key`: 0 when it had one, else how many ms until it will. */
  take(key: string): number {
    const now = this.now();
    const bucket = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.rate);
    bucket.at = now;
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      if (!this.buckets.has(key) && this.buckets.size >= SWEEP_AT && now - this.sweptAt >= Math.max(1000, (this.burst / this.rate) * 1000)) {
        this.sweptAt = now;
        this.sweep(now);
      }
      this.buckets.set(key, bucket);
      return 0;
    }
    this.buckets.set(key, bucket);
    return Math.ceil(((1 - bucket.tokens) / this.rate) * 1000);
  }

  private sweep(now: number): void {
    for (const [key, bucket] of this.buckets) {
      if (bucket.tokens + ((now - bucket.at) / 1000) * this.rate >= this.burst) this.buckets.delete(key);
    }
  }
}

/** Counts what is open per key, up to a limit. */
export class Slots {
  private readonly open = new Map<string, number>();
  private readonly limit: number;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** Takes a slot for `key`: a release function (safe to call more than once), or undefined when all are taken. */
  acquire(key: string): (() => void) | undefined {
    const count = this.open.get(key) ?? 0;
    if (count >= this.limit) return undefined;
    this.open.set(key, count + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(key) ?? 1) - 1;
      if (left > 0) this.open.set(key, left);
      else this.open.delete(key);
    };
  }

  /** Slots held for `key`. */
  count(key: string): number {
    return this.open.get(key) ?? 0;
  }
}

/** The checks the HTTP API makes, built from {@link TenantLimits}. */
export interface TenantGuards {
  /** Throws a `rate_limited` {@link TenantLimitError} when the tenant is over its submit rate. */
  submit(tenant: string): void;
  /** A release function for a new stream, or throws a `too_many_streams` {@link TenantLimitError}. */
  stream(key: string): () => void;
}

function checkedLimit(value: number | undefined, fallback: number, name: string): number {
  const limit = value ?? fallback;
  if (!(Number.isFinite(limit) && limit >= 0)) throw new TypeError(`tenantLimits.${name} must be a number ≥ 0 (0: no limit), got ${String(value)}.`);
  return limit;
}

export function tenantGuards(limits: TenantLimits = {}): TenantGuards {
  const rate = checkedLimit(limits.submitsPerSecond, 1000, 'submitsPerSecond');
  const burst = checkedLimit(limits.submitBurst, Math.max(1, 2 * rate), 'submitBurst');
  const streams = checkedLimit(limits.streamsPerKey, 1000, 'streamsPerKey');
  const buckets = rate > 0 ? new TokenBuckets(rate, Math.max(1, burst)) : undefined;
  const slots = streams > 0 ? new Slots(streams) : undefined;
  return {
    submit(tenant) {
      const waitMs = buckets?.take(tenant) ?? 0;
      if (waitMs > 0) {
        throw new TenantLimitError(
          'rate_limited',
          `Tenant "${tenant}" is over its limit of ${rate} submits per second (a burst of ${Math.max(1, burst)}). Try again after the Retry-After delay.`,
          rate,
          waitMs,
        );
      }
    },
    stream(key) {
      if (!slots) return () => {};
      const release = slots.acquire(key);
      if (!release) {
        throw new TenantLimitError(
          'too_many_streams',
          `This key already holds ${streams} open event streams, its limit. Close one (or follow several jobs with GET /v1/events) and try again.`,
          streams,
        );
      }
      return release;
    },
  };
}
