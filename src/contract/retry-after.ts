/**
 * Reads a `Retry-After` header (RFC 9110 §10.2.3: a whole number of seconds, or an HTTP date)
 * into milliseconds from `now`. One rule for every reader: the client SDK honouring a busy
 * server, and the webhook sender honouring a busy receiver.
 *
 * A date in the past gives `0`; anything else (absent, empty, negative, fractional, a word)
 * gives `undefined`, so the caller falls back to its own backoff.
 */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // An HTTP date always names a day or month; requiring a letter keeps the lenient Date.parse
  // of JavaScript engines from reading "-1" or "1.5" as a year or a date.
  if (!/[a-z]/i.test(text)) return undefined;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
