/**
 * JSON text for the database. PostgreSQL's `jsonb` refuses a lone UTF-16 surrogate (`\ud83d`
 * with no partner: a string cut in the middle of an emoji), which `JSON.stringify` writes as
 * an escape. Every value Waitless stores as JSON goes through {@link toStoredJson}, which
 * replaces each lone surrogate, in strings and in keys, with U+FFFD, so such text is stored
 * (slightly mended) instead of failing the statement that carries it.
 */

/** A lone surrogate as `JSON.stringify` escapes it (paired surrogates are written as they are). */
const LONE_SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;

/**
 * The value as JSON text safe for `jsonb`, or `undefined` for a value JSON has no text for
 * (`undefined`, a function). Text without a lone surrogate costs one `JSON.stringify`.
 */
export function toStoredJson(value: unknown): string | undefined {
  const text = JSON.stringify(value) as string | undefined;
  // The test may also match an escaped backslash followed by "ud8…"; the second pass is then merely unneeded.
  if (text === undefined || !LONE_SURROGATE_ESCAPE.test(text)) return text;
  return JSON.stringify(value, wellFormed);
}

/**
 * What stored text weighs, the one measure of every size limit: its UTF-8 bytes (of a value's
 * JSON text from {@link toStoredJson}, or of output text as it is kept).
 */
export const storedBytes = (text: string): number => Buffer.byteLength(text, 'utf8');

/** The value as it will be after a trip through the database (Dates become strings, undefined goes, lone surrogates become U+FFFD). */
export function toStoredValue(value: unknown): unknown {
  const text = toStoredJson(value);
  return text === undefined ? null : (JSON.parse(text) as unknown);
}

/** A high surrogate with no low one after it, or a low one with no high one before it (code units: no `u` flag). */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** The string with each lone surrogate replaced by U+FFFD (`String.prototype.toWellFormed`, which the ES2023 lib lacks). */
export const wellFormedString = (text: string): string => text.replace(LONE_SURROGATE, '\ufffd');

function wellFormed(_key: string, value: unknown): unknown {
  if (typeof value === 'string') return wellFormedString(value);
  if (value && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).some((key) => wellFormedString(key) !== key)) {
    return Object.fromEntries(Object.entries(value).map(([key, v]) => [wellFormedString(key), v]));
  }
  return value;
}

/**
 * How deeply submitted JSON (an input, a context) may nest: 100 levels of arrays and objects.
 * Deeper values would overflow the stack of the recursive code that walks them (validation,
 * `JSON.stringify`) long before they are useful.
 */
export const MAX_JSON_DEPTH = 100;

/** True when the value nests arrays and objects more than `max` levels deep. Iterative: it must not overflow itself. */
export function nestsDeeperThan(value: unknown, max: number): boolean {
  const pending: Array<[unknown, number]> = [[value, 0]];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [item, depth] = next;
    if (!item || typeof item !== 'object') continue;
    if (depth + 1 > max) return true;
    for (const child of Array.isArray(item) ? item : Object.values(item)) pending.push([child, depth + 1]);
  }
  return false;
}
