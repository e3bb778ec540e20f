import { setTimeout as sleep } from 'node:timers/promises';
import type OpenAI from 'openai';
import { z } from 'zod';
import { defineJob, type JobContext } from '../job/definition.ts';
import { streamChat } from '../llm/stream-chat.ts';

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

/** The model the demo asks, when one is configured (see {@link analyzeDocument}). */
interface DemoModel {
  baseURL: string;
  apiKey: string;
  model: string;
}

function demoModelFromEnv(env: NodeJS.ProcessEnv = process.env): DemoModel | undefined {
  const baseURL = env.WAITLESS_DEMO_LLM_BASE_URL?.trim();
  if (!baseURL) return undefined;
  return {
    baseURL,
    // Local servers (Ollama, llama.cpp, vLLM) ignore the key, but the SDK wants one.
    apiKey: env.WAITLESS_DEMO_LLM_API_KEY || env.OPENAI_API_KEY || 'unused',
    model: env.WAITLESS_DEMO_LLM_MODEL?.trim() || 'gpt-4o-mini',
  };
}

const clients = new Map<string, OpenAI>();

const MISSING_SDK = 'WAITLESS_DEMO_LLM_BASE_URL is set, but the "openai" package is not installed: npm install openai';

/**
 * Why the demo cannot run as configured, checked once at start (the CLI exits with it) rather
 * than by each job: a model is configured but `openai`, an optional peer, is not installed.
 */
export async function demoModelProblem(env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  if (!demoModelFromEnv(env)) return undefined;
  try {
    await import('openai');
    return undefined;
  } catch {
    return MISSING_SDK;
  }
}

/** One client per endpoint and key; `openai` is loaded only here, the first time a model is configured. */
async function clientFor({ baseURL, apiKey }: DemoModel): Promise<OpenAI> {
  const key = `${baseURL}\n${apiKey}`;
  let client = clients.get(key);
  if (!client) {
    let sdk: typeof import('openai');
    try {
      sdk = await import('openai');
    } catch {
      throw new Error(MISSING_SDK);
    }
    client = new sdk.default({ baseURL, apiKey });
    clients.set(key, client);
  }
  return client;
}

const SYSTEM_PROMPT =
  'You analyze documents. Answer with a summary of three to five sentences: what the document is, ' +
  'its key terms and main themes, and the main risk a reader should keep in mind. Plain prose, no headings, no lists.';

/** The demo with a real model: the summary is streamed from it, durably (see `streamChat`). */
async function analyzeWithModel(text: string, model: DemoModel, ctx: JobContext) {
  await ctx.progress({ percent: 0, stage: 'reading', message: 'Reading the document' });
  const client = await clientFor(model);
  await ctx.progress({ percent: 20, stage: 'writing', message: `Writing the summary with ${model.model}` });
  const { text: summary } = await streamChat(ctx, {
    client,
    step: 'summary',
    request: {
      model: model.model,
      messages: [
        { role: 'system', content: SYSTEM_PROMPT },
        { role: 'user', content: text },
      ],
    },
  });
  await ctx.progress({ percent: 100, stage: 'done', message: 'Analysis complete' });
  return { summary: summary.trim(), words: text.split(/\s+/).filter(Boolean).length };
}

/**
 * A stand-in for a real AI job: it shows an instant fallback, moves through stages, reports
 * progress and streams its summary token by token, taking `seconds` in all (default 30). Every wait honours the signal,
 * so cancel, timeout and shutdown stop it at once.
 *
 * With `WAITLESS_DEMO_LLM_BASE_URL` set (any OpenAI-compatible API, e.g.
 * `http://127.0.0.1:11434/v1` for Ollama or `https://api.openai.com/v1`), the summary comes
 * from a real model instead, streamed with `streamChat` (and `seconds` is ignored):
 * `WAITLESS_DEMO_LLM_MODEL` names the model (default `gpt-4o-mini`), `WAITLESS_DEMO_LLM_API_KEY`
 * (else `OPENAI_API_KEY`) is its key. The `openai` package must be installed then. The variables
 * are read when the job runs. A key alone never turns the model on: only an explicit endpoint does.
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
    // Cut by code points, not UTF-16 units: a cut through an emoji would leave half of it.
    const shown = [...opening].slice(0, 160).join('');
    return { summary: `A ${words}-word document opening with: "${shown}". The full analysis is on its way.`, words };
  },
  async run({ text, seconds }, ctx) {
    const model = demoModelFromEnv();
    if (model) return analyzeWithModel(text, model, ctx);
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
