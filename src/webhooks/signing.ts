/**
 * Standard Webhooks v1 signing, the sender's side (Node only).
 *
 * A message is signed with HMAC-SHA256 over `${id}.${timestamp}.${body}` and carried in three
 * headers: `webhook-id`, `webhook-timestamp` (unix seconds) and `webhook-signature`
 * (space-separated `v1,<base64>`, one per secret). The receiver's side is
 * `src/client/verify.ts`, which runs in browsers and edge runtimes too.
 *
 * @see https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
 * @module
 */
import { createHmac, randomBytes } from 'node:crypto';

/** The prefix that marks a Standard Webhooks secret. */
export const WEBHOOK_SECRET_PREFIX = 'whsec_';

/** Fewest key bytes the spec allows in a secret (192 bits). */
export const WEBHOOK_SECRET_MIN_BYTES = 24;

/** Most key bytes the spec allows in a secret (512 bits, one SHA-256 block). */
export const WEBHOOK_SECRET_MAX_BYTES = 64;

/** How many random bytes {@link generateWebhookSecret} draws: 256 bits, the HMAC-SHA256 output size. */
const GENERATED_SECRET_BYTES = 32;

// Strict standard base64 (RFC 4648 §4, padded). Buffer.from(…, 'base64') silently skips any
// character it does not know, so a mangled secret (a stray quote, a URL-safe alphabet) would
// otherwise become a *different* key and every signature would quietly fail to verify.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Creates a new webhook signing secret: `whsec_` followed by the base64 of 32 random bytes from
 * the operating system's CSPRNG.
 *
 * @returns `whsec_` and 44 base64 characters; store it like a password.
 */
export function generateWebhookSecret(): string {
  return WEBHOOK_SECRET_PREFIX + randomBytes(GENERATED_SECRET_BYTES).toString('base64');
}

/**
 * Decodes a `whsec_<base64>` secret into its key bytes.
 *
 * Only the prefixed form is accepted: a bare base64 string is more likely a key pasted into the
 * wrong setting than a secret, and being strict here keeps the sender and every receiver reading
 * the same setting the same way. Error messages never contain the secret itself.
 *
 * @param secret - `whsec_` followed by standard, padded base64 of 24–64 bytes.
 * @returns The raw HMAC key.
 * @throws TypeError when the secret is not in that form, or decodes to fewer than 24 or more
 *   than 64 bytes.
 */
export function parseSecret(secret: string): Buffer {
  if (typeof secret !== 'string' || !secret.startsWith(WEBHOOK_SECRET_PREFIX)) {
    throw new TypeError(
      `A webhook secret must start with "${WEBHOOK_SECRET_PREFIX}" followed by base64 (Standard Webhooks); ` +
        'this one does not. Create one with generateWebhookSecret().',
    );
  }
  const encoded = secret.slice(WEBHOOK_SECRET_PREFIX.length);
  if (!BASE64.test(encoded)) {
    throw new TypeError(
      `A webhook secret's part after "${WEBHOOK_SECRET_PREFIX}" must be standard, padded base64 (A–Z, a–z, 0–9, +, /, =); this one is not.`,
    );
  }
  const key = Buffer.from(encoded, 'base64');
  if (key.length < WEBHOOK_SECRET_MIN_BYTES || key.length > WEBHOOK_SECRET_MAX_BYTES) {
    throw new TypeError(
      `A webhook secret must hold ${WEBHOOK_SECRET_MIN_BYTES}–${WEBHOOK_SECRET_MAX_BYTES} bytes; this one holds ${key.length}.`,
    );
  }
  return key;
}

/** What {@link signWebhook} signs. */
export interface SignWebhookInput {
  /**
   * The message id, the same on every retry of the same message: receivers de-duplicate on it.
   * Must be non-empty, printable, and without spaces or commas.
   */
  id: string;
  /** When the message is sent (each attempt gets a fresh one): a `Date`, or whole unix seconds. */
  timestamp: Date | number;
  /** The exact request body that will be sent; one changed byte and the signature no longer verifies. */
  body: string;
  /**
   * The endpoint's secrets (`whsec_…`), one signature each. During key rotation pass the new and
   * the old side by side, so receivers still configured with either one accept the message.
   */
  secrets: readonly string[];
}

/**
 * The three Standard Webhooks headers to send with the body. A type alias, not an interface, so
 * it can be passed wherever a `Record<string, string>` is expected (`fetch`'s `headers`).
 */
export type WebhookSignatureHeaders = {
  /** The message id. */
  'webhook-id': string;
  /** Unix seconds, as a decimal string. */
  'webhook-timestamp': string;
  /** Space-separated `v1,<base64 HMAC-SHA256>`, one per secret, in the order given. */
  'webhook-signature': string;
};

// Printable ASCII without space and comma: the id travels in a header and is embedded in the
// signed content, so a newline would break the header and a space or comma would make it
// ambiguous once proxies join repeated headers.
const MESSAGE_ID = /^[\x21-\x2b\x2d-\x7e]+$/;

/**
 * Signs a webhook message with every given secret (Standard Webhooks v1).
 *
 * @returns The `webhook-id`, `webhook-timestamp` and `webhook-signature` headers.
 * @throws TypeError when the id is empty or not header-safe; the timestamp is not whole unix
 *   seconds (a fraction, a negative number, milliseconds, an invalid `Date`); no secret is
 *   given; or a secret is malformed (see {@link parseSecret}).
 */
export function signWebhook(input: SignWebhookInput): WebhookSignatureHeaders {
  const { id, body, secrets } = input;
  if (typeof id !== 'string' || !MESSAGE_ID.test(id)) {
    throw new TypeError('A webhook id must be a non-empty string of printable ASCII without spaces or commas.');
  }
  const timestamp = toUnixSeconds(input.timestamp);
  if (typeof body !== 'string') throw new TypeError('A webhook body must be the exact string that is sent.');
  if (!Array.isArray(secrets) || secrets.length === 0) {
    throw new TypeError('signWebhook needs at least one secret.');
  }
  // Parse every secret before signing with any: a half-signed message must never leave.
  const keys = secrets.map(parseSecret);
  const signatures = keys.map(
    (key) => `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.`).update(body, 'utf8').digest('base64')}`,
  );
  return {
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': signatures.join(' '),
  };
}

function toUnixSeconds(timestamp: Date | number): number {
  if (timestamp instanceof Date) {
    const ms = timestamp.getTime();
    if (Number.isNaN(ms)) throw new TypeError('The webhook timestamp is an invalid Date.');
    // Floor, not round: the reference implementation does the same, so both agree on the second.
    return Math.floor(ms / 1000);
  }
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
    throw new TypeError(
      `A numeric webhook timestamp must be whole unix seconds (got ${String(timestamp)}); ` +
        'pass a Date to have it converted.',
    );
  }
  // 10^11 s is the year 5138; a number that large is Date.now() passed by mistake, and every
  // receiver would refuse the message as being from the far future.
  if (timestamp >= 100_000_000_000) {
    throw new TypeError(`The webhook timestamp ${timestamp} looks like milliseconds; pass unix seconds, or a Date.`);
  }
  return timestamp;
}
