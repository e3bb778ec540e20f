import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { z } from 'zod';
import type { Waitless } from '../src/engine.ts';
import { analyzeDocument } from '../src/demo/analyze-document.ts';
import { defineJob } from '../src/job/definition.ts';
import { JobCancelledError, LeaseLostError } from '../src/job/errors.ts';
import type { Job } from '../src/job/model.ts';
import { DEFAULT_CONTINUE_PROMPT, streamChat, type StreamChatResult } from '../src/llm/index.ts';
import type { Worker } from '../src/worker/worker.ts';
import { type ChatBody, type FakeReply, type FakeRequest, startFakeOpenAI, type FakeOpenAI } from './fixtures/fake-openai.ts';
import { BACKENDS, deferred, eventually, finished, openEngine, type TestEngine } from './helpers.ts';

const MODEL = 'chat-model';
const words = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i} `);

/** How the fake answers each scenario: by the prompt, and whether the request resumes (has an assistant message). */
type Plan = (resuming: boolean) => FakeReply;
const firstUserMessage = (body: ChatBody) => String(body.messages.find((m) => m.role === 'user')?.content);

for (const backend of BACKENDS) {
  describe(`streamChat on ${backend}`, () => {
    const plans = new Map<string, Plan>();
    /** What each job's handler threw, by job id (the cancel test reads the signal's reason there). */
    const thrown = new Map<string, unknown>();
    let fake: FakeOpenAI;
    let engine: TestEngine;
    let waitless: Waitless;
    let worker: Worker;

    /** `chat` runs on the suite's worker; `chat-taken` only on the workers of the test that loses one. */
    const chatJob = (name: string) =>
      defineJob({
        name,
        input: z.object({ prompt: z.string(), failAfterModelOnce: z.boolean().default(false) }),
        timeout: '30s',
        retry: { attempts: 3, initialDelay: 20, maxDelay: 50 },
        async run({ prompt, failAfterModelOnce }, ctx): Promise<StreamChatResult> {
          const client = new OpenAI({ baseURL: fake.baseURL, apiKey: 'test-key', maxRetries: 0 });
          try {
            const result = await streamChat(ctx, { client, request: { model: MODEL, messages: [{ role: 'user', content: prompt }] }, checkpointEvery: '100ms' });
            if (failAfterModelOnce && ctx.attempt === 1) throw new Error('a later step failed');
            return result;
          } catch (error) {
            thrown.set(ctx.jobId, error);
            throw error;
          }
        },
      });

    /** The requests the fake got for one prompt, in order. */
    const requestsFor = (prompt: string): FakeRequest[] => fake.requests.filter((r) => firstUserMessage(r.body) === prompt);
    const submit = async (prompt: string, plan: Plan, extra: { failAfterModelOnce?: boolean } = {}, name = 'chat') => {
      plans.set(prompt, plan);
      const { job } = await waitless.submit(name, { prompt, ...extra });
      return job.id;
    };
    const usageTotals = (job: Job) => {
      const { promptTokens, completionTokens, totalTokens } = job.usage ?? {};
      return { promptTokens, completionTokens, totalTokens };
    };

    before(async () => {
      fake = await startFakeOpenAI({
        reply: (body: ChatBody) => {
          const plan = plans.get(firstUserMessage(body));
          assert.ok(plan, 'a request for a known prompt');
          return plan(body.messages.some((m) => m.role === 'assistant'));
        },
      });
      engine = await openEngine(backend, { jobs: [chatJob('chat'), chatJob('chat-taken'), analyzeDocument] });
      waitless = engine.waitless;
      worker = waitless.startWorker({ pollInterval: 50, names: ['chat', 'analyze-document'] });
    });
    after(async () => {
      await worker?.stop();
      await engine?.close();
      await fake?.close();
    });

    it('streams the tokens into the partial output as they arrive, in batches, and records the usage', async () => {
      const prompt = `stream on ${backend}`;
      const tokens = words('tok', 40);
      const full = tokens.join('');
      const id = await submit(prompt, () => ({ tokens, tokenDelayMs: 25 }));

      // The output grows while the job runs: two partial outputs, the second longer.
      const seen: string[] = [];
      await eventually(async () => {
        const job = (await waitless.get(id))!;
        if (job.status === 'running' && job.output && job.output.length < full.length && job.output !== seen.at(-1)) seen.push(job.output);
        return seen.length >= 2;
      }, 'the partial output growing while the job runs');
      assert.ok(full.startsWith(seen[0]!) && full.startsWith(seen[1]!) && seen[1]!.length > seen[0]!.length);

      const job = await finished(waitless, id);
      assert.equal(job.status, 'completed');
      const result = job.result as StreamChatResult;
      assert.equal(result.text, full);
      assert.equal(result.finishReason, 'stop');
      assert.equal(job.output, full);
      const outputEvents = (await waitless.events(id)).filter((e) => e.type === 'output');
      assert.ok(outputEvents.length >= 2, `streamed in several writes (${outputEvents.length})`);
      assert.ok(outputEvents.length < tokens.length / 2, `${outputEvents.length} output events for ${tokens.length} tokens: coalesced`);
      assert.equal(outputEvents.map((e) => e.data.text).join(''), full);

      // Usage, from the fake's final chunk (prompt: its words; completion: one per token).
      const expected = { promptTokens: 3, completionTokens: 40, totalTokens: 43 };
      assert.deepEqual(result.usage, { model: `${MODEL}-fake`, ...expected });
      assert.deepEqual(usageTotals(job), expected);
      assert.equal(job.usage?.byModel[`${MODEL}-fake`]?.calls, 1);
      const [request] = requestsFor(prompt);
      assert.equal(request?.body.stream, true);
      assert.deepEqual(request?.body.stream_options, { include_usage: true });
    });

    it('a cancel aborts the model request, and nothing is written after it', async () => {
      const prompt = `cancel on ${backend}`;
      const tokens = words('c', 300);
      const id = await submit(prompt, () => ({ tokens, tokenDelayMs: 20 }));
      await eventually(async () => (await waitless.get(id))?.output, 'the first tokens in the output');

      await waitless.cancel(id);
      // 300 tokens 20 ms apart take 6 s: a request seen aborted with tokens still unsent was cut
      // by the cancel, not ended by the stream running out.
      const request = await eventually(() => requestsFor(prompt)[0]?.abortedAt !== undefined && requestsFor(prompt)[0], 'the fake sees the request aborted', 15_000);
      assert.ok(request.tokensSent < tokens.length, 'the stream stopped part-way');

      const reason = await eventually(() => thrown.get(id), 'streamChat rejected');
      assert.ok(reason instanceof JobCancelledError, `rejects with the signal's reason, got ${String(reason)}`);
      const job = await finished(waitless, id);
      assert.equal(job.status, 'cancelled');
      assert.ok(tokens.slice(0, request.tokensSent).join('').startsWith(job.output), 'the output holds only tokens the fake sent');
      const events = await waitless.events(id);
      const cancelled = events.find((e) => e.type === 'status' && e.data.status === 'cancelled')!;
      assert.ok(!events.some((e) => e.type === 'output' && e.seq > cancelled.seq), 'no output after the cancel');
      assert.equal(requestsFor(prompt).length, 1, 'not asked again');
      assert.equal(job.usage?.totalTokens ?? 0, 0, 'a broken stream reports no usage, and none is made up');
    });

    it('resumes a stream that broke: the retry sends the partial text and asks to continue; text = checkpoint + continuation', async () => {
      const prompt = `crash on ${backend}`;
      const tokens = words('p', 30);
      const continuation = ['and ', 'then ', 'the ', 'end.'];
      const id = await submit(prompt, (resuming) => (resuming ? { tokens: continuation, tokenDelayMs: 15 } : { tokens, tokenDelayMs: 15, failAfter: 8 }));

      const job = await finished(waitless, id);
      assert.equal(job.status, 'completed', JSON.stringify(job.error));
      assert.equal(job.attempt, 2);
      const [first, second, ...more] = requestsFor(prompt);
      assert.equal(more.length, 0);
      assert.ok(first?.failedAt !== undefined && first.tokensSent === 8, 'the first stream broke after 8 tokens');

      const partial = tokens.slice(0, 8).join('');
      assert.deepEqual(second?.body.messages, [
        { role: 'user', content: prompt },
        { role: 'assistant', content: partial },
        { role: 'user', content: DEFAULT_CONTINUE_PROMPT },
      ]);
      const result = job.result as StreamChatResult;
      assert.equal(result.text, partial + continuation.join(''), 'the checkpoint, then the continuation, nothing twice');
      assert.equal(result.usage?.completionTokens, 4);
      assert.equal(job.usage?.completionTokens, 4, 'only the continuation reported usage');

      // The second attempt's output starts afresh, with the checkpointed text at once.
      assert.equal(job.output, result.text);
      const events = await waitless.events(id);
      const lastRunning = events.findLast((e) => e.type === 'status' && e.data.status === 'running')!;
      const firstOutput = events.find((e) => e.type === 'output' && e.seq > lastRunning.seq);
      assert.ok(String(firstOutput?.data.text).startsWith(partial), `the retry's output opens with the checkpoint: ${String(firstOutput?.data.text)}`);
      assert.ok(events.some((e) => e.type === 'status' && e.data.status === 'queued' && e.data.reason === 'retry'), 'retried by the job policy');
    });

    it('a worker lost mid-stream: the next owner resumes from the last periodic checkpoint', async () => {
      const prompt = `lost worker on ${backend}`;
      const tokens = words('l', 60);
      const continuation = ['to ', 'the ', 'end.'];
      const id = await submit(prompt, (resuming) => (resuming ? { tokens: continuation, tokenDelayMs: 10 } : { tokens, tokenDelayMs: 25 }), {}, 'chat-taken');
      // Worker A streams, then its heartbeat hangs (a paused process): its lease runs out, its
      // handler is aborted, and it can save nothing more. Worker B takes the job over.
      const stalled = deferred();
      const a = waitless.startWorker({ names: ['chat-taken'], lease: 600, pollInterval: 50, debugPoints: { beforeHeartbeat: () => stalled.promise } });
      await eventually(async () => (await waitless.get(id))?.output, 'A streams');
      const b = waitless.startWorker({ names: ['chat-taken'], lease: 5000, pollInterval: 50 });
      try {
        const job = await finished(waitless, id);
        assert.equal(job.status, 'completed', JSON.stringify(job.error));
        assert.equal(job.attempt, 2);
        const [first, second, ...more] = requestsFor(prompt);
        assert.equal(more.length, 0);
        assert.ok(first?.abortedAt !== undefined, 'A aborted its request when it lost the job');
        const reason = await eventually(() => thrown.get(id), 'A rejected');
        assert.ok(reason instanceof LeaseLostError, `A's call rejects with its signal's reason, got ${String(reason)}`);

        // What B resumed from: a checkpoint A saved while streaming, on a token boundary.
        const resumedFrom = second?.body.messages[1];
        assert.equal(resumedFrom?.role, 'assistant');
        const partial = String(resumedFrom?.content);
        const k = tokens.findIndex((_, i) => tokens.slice(0, i + 1).join('') === partial) + 1;
        assert.ok(k >= 1 && k <= first.tokensSent, `resumed from ${k} of the ${first.tokensSent} tokens A got`);
        const result = job.result as StreamChatResult;
        assert.equal(result.text, partial + continuation.join(''));
        assert.equal(job.output, result.text);
      } finally {
        stalled.resolve();
        await Promise.all([a.stop(), b.stop()]);
      }
    });

    it('a finished call is not made again when the job is retried after it', async () => {
      const prompt = `once on ${backend}`;
      const tokens = words('o', 12);
      const id = await submit(prompt, () => ({ tokens, tokenDelayMs: 5 }), { failAfterModelOnce: true });

      const job = await finished(waitless, id);
      assert.equal(job.status, 'completed', JSON.stringify(job.error));
      assert.equal(job.attempt, 2, 'the handler failed once after the call');
      assert.equal(requestsFor(prompt).length, 1, 'the model was asked once');
      const result = job.result as StreamChatResult;
      assert.equal(result.text, tokens.join(''));
      assert.equal(result.finishReason, 'stop');
      assert.deepEqual(usageTotals(job), { promptTokens: 3, completionTokens: 12, totalTokens: 15 }, 'usage counted once');
      assert.equal(job.output, result.text, 'the recorded text is shown again in the retry');
    });

    it('the demo job streams its summary from the model when an endpoint is configured', async () => {
      const document = `Quarterly security review of the payment service, on ${backend}`;
      const tokens = ['The ', 'review ', 'finds ', 'no ', 'open ', 'risk.'];
      plans.set(document, () => ({ tokens, tokenDelayMs: 5 }));
      const saved = { ...process.env };
      process.env.WAITLESS_DEMO_LLM_BASE_URL = fake.baseURL;
      process.env.WAITLESS_DEMO_LLM_MODEL = 'demo-model';
      process.env.WAITLESS_DEMO_LLM_API_KEY = 'demo-key';
      try {
        const { job: submitted } = await waitless.submit('analyze-document', { text: document, seconds: 600 });
        const job = await finished(waitless, submitted.id);
        assert.equal(job.status, 'completed', JSON.stringify(job.error));
        assert.deepEqual(job.result, { summary: tokens.join(''), words: document.split(' ').length });
        assert.equal(job.output, tokens.join(''));
        assert.deepEqual(job.steps?.map((s) => [s.name, s.status]), [['summary', 'completed']]);
        assert.equal(job.usage?.byModel['demo-model-fake']?.completionTokens, tokens.length);
        const [request] = requestsFor(document);
        assert.equal(request?.body.model, 'demo-model');
        assert.equal(request?.body.messages[0]?.role, 'system');
      } finally {
        for (const key of ['WAITLESS_DEMO_LLM_BASE_URL', 'WAITLESS_DEMO_LLM_MODEL', 'WAITLESS_DEMO_LLM_API_KEY']) {
          if (saved[key] === undefined) delete process.env[key];
          else process.env[key] = saved[key];
        }
      }
    });
  });
}
