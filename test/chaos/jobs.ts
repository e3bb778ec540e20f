/**
 * Jobs of the chaos scenario (test/chaos/scenario.ts), loaded by the worker processes through
 * `--jobs` and by the scenario's own engine (to validate submits; it runs no worker).
 *
 * Every step's side effect is a call to a service outside Waitless: the scenario's loopback
 * "side-effect" server, named by WAITLESS_CHAOS_EFFECTS_URL, which records each call with the
 * job, the step and the attempt that made it. That record, set against the `job_steps` table,
 * shows whether a recorded step ever ran its side effect again.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { defineJob, type JobContext } from '../../src/job/definition.ts';
import { EFFECTS_URL_ENV } from './env.ts';


/** What the side-effect server is told by each call. */
export interface EffectCall {
  jobId: string;
  step: string;
  attempt: number;
  pid: number;
  /** The step's idempotency key (what a payment API would be given). */
  key: string;
}

/** The answer of a side effect: a receipt only the call that made it knows. */
export interface EffectReceipt {
  receipt: string;
}

function effectsUrl(): string {
  const url = process.env[EFFECTS_URL_ENV];
  if (!url) throw new Error(`${EFFECTS_URL_ENV} is not set: nowhere to perform side effects`);
  return url;
}

/** One side effect: a POST the server records before it answers. Not retried here: a failure fails the step. */
async function sideEffect(ctx: JobContext, step: string, key: string, signal: AbortSignal): Promise<string> {
  const call: EffectCall = { jobId: ctx.jobId, step, attempt: ctx.attempt, pid: process.pid, key };
  const response = await fetch(`${effectsUrl()}/effects`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(call),
    signal,
  });
  if (!response.ok) throw new Error(`side effect refused: ${response.status}`);
  return ((await response.json()) as EffectReceipt).receipt;
}

/** The partial output a pipeline job streams: one line per step with its receipt, then `done`. */
export const pipelineOutput = (receipts: readonly string[]) => `${receipts.map((r, i) => `s${i} ${r}\n`).join('')}done\n`;

/** The result a pipeline job returns. */
export interface PipelineResult {
  n: number;
  receipts: string[];
}

/**
 * Steps in a row, each a side effect between two waits (the second is the window in which a
 * kill or a lost connection leaves a side effect without its step record), each line of
 * output streamed as its step returns. Killed workers, lost connections and lost leases all
 * cost attempts: the retry budget leaves room for many.
 */
export const pipeline = defineJob({
  name: 'chaos-pipeline',
  input: z.object({ n: z.number().int().min(0), stepMs: z.array(z.number().int().min(0)).min(1).max(10) }),
  retry: { attempts: 30, initialDelay: '100ms', maxDelay: '1s' },
  async run({ n, stepMs }, ctx) {
    const receipts: string[] = [];
    for (const [i, ms] of stepMs.entries()) {
      const name = `s${i}`;
      const receipt = await ctx.step(name, async (step) => {
        await sleep(ms / 2, undefined, { signal: step.signal });
        const made = await sideEffect(ctx, name, step.idempotencyKey, step.signal);
        await sleep(ms / 2, undefined, { signal: step.signal });
        return made;
      });
      receipts.push(receipt);
      ctx.write(`${name} ${receipt}\n`);
    }
    ctx.write('done\n');
    return { n, receipts } satisfies PipelineResult;
  },
});

/**
 * Waits until the scenario opens its gate (asked of the side-effect server), then returns:
 * the job a newer one supersedes while it waits. It ignores its signal on purpose, so a
 * cancelled attempt still returns a result late, which must never be delivered as completed.
 */
export const gated = defineJob({
  name: 'chaos-gated',
  input: z.object({ gate: z.string() }),
  retry: { attempts: 30, initialDelay: '100ms', maxDelay: '1s' },
  async run({ gate }, ctx) {
    ctx.write('waiting\n');
    // Bounded: a scenario that never opens the gate (it failed) does not leave a handler for ever.
    for (let i = 0; i < 6000; i++) {
      const response = await fetch(`${effectsUrl()}/gates/${encodeURIComponent(gate)}`).catch(() => undefined);
      if (response?.ok && ((await response.json()) as { open: boolean }).open) return { gate, attempt: ctx.attempt };
      await sleep(100);
    }
    throw new Error(`gate ${gate} never opened`);
  },
});

export const chaosJobs = [pipeline, gated];
