import type { Logger } from 'pino';
import { JOB_LOG_LEVELS, type JobLog, type JobLogLevel, type JobLogLimits } from '../job/definition.ts';
import type { JobLogLine } from '../job/model.ts';

/** `ctx.log` of one attempt, and what the worker needs to close it. */
export interface AttemptLog {
  log: JobLog;
  /** Adds a line saying how many lines were dropped, if any were (once per attempt, before its outcome). */
  end(): void;
}

/**
 * Escapes PostgreSQL's jsonb refuses, in JSON.stringify's output: `\u0000` (NUL) and `\udXXX`
 * (JSON.stringify writes a surrogate as an escape only when it is lone: a string cut inside an
 * emoji). Each not preceded by an escaped backslash, so text that merely spells one is kept.
 */
const UNSTORABLE_ESCAPE = /(?<!\\)((?:\\\\)*)\\u(?:0000|d[89a-f][0-9a-f]{2})/g;

/**
 * JSON text PostgreSQL's jsonb accepts, keys and values alike (each unstorable character becomes
 * U+FFFD), so a log line can never make the round that carries every running job's writes fail.
 */
function storableJson(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? 'null';
  } catch {
    // A cycle or a BigInt: the line is kept, its data as the best text there is.
    text = JSON.stringify({ ...(value as object), data: String((value as { data?: unknown }).data) });
  }
  return text.replace(UNSTORABLE_ESCAPE, '$1\\ufffd');
}

/**
 * Builds `ctx.log` for an attempt: every line goes to the process's logger and, while the
 * attempt is within its limits, to the job's event log through the worker's write buffer (one
 * statement per flush interval for every job, fenced by the lease like output).
 */
export function createAttemptLog(p: {
  attempt: number;
  limits: Required<JobLogLimits>;
  logger: Logger;
  /** Buffers one line (JSON text) for the job's event log. */
  write: (line: string) => void;
  /** Lines the writer dropped after they were buffered (the database refused them), counted with the rest. */
  droppedByWriter?: () => number;
  /** False once the handler may add no more lines (its signal aborted, or the attempt ended). */
  open: () => boolean;
}): AttemptLog {
  let lines = 0;
  let bytes = 0;
  let dropped = 0;
  let ended = false;

  const line = (level: JobLogLevel) => (message: string, data?: unknown) => {
    const text = typeof message === 'string' ? message : String(message);
    p.logger[level](data === undefined ? {} : { data }, text);
    if (ended || !p.open()) return;
    const entry: JobLogLine = { level, message: text, attempt: p.attempt, ...(data === undefined ? {} : { data }) };
    const json = storableJson(entry);
    const size = Buffer.byteLength(json);
    if (lines + 1 > p.limits.maxLines || bytes + size > p.limits.maxBytes) {
      dropped++;
      return;
    }
    lines++;
    bytes += size;
    p.write(json);
  };

  const log = Object.fromEntries(JOB_LOG_LEVELS.map((level) => [level, line(level)])) as JobLog;
  return {
    log: Object.freeze(log),
    end() {
      if (ended) return;
      ended = true;
      // Not `open()`: a timed-out attempt's signal has aborted, and its log still gets the count.
      const refused = p.droppedByWriter?.() ?? 0;
      const total = dropped + refused;
      if (total === 0) return;
      const { maxLines, maxBytes } = p.limits;
      const why = [
        ...(dropped > 0 ? [`an attempt keeps ${maxLines} lines and ${maxBytes} bytes of its log (the job definition's logs option)`] : []),
        ...(refused > 0 ? [`${refused} the database refused`] : []),
      ];
      const entry: JobLogLine = {
        level: 'warn',
        message: `${total} more log line${total === 1 ? ' was' : 's were'} dropped: ${why.join('; ')}.`,
        attempt: p.attempt,
        dropped: total,
      };
      p.write(storableJson(entry));
    },
  };
}
