import type { DestinationStream } from 'pino';

const LEVELS: Record<number, { name: string; color: string }> = {
  10: { name: 'TRACE', color: '\x1b[90m' },
  20: { name: 'DEBUG', color: '\x1b[36m' },
  30: { name: 'INFO ', color: '\x1b[32m' },
  40: { name: 'WARN ', color: '\x1b[33m' },
  50: { name: 'ERROR', color: '\x1b[31m' },
  60: { name: 'FATAL', color: '\x1b[35m' },
};
const RESET = '\x1b[0m';
const DIM = '\x1b[2m';
/** Fields every line has, or that the line shows in its own place. */
const SHOWN_APART = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'err']);

function value(v: unknown): string {
  return typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v);
}

/**
 * One pino JSON line as a person reads it in a terminal:
 * `12:04:05.123 INFO  job failed  jobId=… attempt=1`, an error's stack indented below.
 * A line that is not pino JSON passes through unchanged.
 */
export function formatLogLine(line: string, color: boolean): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const level = LEVELS[entry.level as number] ?? { name: String(entry.level), color: '' };
  const time = new Date(typeof entry.time === 'number' ? entry.time : Date.now()).toISOString().slice(11, 23);
  const fields = Object.entries(entry)
    .filter(([key]) => !SHOWN_APART.has(key))
    .map(([key, v]) => `${key}=${value(v)}`)
    .join(' ');
  const paint = (code: string, text: string) => (color && code ? `${code}${text}${RESET}` : text);
  let out = `${paint(DIM, time)} ${paint(level.color, level.name)} ${typeof entry.msg === 'string' ? entry.msg : JSON.stringify(entry.msg ?? '')}${fields ? `  ${paint(DIM, fields)}` : ''}`;
  const err = entry.err as { stack?: string; message?: string } | undefined;
  if (err) out += `\n    ${(err.stack ?? err.message ?? JSON.stringify(err)).split('\n').join('\n    ')}`;
  return `${out}\n`;
}

/** A pino destination that writes each line formatted for a person (see {@link formatLogLine}). */
export function prettyDestination(out: NodeJS.WritableStream, color: boolean): DestinationStream {
  return { write: (line: string) => void out.write(formatLogLine(line.trimEnd(), color)) };
}
