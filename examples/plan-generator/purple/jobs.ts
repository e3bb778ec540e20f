/**
 * Purple: the service that does the heavy lifting. One job, "analyze-repository": a stand-in
 * for cloning a repository, reading its code and running an analysis agent that turns a PRD
 * into a list of tasks. How long it takes comes from the input (`minutes`), as a tiny repo
 * takes 30 seconds and a sprawling one half an hour.
 *
 *   node src/cli/main.ts serve --jobs examples/plan-generator/purple/jobs.ts
 *
 * (In your own service: `import { defineJob } from 'waitless'`.)
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { defineJob } from '../../../src/index.ts';

const STAGES = [
  { stage: 'cloning', message: 'Cloning the repository', share: 0.1 },
  { stage: 'reading', message: 'Reading the code', share: 0.3 },
  { stage: 'analyzing', message: 'Matching the PRD against the code', share: 0.3 },
  { stage: 'planning', message: 'Writing the plan', share: 0.3 },
] as const;

/** The "model output": one task per requirement line of the PRD (at least three). */
function tasksFor(prd: string, repository: string): string[] {
  const lines = prd
    .split(/[\n.;]+/)
    .map((l) => l.trim())
    .filter(Boolean);
  const wanted = lines.length > 0 ? lines : ['the feature'];
  const tasks = wanted.map((line) => `Implement: ${line} (in ${repository})`);
  return [...tasks, 'Write tests for the new behaviour', 'Update the docs'];
}

export const analyzeRepository = defineJob({
  name: 'analyze-repository',
  input: z.object({
    repository: z.string().min(1).max(500),
    prd: z.string().min(1).max(20_000),
    /** How long the simulated analysis takes, in minutes (0.5 = a tiny repo, 35 = a sprawling one). */
    minutes: z.number().min(0).max(60).default(0.5),
  }),
  timeout: '1h',
  retry: { attempts: 2 },
  async run({ repository, prd, minutes }, ctx) {
    const totalMs = minutes * 60_000;
    const tasks = tasksFor(prd, repository);
    let percent = 0;
    for (const { stage, message, share } of STAGES) {
      await ctx.progress({ percent: Math.round(percent), stage, message });
      const stageMs = totalMs * share;
      if (stage === 'planning') {
        // Stream the plan as it is "generated": one task at a time.
        for (const task of tasks) {
          await sleep(stageMs / tasks.length, undefined, { signal: ctx.signal });
          ctx.write(`- ${task}\n`);
        }
      } else {
        // Every wait takes the signal: cancel, the time budget and shutdown stop the job at once.
        await sleep(stageMs, undefined, { signal: ctx.signal });
      }
      percent += share * 100;
    }
    await ctx.progress({ percent: 100, stage: 'done', message: `${tasks.length} tasks` });
    return { repository, tasks };
  },
});
