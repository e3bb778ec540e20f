/**
 * Standard Webhooks v1 verification, the receiver's side.
 *
 * Runtime-neutral on purpose: only WebCrypto (`globalThis.crypto.subtle`), `TextEncoder`,
 * `TextDecoder` and `atob`, no `node:` imports, so the same code verifies webhooks in Node,
 * Deno, Bun, Cloudflare Workers and other edge runtimes. (It would also run in a browser, but a
 * webhook secret must never be shipped to one.) The sender's side is `src/webhooks/signing.ts`.
 *
 * @see https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
 * @module
 */

/** Why {@link verifyWebhook} refused a message. */
export type WebhookVerificationErrorCode =
  /** `webhook-id`, `webhook-timestamp` or `webhook-signature` is absent or empty. */
  | 'missing_header'
  /** `webhook-timestamp` is not whole unix seconds. */
  | 'invalid_timestamp'
  /** Authentic, but older than the tolerance: a replay, a long-delayed retry, or a slow clock. */
  | 'timestamp_too_old'
  /** Authentic, but further ahead than the tolerance: a clock out of sync, or milliseconds sent as seconds. */
  | 'timestamp_in_future'
  /** No `v1` signature in the header matches any configured secret. */
  | 'invalid_signature'
  /** A configured secret is not `whsec_` + base64 of 24–64 bytes (a receiver configuration error). */
  | 'invalid_secret'
  /** The body is not a string or bytes, or the authentic body is not JSON. */
  | 'invalid_body';

/**
 * Thrown by {@link verifyWebhook}. `code` is stable and meant for branching and metrics; `message`
 * says exactly what is wrong and is safe to log (it never contains a secret).
 */
export class WebhookVerificationError extends Error {
  override name = 'WebhookVerificationError';
  /** Machine-readable reason; see {@link WebhookVerificationErrorCode}. */
  readonly code: WebhookVerificationErrorCode;
  constructor(code: WebhookVerificationErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** The parts of an incoming request that {@link verifyWebhook} needs. */
export interface WebhookRequest {
  /**
   * The request headers: a Fetch `Headers`, or a plain object such as Node's `req.headers`.
   * Names are matched case-insensitively.
   */
  headers: Headers | Record<string, string | string[] | undefined>;
  /**
   * The raw body exactly as received (`await request.text()`, or the bytes before any JSON
   * middleware). A body parsed and serialised again rarely has the same bytes, and then the
   * signature cannot match.
   */
  body: string | Uint8Array;
}

/** Options of {@link verifyWebhook}. */
export interface VerifyWebhookOptions {
  /**
   * How far `webhook-timestamp` may be from now, in seconds, in either direction (the past and
   * the future), to bound replays and tolerate clock skew.
   * @defaultValue 300 (the Standard Webhooks recommendation)
   */
  toleranceSeconds?: number;
  /**
   * The current time in milliseconds since the Unix epoch; for tests.
   * @defaultValue `Date.now`
   */
  now?: () => number;
}

/** A message whose signature and timestamp checked out. */
export interface VerifiedWebhook {
  /** `webhook-id`: the same on every retry of one message, so de-duplicate on it. */
  id: string;
  /** `webhook-timestamp`: when this attempt was sent. */
  timestamp: Date;
  /** The body, parsed as JSON. Untrusted in shape until you validate it (e.g. with zod). */
  payload: unknown;
}

/** The default of {@link VerifyWebhookOptions.toleranceSeconds}. */
export const DEFAULT_WEBHOOK_TOLERANCE_SECONDS = 300;

const SECRET_PREFIX = 'whsec_';
// These mirror src/webhooks/signing.ts, which cannot be imported from here: it uses node:crypto.
const SECRET_MIN_BYTES = 24;
const SECRET_MAX_BYTES = 64;
const HMAC_SHA256_BYTES = 32;
// Strict, padded standard base64. atob forgives missing padding and whitespace; a secret that
// needs forgiving has been mangled somewhere, and is better refused than turned into another key.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const UNIX_SECONDS = /^\d{1,15}$/;
// A timestamp this large is in milliseconds (year 5138 in seconds): worth saying so.
const LOOKS_LIKE_MILLISECONDS = 100_000_000_000;

const encoder = new TextEncoder();

// Spelled through globalThis rather than as the DOM's SubtleCrypto / CryptoKey: the same source
// then type-checks with the DOM lib, with @types/node, or with a worker runtime's types.
type Subtle = typeof globalThis.crypto.subtle;
type HmacKey = Awaited<ReturnType<Subtle['importKey']>>;

/**
 * The secret(s) to verify with: one `whsec_…` string, several, or the `secrets` list of
 * `GET /v1/webhooks/secret` as it is (`[{ secret, createdAt, expiresAt? }]`).
 */
export type WebhookSecrets = string | ReadonlyArray<string | { readonly secret: string }>;

/**
 * Verifies a Standard Webhooks v1 message and parses its JSON body.
 *
 * Checks, in this order, so that the error names the first thing wrong: the secrets, the three
 * headers, the timestamp's format, the signature (any `v1` signature in `webhook-signature`
 * against any secret, compared in constant time), the timestamp's age, and finally the JSON.
 * The signature is checked before the age so that `timestamp_too_old` / `timestamp_in_future`
 * only ever describe authentic messages.
 *
 * Verification does not de-duplicate: a sender retries until it sees a 2xx, so the same
 * `webhook-id` can arrive more than once. See {@link WebhookDeduplicator}.
 *
 * @param request - The headers and the raw body.
 * @param secrets - The endpoint's secret(s), `whsec_<base64>`. During key rotation pass the new
 *   and the old one (`[next, previous]`): a message signed with either is accepted. The
 *   `secrets` of `GET /v1/webhooks/secret` (objects with a `secret` member; the client's
 *   `webhookSecrets()`) are accepted as they are.
 * @param options - See {@link VerifyWebhookOptions}.
 * @returns The message id, its timestamp and its parsed body.
 * @throws {@link WebhookVerificationError} when the message must be refused (answer 400 or 401;
 *   never 2xx, or the sender stops retrying a message you did not process).
 * @throws Error when WebCrypto is unavailable (browsers offer it only on secure origins).
 */
export async function verifyWebhook(
  request: WebhookRequest,
  secrets: WebhookSecrets,
  options: VerifyWebhookOptions = {},
): Promise<VerifiedWebhook> {
  const tolerance = options.toleranceSeconds ?? DEFAULT_WEBHOOK_TOLERANCE_SECONDS;
  if (!Number.isFinite(tolerance) || tolerance < 0) {
    throw new RangeError(`toleranceSeconds must be a finite number ≥ 0; got ${String(tolerance)}.`);
  }
  const subtle = getSubtle();
  const keys = await importSecrets(subtle, secrets);

  const id = readHeader(request.headers, 'webhook-id');
  const timestampHeader = readHeader(request.headers, 'webhook-timestamp');
  const signatureHeader = readHeader(request.headers, 'webhook-signature');
  if (id === undefined || timestampHeader === undefined || signatureHeader === undefined) {
    const missing = [
      id === undefined && 'webhook-id',
      timestampHeader === undefined && 'webhook-timestamp',
      signatureHeader === undefined && 'webhook-signature',
    ].filter((name) => name !== false);
    throw new WebhookVerificationError(
      'missing_header',
      `The ${missing.join(' and ')} header${missing.length > 1 ? 's are' : ' is'} missing or empty; a Standard Webhooks message carries webhook-id, webhook-timestamp and webhook-signature.`,
    );
  }

  if (!UNIX_SECONDS.test(timestampHeader)) {
    throw new WebhookVerificationError(
      'invalid_timestamp',
      `webhook-timestamp must be whole seconds since the Unix epoch; got ${quote(timestampHeader)}.`,
    );
  }
  const timestamp = Number(timestampHeader);

  const body = toBytes(request.body);

  // Signed content, per the spec: `${id}.${timestamp}.${body}`, with the headers as received.
  const prefix = encoder.encode(`${id}.${timestampHeader}.`);
  const signed = new Uint8Array(prefix.length + body.length);
  signed.set(prefix, 0);
  signed.set(body, prefix.length);

  const candidates = parseSignatures(signatureHeader);
  if (candidates.length === 0) {
    throw new WebhookVerificationError(
      'invalid_signature',
      `webhook-signature holds no v1 signature (expected space-separated "v1,<base64 HMAC-SHA256>"); got ${quote(signatureHeader)}.`,
    );
  }
  let matched = false;
  for (const key of keys) {
    const expected = new Uint8Array(await subtle.sign('HMAC', key, signed));
    for (const candidate of candidates) {
      if (timingSafeEqual(expected, candidate)) matched = true;
    }
    if (matched) break;
  }
  if (!matched) {
    throw new WebhookVerificationError(
      'invalid_signature',
      `None of the ${candidates.length} v1 signature(s) in webhook-signature matches the ${keys.length} configured secret(s): ` +
        'the body was altered (or parsed and re-serialised before verification), or the secret is not this endpoint\'s.',
    );
  }

  const nowSeconds = Math.floor((options.now ?? Date.now)() / 1000);
  const age = nowSeconds - timestamp;
  if (age > tolerance) {
    throw new WebhookVerificationError(
      'timestamp_too_old',
      `webhook-timestamp is ${age} s old; at most ${tolerance} s is accepted.`,
    );
  }
  if (-age > tolerance) {
    const hint = timestamp >= LOOKS_LIKE_MILLISECONDS ? ' (it looks like milliseconds; the header is in seconds)' : '';
    throw new WebhookVerificationError(
      'timestamp_in_future',
      `webhook-timestamp is ${-age} s in the future; at most ${tolerance} s is accepted${hint}.`,
    );
  }

  let payload: unknown;
  try {
    // fatal: bytes that are not UTF-8 are refused rather than decoded into U+FFFD.
    payload = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch (error) {
    throw new WebhookVerificationError(
      'invalid_body',
      `The signature is valid but the body is not JSON: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  return { id, timestamp: new Date(timestamp * 1000), payload };
}

function getSubtle(): Subtle {
  const subtle = (globalThis.crypto as typeof globalThis.crypto | undefined)?.subtle;
  if (subtle === undefined) {
    throw new Error(
      'verifyWebhook needs WebCrypto (globalThis.crypto.subtle), which this runtime does not provide; browsers offer it only on https:// or localhost pages.',
    );
  }
  return subtle;
}

async function importSecrets(subtle: Subtle, secrets: WebhookSecrets): Promise<HmacKey[]> {
  const given: readonly unknown[] = typeof secrets === 'string' ? [secrets] : Array.isArray(secrets) ? secrets : [];
  // The API lists secrets as `{ secret, createdAt, expiresAt? }`: take the secret of each.
  const list = given.map((entry) => (entry !== null && typeof entry === 'object' && 'secret' in entry ? (entry).secret : entry));
  if (list.length === 0) {
    throw new WebhookVerificationError('invalid_secret', 'No webhook secret is configured; pass the endpoint\'s whsec_… secret.');
  }
  return Promise.all(
    list.map((secret, index) => {
      const which = list.length > 1 ? `Webhook secret #${index + 1} of ${list.length}` : 'The webhook secret';
      if (typeof secret !== 'string' || !secret.startsWith(SECRET_PREFIX)) {
        throw new WebhookVerificationError(
          'invalid_secret',
          `${which} does not start with "${SECRET_PREFIX}"; Standard Webhooks secrets are "${SECRET_PREFIX}" followed by base64.`,
        );
      }
      const encoded = secret.slice(SECRET_PREFIX.length);
      if (!BASE64.test(encoded)) {
        throw new WebhookVerificationError(
          'invalid_secret',
          `${which}: the part after "${SECRET_PREFIX}" is not standard, padded base64 (A–Z, a–z, 0–9, +, /, =).`,
        );
      }
      const key = fromBase64(encoded);
      if (key.length < SECRET_MIN_BYTES || key.length > SECRET_MAX_BYTES) {
        throw new WebhookVerificationError(
          'invalid_secret',
          `${which} holds ${key.length} bytes; Standard Webhooks secrets hold ${SECRET_MIN_BYTES}–${SECRET_MAX_BYTES}.`,
        );
      }
      return subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    }),
  );
}

function readHeader(headers: WebhookRequest['headers'], name: string): string | undefined {
  let value: string | undefined;
  if (typeof (headers as { get?: unknown }).get === 'function') {
    value = (headers as Headers).get(name) ?? undefined;
  } else {
    // A plain object may hold the same header under several spellings, or as an array when it
    // was repeated: join them the way Fetch `Headers` does, so both shapes behave alike.
    const values: string[] = [];
    for (const [key, entry] of Object.entries(headers as Record<string, string | string[] | undefined>)) {
      if (key.toLowerCase() !== name || entry === undefined) continue;
      if (Array.isArray(entry)) values.push(...entry);
      else values.push(entry);
    }
    if (values.length > 0) value = values.join(', ');
  }
  const trimmed = value?.trim();
  return trimmed === undefined || trimmed === '' ? undefined : trimmed;
}

function toBytes(body: unknown): Uint8Array {
  if (typeof body === 'string') return encoder.encode(body);
  // The tag check, not instanceof, so a Buffer or bytes from another realm are accepted too.
  if (Object.prototype.toString.call(body) === '[object Uint8Array]') return body as Uint8Array;
  throw new WebhookVerificationError(
    'invalid_body',
    `The body must be the raw request body as a string or Uint8Array; got ${body === null ? 'null' : typeof body}. ` +
      'Read it before any JSON body parser runs (e.g. `await request.text()`).',
  );
}

/** The decoded `v1` signatures of the header; other versions and malformed entries are skipped. */
function parseSignatures(header: string): Uint8Array[] {
  const signatures: Uint8Array[] = [];
  for (let token of header.split(/\s+/)) {
    // A proxy that merged repeated headers leaves a trailing comma; base64 never ends with one.
    if (token.endsWith(',')) token = token.slice(0, -1);
    const comma = token.indexOf(',');
    if (comma === -1 || token.slice(0, comma) !== 'v1') continue;
    const encoded = token.slice(comma + 1);
    if (!BASE64.test(encoded)) continue;
    const bytes = fromBase64(encoded);
    if (bytes.length === HMAC_SHA256_BYTES) signatures.push(bytes);
  }
  return signatures;
}

/** Compares in time that depends only on the length (public: always 32 here), not on where bytes differ. */
function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a[i]! ^ b[i]!;
  return difference === 0;
}

function fromBase64(encoded: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(atob(encoded), (char) => char.charCodeAt(0));
}

/** Quotes an attacker-controlled value for an error message, cut short so it cannot flood logs. */
function quote(value: string): string {
  return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
}

/** Options of {@link WebhookDeduplicator}. */
export interface WebhookDeduplicatorOptions {
  /**
   * How long an id is remembered after it was last seen, in milliseconds. Every sighting starts
   * it again, so it only has to outlast the longest gap between two deliveries of one message
   * (10 hours in the Svix retry schedule Waitless follows), not the whole ~28-hour schedule.
   * @defaultValue 86_400_000 (24 hours)
   */
  ttlMs?: number;
  /**
   * The most ids remembered at once; past it the oldest is forgotten first, which bounds memory
   * under a flood of distinct ids at the price of letting a very old duplicate through.
   * @defaultValue 100_000
   */
  maxEntries?: number;
  /**
   * The current time in milliseconds since the Unix epoch; for tests.
   * @defaultValue `Date.now`
   */
  now?: () => number;
}

/**
 * Remembers recently seen `webhook-id`s in memory, so a retried delivery of a message already
 * processed can be acknowledged without processing it again.
 *
 * Best effort only: it forgets on restart, is not shared between processes, and drops the oldest
 * ids when full. Durable de-duplication belongs in the receiver's database, in the same
 * transaction that applies the message (a unique key on the webhook id or, better, an apply that
 * is idempotent in itself); the Waitless reconciler does exactly that. Use this in front of
 * it as a cheap filter, or alone where a rare duplicate is harmless.
 *
 * Call {@link WebhookDeduplicator.seen} only after {@link verifyWebhook} succeeded (unverified
 * ids must not be able to fill it), and {@link WebhookDeduplicator.forget} when processing then
 * fails, so the sender's retry is processed instead of skipped.
 *
 * @example
 * ```ts
 * const dedupe = new WebhookDeduplicator();
 * const message = await verifyWebhook({ headers: req.headers, body: rawBody }, secrets);
 * if (dedupe.seen(message.id)) return new Response(null, { status: 204 });
 * try { await apply(message.payload); } catch (error) { dedupe.forget(message.id); throw error; }
 * ```
 */
export class WebhookDeduplicator {
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;
  // id → expiry (ms). A Map iterates in insertion order, and every entry gets the same TTL, so
  // the first entries are always the first to expire: pruning stops at the first live one.
  readonly #expiries = new Map<string, number>();

  /** @param options - See {@link WebhookDeduplicatorOptions}. */
  constructor(options: WebhookDeduplicatorOptions = {}) {
    const ttlMs = options.ttlMs ?? 24 * 60 * 60 * 1000;
    const maxEntries = options.maxEntries ?? 100_000;
    if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new RangeError(`ttlMs must be a positive number of milliseconds; got ${String(ttlMs)}.`);
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError(`maxEntries must be a positive integer; got ${String(maxEntries)}.`);
    }
    this.#ttlMs = ttlMs;
    this.#maxEntries = maxEntries;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Whether this id was seen within the TTL. Either way it is recorded (again) from now, so the
   * next call with the same id answers `true`.
   *
   * @returns `true` for a duplicate (acknowledge it, do not process it), `false` the first time.
   */
  seen(id: string): boolean {
    const now = this.#now();
    for (const [key, expiry] of this.#expiries) {
      if (expiry > now) break;
      this.#expiries.delete(key);
    }
    const expiry = this.#expiries.get(id);
    const duplicate = expiry !== undefined && expiry > now;
    // Delete before set: re-inserting moves the id to the end, keeping the Map in expiry order.
    this.#expiries.delete(id);
    this.#expiries.set(id, now + this.#ttlMs);
    if (this.#expiries.size > this.#maxEntries) {
      const oldest = this.#expiries.keys().next();
      if (oldest.done !== true) this.#expiries.delete(oldest.value);
    }
    return duplicate;
  }

  /** Forgets an id, so its next delivery is processed: call it when processing that message failed. */
  forget(id: string): void {
    this.#expiries.delete(id);
  }
}
