/**
 * One webhook POST, hardened against SSRF: the URL is vetted by {@link checkWebhookUrl} and the
 * connection goes to the very address that was vetted, never to a fresh DNS answer (which an
 * attacker controlling the name could rebind to 127.0.0.1 between check and connect).
 */
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { performance } from 'node:perf_hooks';
import { checkWebhookUrl, type CheckedUrl, type SsrfPolicy, UnsafeUrlError } from './ssrf.ts';
import { parseRetryAfter } from '../contract/retry-after.ts';

export { parseRetryAfter };

/** What {@link postWebhook} needs besides the URL. */
export interface WebhookRequest {
  /** Request headers (signature, content type, …). `Host` and `Content-Length` are always set here and override these. */
  headers: Record<string, string>;
  /** Request body, sent as UTF-8. */
  body: string;
  /** Budget for the whole attempt in milliseconds: DNS, connect, TLS, response headers and the body excerpt. Default: `15000`. */
  timeoutMs?: number;
  /** Which destinations are allowed. Default: `{}` (every non-public address refused). */
  policy?: SsrfPolicy;
  /** Aborts the attempt; it then resolves `{ ok: false, error }`. Default: none. */
  signal?: AbortSignal;
}

/** The outcome of one delivery attempt. */
export interface DeliveryResult {
  /** HTTP status, when a response arrived. */
  status?: number;
  /** True only for a 2xx response read within the budget. A 3xx is not followed and is not ok. */
  ok: boolean;
  /** Wall time of the attempt in milliseconds, DNS included. */
  latencyMs: number;
  /** The receiver's `Retry-After` (seconds or HTTP date) in milliseconds from now, when it sent a valid one. */
  retryAfterMs?: number;
  /** The first {@link EXCERPT_CHARS} characters of the response body, for the delivery log. */
  responseExcerpt?: string;
  /** Why the attempt failed without a usable response (network error, timeout, abort). */
  error?: string;
}

/** Characters of the response body kept for the delivery log. */
export const EXCERPT_CHARS = 500;
// Enough bytes for EXCERPT_CHARS characters of any UTF-8 text (at most 4 bytes each), with
// room for a character cut in half at the end; we stop reading there, so a receiver streaming
// gigabytes costs us one buffer, not a download.
const MAX_BODY_BYTES = EXCERPT_CHARS * 4 + 4;

const DEFAULT_TIMEOUT_MS = 15_000;

// Hop-by-hop and framing headers are ours to set: a caller-supplied Host would point TLS and
// virtual hosting somewhere other than the checked URL, and a wrong length desynchronizes.
const RESERVED_HEADERS = new Set(['host', 'content-length', 'transfer-encoding', 'connection']);

/** Marks an abort caused by our own deadline, to word the error. */
class DeadlineExceeded extends Error {}

/** Resolves `promise`, or rejects with the signal's reason as soon as it aborts (DNS lookups cannot be cancelled, only abandoned). */
async function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted();
  let onAbort = (): void => undefined;
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    // race() subscribes to `promise`, so its late rejection, if any, is never unhandled.
    return await Promise.race([promise, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

function describe(error: unknown, signal: AbortSignal, timeoutMs: number): string {
  // Once aborted, the underlying error is a generic AbortError; the signal says which abort it was.
  if (signal.aborted) return signal.reason instanceof DeadlineExceeded ? `timed out after ${timeoutMs} ms` : 'aborted';
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    const message = error.message.trim();
    return code !== undefined && !message.includes(code) ? `${code}: ${message}` : message;
  }
  return String(error);
}

/** A `lookup` that answers every query with the checked address, so the socket cannot go anywhere else. */
function pinnedLookup(address: string, family: 4 | 6): LookupFunction {
  return (_hostname, options, callback) => {
    // With autoSelectFamily (the default since Node 20) net asks for `all: true` and expects an array.
    if (options.all === true) callback(null, [{ address, family }]);
    else callback(null, address, family);
  };
}

function send(checked: CheckedUrl, init: WebhookRequest, signal: AbortSignal, started: number, timeoutMs: number): Promise<DeliveryResult> {
  const { url, address, family } = checked;
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(init.headers)) if (!RESERVED_HEADERS.has(name.toLowerCase())) headers[name] = value;
  headers.host = url.host; // the original name (and port), never the pinned address
  headers['content-length'] = String(Buffer.byteLength(init.body));

  const options: RequestOptions & { servername?: string } = {
    method: 'POST',
    hostname,
    port: url.port === '' ? undefined : Number(url.port),
    path: `${url.pathname}${url.search}`,
    headers,
    lookup: pinnedLookup(address, family),
    // A private agent: no pooled socket from another delivery, no keep-alive, and no env proxy
    // (NODE_USE_ENV_PROXY applies to the global agent): a proxy would resolve the name itself.
    agent: false,
    signal,
  };
  // SNI and certificate checks must use the name the URL gave, not the address we pinned.
  if (url.protocol === 'https:' && isIP(hostname) === 0) options.servername = hostname;

  return new Promise<DeliveryResult>((resolve) => {
    let settled = false;
    // Set once response headers arrive, so a failure while reading the body still reports it.
    let status: number | undefined;
    const latency = (): number => Math.round(performance.now() - started);
    const settle = (result: DeliveryResult): void => {
      if (settled) return;
      settled = true;
      resolve(result);
    };
    const fail = (error: unknown): void =>
      settle({ ...(status === undefined ? {} : { status }), ok: false, latencyMs: latency(), error: describe(error, signal, timeoutMs) });

    const onResponse = (res: IncomingMessage): void => {
      const code = res.statusCode ?? 0;
      status = code;
      const retryAfterMs = parseRetryAfter(res.headers['retry-after']);
      const chunks: Buffer[] = [];
      let size = 0;
      const finish = (): void => {
        const text = Buffer.concat(chunks).toString('utf8');
        let excerpt = text.slice(0, EXCERPT_CHARS);
        // Do not end on half a surrogate pair.
        if (/[\uD800-\uDBFF]$/.test(excerpt)) excerpt = excerpt.slice(0, -1);
        settle({
          status: code,
          ok: code >= 200 && code < 300,
          latencyMs: latency(),
          ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
          ...(excerpt === '' ? {} : { responseExcerpt: excerpt }),
        });
        // Stop downloading: whatever else the receiver sends is of no use to us.
        res.destroy();
      };
      res.on('data', (chunk: Buffer) => {
        if (settled) return;
        chunks.push(chunk);
        size += chunk.length;
        if (size >= MAX_BODY_BYTES) finish();
      });
      res.on('end', finish);
      // A body cut short by the deadline or the peer: the receiver may or may not have processed
      // it, and at-least-once delivery means we say "failed" and let the retry policy decide.
      res.on('error', fail);
      res.on('close', () => fail(new Error('connection closed before the response ended')));
    };

    const request = url.protocol === 'https:' ? httpsRequest(options, onResponse) : httpRequest(options, onResponse);
    request.on('error', fail);
    request.end(init.body);
  });
}

/**
 * POSTs a webhook to `target`, connecting only to an address {@link checkWebhookUrl} approved.
 *
 * Redirects are never followed (a 3xx resolves `ok: false` with its status), only a 2xx is
 * `ok`, and at most a few KiB of the response body are read. Network errors, timeouts and
 * aborts resolve `{ ok: false, error }` rather than throwing.
 *
 * @throws {UnsafeUrlError} when the URL is refused, so callers can tell "unsafe, never retry"
 *   from "failed, maybe retry".
 */
export async function postWebhook(target: string, init: WebhookRequest): Promise<DeliveryResult> {
  const timeoutMs = init.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs)) throw new TypeError(`timeoutMs must be a positive number, got ${timeoutMs}`);
  const started = performance.now();
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DeadlineExceeded(`timed out after ${timeoutMs} ms`)), timeoutMs);
  const onCallerAbort = (): void => controller.abort(init.signal?.reason);
  if (init.signal?.aborted === true) onCallerAbort();
  else init.signal?.addEventListener('abort', onCallerAbort, { once: true });
  try {
    let checked: CheckedUrl;
    try {
      checked = await unlessAborted(checkWebhookUrl(target, init.policy), controller.signal);
    } catch (error) {
      if (error instanceof UnsafeUrlError) throw error;
      // A malformed allow-list is a configuration bug, not a delivery failure worth retrying.
      if (error instanceof TypeError && !controller.signal.aborted) throw error;
      // DNS failing transiently, or the deadline passing while resolving.
      return { ok: false, latencyMs: Math.round(performance.now() - started), error: describe(error, controller.signal, timeoutMs) };
    }
    return await send(checked, init, controller.signal, started, timeoutMs);
  } finally {
    clearTimeout(timer);
    init.signal?.removeEventListener('abort', onCallerAbort);
  }
}
