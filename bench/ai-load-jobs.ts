/**
 * The job of bench/ai-load.ts: `ai-stream` imitates a model streaming its answer, writing
 * `ratePerSecond` short tokens a second through `ctx.write` until it has written `tokens`.
 *
 * Every token says which job wrote it, its sequence number and when it was written, e.g.
 * `⟨7:123:1733460000123.4⟩`, so a watcher can find the tokens in the concatenated output,
 * check each arrived exactly once, and time it. The time is epoch milliseconds from
 * `performance.timeOrigin + performance.now()`: finer than Date.now(), and comparable across
 * processes on one machine.
 *
 * Usable as is (`waitless worker --jobs bench/ai-load-jobs.ts`). bench/ai-load.ts hands other
 * checkouts a generated module that wraps `aiStreamOptions` in that checkout's own `defineJob`,
 * so each engine gets a definition of its own version.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { defineJob, type JobContext } from '../src/job/definition.ts';

export const AI_STREAM = 'ai-stream';

const input = z.object({
  tokens: z.number().int().min(1).max(1_000_000),
  ratePerSecond: z.number().positive().max(10_000),
  index: z.number().int().min(0),
});

/** `⟨job:seq:time⟩`; the time keeps one decimal (0.1 ms), plenty against a 200 ms flush interval. */
export const TOKEN_PATTERN = /⟨(\d+):(\d+):(\d+(?:\.\d+)?)⟩/g;

const now = () => performance.timeOrigin + performance.now();

async function run({ tokens, ratePerSecond, index }: z.output<typeof input>, ctx: JobContext): Promise<{ tokens: number }> {
  const interval = 1000 / ratePerSecond;
  // A random phase within one token interval, so a thousand jobs claimed in one batch do not
  // all write (and flush) on the same tick.
  const start = performance.now() + Math.random() * interval;
  for (let seq = 0; seq < tokens; seq++) {
    // Due times come from the start, not from the previous token: a late tick (a busy event
    // loop) is caught up rather than stretching the job, so the offered rate stays the same.
    const wait = start + seq * interval - performance.now();
    if (wait > 0) await sleep(wait, undefined, { signal: ctx.signal });
    ctx.signal.throwIfAborted();
    ctx.write(`⟨${index}:${seq}:${now().toFixed(1)}⟩`);
  }
  return { tokens };
}

/** What `defineJob` gets, exported so another checkout's `defineJob` can wrap it. */
export const aiStreamOptions = {
  name: AI_STREAM,
  input,
  // Far beyond any run of the benchmark: a timed-out job would show up as lost tokens anyway.
  timeout: '1h' as const,
  // A failed attempt or an expired lease must show as a failed job, not as a rerun that
  // writes every token again (the benchmark reports both).
  retry: { attempts: 1 },
  run,
};

export const aiStream = defineJob(aiStreamOptions);
