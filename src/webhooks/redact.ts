/**
 * A webhook URL as it may be logged: scheme, host, port and path kept, each query value
 * replaced by `REDACTED` (names kept), credentials and fragment dropped. Receivers often take
 * their secret in the query string (`?token=…`), and logs are read by more people than the
 * tenant who registered the URL.
 */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return '(not a valid URL)';
  }
  const names = [...parsed.searchParams.keys()];
  const query = names.length ? `?${names.map((name) => `${encodeURIComponent(name)}=REDACTED`).join('&')}` : '';
  return `${parsed.protocol}//${parsed.host}${parsed.pathname}${query}`;
}
