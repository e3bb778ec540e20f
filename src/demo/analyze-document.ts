import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { defineJob } from '../job/definition.ts';

const STAGES = [
  { stage: 'reading', message: 'Reading the document', share: 0.2 },
  { stage: 'analyzing', message: 'Finding the main themes and risks', share: 0.3 },
  { stage: 'writing', message: 'Writing the summary', share: 0.5 },
] as const;

function summaryOf(text: string): string {
  const words = text.split(/\s+/).filter(Boolean);
  const longest = [...new Set(words.map((w) => w.replace(/[^\p{L}\p{N}-]/gu, '')))]
    .filter((w) => w.length > 4)
    .sort((a, b) => b.length - a.length)
    .slice(0, 3);
  return (
    `The document has ${words.length} words. Its key terms are ${longest.join(', ') || 'few and short'}. ` +
    `Overall it reads as a clear, self-contained text; the main risk is missing context, ` +
    `so a reader should check its sources before acting on it.`
  );
}

/**
 * A stand-in for a real AI job: it shows an instant fallback, moves through stages, reports
 * progress and streams its summary token by token, taking `seconds` in all (default 30). Every wait honours the signal,
 * so cancel, timeout and shutdown stop it at once.
 */
export const analyzeDocument = defineJob({
  name: 'analyze-document',
  input: z.object({
    text: z.string().min(1).max(100_000).describe('The document to analyze.'),
    seconds: z.number().min(0).max(600).default(30).describe('How long the simulated analysis takes.'),
  }),
  timeout: '15m',
  retry: { attempts: 3 },
  // What a person sees in the first second: counts and the opening sentence, no model needed.
  fallback: ({ text }) => {
    const words = text.split(/\s+/).filter(Boolean).length;
    const opening = /^[^.!?]*[.!?]?/.exec(text.trim())?.[0] ?? '';
    return { summary: `A ${words}-word document opening with: "${opening.slice(0, 160)}". The full analysis is on its way.`, words };
  },
  async run({ text, seconds }, ctx) {
    const totalMs = seconds * 1000;
    const summary = summaryOf(text);
    const tokens = summary.match(/\S+\s*/g) ?? [];
    let percent = 0;
    for (const { stage, message, share } of STAGES) {
      await ctx.progress({ percent: Math.round(percent), stage, message });
      const stageMs = totalMs * share;
      if (stage === 'writing') {
        for (const token of tokens) {
          await sleep(stageMs / tokens.length, undefined, { signal: ctx.signal });
          ctx.write(token);
        }
      } else {
        await sleep(stageMs, undefined, { signal: ctx.signal });
      }
      percent += share * 100;
    }
    await ctx.progress({ percent: 100, stage: 'done', message: 'Analysis complete' });
    return { summary, words: text.split(/\s+/).filter(Boolean).length };
  },
});
