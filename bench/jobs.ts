/**
 * Jobs for the benchmarks. Loaded by the benchmark processes themselves and by the
 * `waitless worker --jobs bench/jobs.ts` processes that bench/throughput.ts spawns.
 */
import { z } from 'zod';
import { defineJob } from '../src/job/definition.ts';

/** Does nothing: what is measured is the queue, not the work. */
export const noop = defineJob({
  name: 'bench-noop',
  input: z.object({ n: z.number().int() }),
  retry: { attempts: 1 },
  async run({ n }) {
    return { n };
  },
});

/**
 * Called on the first line of {@link probe}'s handler. bench/pickup.ts sets it to take the time;
 * a worker process that loads this module leaves it unset.
 */
export const probeHook: { onStart?: (n: number, startedAt: number) => void } = {};

/** A no-op that reports the moment its handler starts (same process only). */
export const probe = defineJob({
  name: 'bench-probe',
  input: z.object({ n: z.number().int() }),
  retry: { attempts: 1 },
  async run({ n }) {
    const startedAt = performance.now();
    probeHook.onStart?.(n, startedAt);
    return { n };
  },
});
