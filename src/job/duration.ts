/** A duration: milliseconds as a number, or a string such as `"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"30d"`. */
export type Duration = number | `${number}${'ms' | 's' | 'm' | 'h' | 'd'}`;

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** A duration as text (the HTTP API's `delay`, every option and flag): a number and its unit. */
export const DURATION_PATTERN = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/** Converts a {@link Duration} to milliseconds; throws on anything else. */
export function toMs(duration: Duration, what = 'duration'): number {
  if (typeof duration === 'number') {
    if (!Number.isFinite(duration) || duration < 0) throw new TypeError(`Invalid ${what}: ${duration}`);
    return duration;
  }
  const match = DURATION_PATTERN.exec(duration);
  if (!match) throw new TypeError(`Invalid ${what} "${duration}": use a number of milliseconds or e.g. "30s", "5m".`);
  return Math.round(Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS]);
}

/** Human form for messages: `90000` → `"1m 30s"`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const totalSeconds = Math.round(ms / 1000);
  const h = Math.floor(totalSeconds / 3600);
  const m = Math.floor((totalSeconds % 3600) / 60);
  const s = totalSeconds % 60;
  return [h && `${h}h`, m && `${m}m`, s && `${s}s`].filter(Boolean).join(' ') || '0s';
}
