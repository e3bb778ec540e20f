/**
 * OpenTelemetry traces across processes: this process submits (over HTTP and as a library
 * call), a real `waitless worker` process (with an SDK preloaded, as an application registers
 * one) runs the job — a step, a chat completion streamed from a fake OpenAI-compatible server on
 * loopback, a webhook to a real receiver on loopback — and writes its finished spans to a file.
 * One trace must run from the submit through every attempt, step, model call and webhook attempt.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { z } from 'zod';
import { createHttpHandler } from '../src/http/app.ts';
import { defineJob } from '../src/job/definition.ts';
import { internals } from '../src/internals.ts';
import { openEngine, POSTGRES_URL, startServer } from './helpers.ts';
import { startFakeOpenAI } from './fixtures/fake-openai.ts';
import { type SpanRecord, toSpanRecord } from './fixtures/span-record.ts';
import { OPENAI_URL_ENV, tracedSummary } from './fixtures/tracing-jobs.ts';
import { killAll, WorkerProcess, within } from './worker-process.ts';

// This process's SDK, as an application registers one: every span it ends lands in memory.
const exporter = new InMemorySpanExporter();
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
trace.setGlobalTracerProvider(new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] }));
const tracer = trace.getTracer('tracing-test');

const localSpans = (): SpanRecord[] => exporter.getFinishedSpans().map(toSpanRecord);

/** A webhook receiver on loopback that keeps each request's headers and parsed body. */
async function startReceiver(): Promise<{ url: string; received: Array<{ url: string; headers: IncomingHttpHeaders; body: { data?: { id?: string } } }>; close(): Promise<void> }> {
  const received: Array<{ url: string; headers: IncomingHttpHeaders; body: { data?: { id?: string } } }> = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received.push({ url: req.url ?? '', headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as { data?: { id?: string } } });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Polls until `check` answers something, at most `ms`. */
async function eventually<T>(check: () => T | undefined, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms}ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * A `waitless worker` process with the test's OpenTelemetry SDK preloaded, writing its finished
 * spans to a file of its own; ready, and registered to be killed when the test ends.
 */
async function startTracedWorker(
  t: { after: (fn: () => unknown) => void },
  schema: string,
  llmUrl: string,
  extra: { args?: string[]; env?: Record<string, string> } = {},
): Promise<{ worker: WorkerProcess; spansFile: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'waitless-spans-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const spansFile = join(dir, 'spans.jsonl');
  const preload = pathToFileURL(new URL('./fixtures/otel-export-to-file.ts', import.meta.url).pathname).href;
  const worker = new WorkerProcess({
    jobs: 'test/fixtures/tracing-jobs.ts',
    database: POSTGRES_URL,
    schema,
    args: [...(extra.args ?? []), '--poll-interval', '200ms'],
    env: { NODE_OPTIONS: `--import=${preload}`, WAITLESS_TEST_SPANS_FILE: spansFile, [OPENAI_URL_ENV]: llmUrl, ...extra.env },
  });
  // Registered before anything awaits it, so a failing test never leaves it running.
  t.after(() => killAll([worker]));
  await within(worker.ready, 20_000, 'the worker process to start');
  return { worker, spansFile };
}

const only = (spans: SpanRecord[], predicate: (span: SpanRecord) => boolean, what: string): SpanRecord => {
  const found = spans.filter(predicate);
  assert.equal(found.length, 1, `exactly one ${what}, got ${found.length}: ${JSON.stringify(spans.map((s) => s.name))}`);
  return found[0]!;
};

test('one trace runs from a submit in this process through the worker process: attempts, steps, the model call and the webhook', async (t) => {
  const llm = await startFakeOpenAI({ tokenDelayMs: 1 });
  t.after(() => llm.close());
  const receiver = await startReceiver();
  t.after(() => receiver.close());
  const engine = await openEngine('postgres', { jobs: [tracedSummary], webhooks: { ssrf: { allow: ['127.0.0.1'] } } });
  t.after(() => engine.close());
  const server = await startServer(engine.waitless);
  t.after(() => server.close());
  const { worker, spansFile } = await startTracedWorker(t, engine.schema, llm.baseURL, { args: ['--webhook-allow', '127.0.0.1'] });

  // Over HTTP, from a caller that sends its own trace context (the server instruments no HTTP).
  const callerTrace = 'a1'.repeat(16);
  const callerSpan = 'b2'.repeat(8);
  const response = await fetch(`${server.url}/v1/jobs/traced-summary`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', traceparent: `00-${callerTrace}-${callerSpan}-01` },
    body: JSON.stringify({ input: { text: 'over http' }, webhook: { url: `${receiver.url}/hook?token=s3cret` } }),
  });
  assert.equal(response.status, 202);
  const httpJob = ((await response.json()) as { id: string }).id;

  // As a library call inside the application's own span; its first attempt fails, the retry completes.
  const libraryJob = await tracer.startActiveSpan('application request', async (span) => {
    try {
      const { job } = await engine.waitless.submit(tracedSummary, { text: 'as a library', failFirstAttempt: true }, { webhook: { url: `${receiver.url}/hook?token=s3cret` } });
      return job.id;
    } finally {
      span.end();
    }
  });
  const applicationSpan = only(localSpans(), (s) => s.name === 'application request', 'application span');

  await within(engine.waitless.result(httpJob), 15_000, 'the HTTP job to complete');
  await within(engine.waitless.result(libraryJob), 15_000, 'the library job to complete');
  await eventually(() => (receiver.received.length >= 2 ? true : undefined), 10_000, 'both webhooks to arrive');
  // The worker writes a span when it ends: the webhook span ends after the receiver answered.
  const remote = await eventually(
    () => {
      if (!existsSync(spansFile)) return undefined;
      const spans = readFileSync(spansFile, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as SpanRecord);
      return spans.filter((s) => s.name === 'POST').length >= 2 ? spans : undefined;
    },
    10_000,
    'the worker process to export both webhook spans',
  );
  assert.ok(remote.every((s) => s.pid === worker.pid));

  const local = localSpans();
  for (const [jobId, attempts] of [[httpJob, 1], [libraryJob, 2]] as const) {
    const submit = only(local, (s) => s.name === 'send traced-summary' && s.attributes['messaging.message.id'] === jobId, `submit span of ${jobId}`);
    assert.equal(submit.kind, SpanKind.PRODUCER);
    assert.deepEqual(
      [submit.attributes['messaging.system'], submit.attributes['messaging.operation.type'], submit.attributes['messaging.destination.name']],
      ['waitless', 'send', 'traced-summary'],
    );
    const traceId = submit.traceId;
    const inTrace = remote.filter((s) => s.traceId === traceId);

    // Every attempt is a CONSUMER span, child of the submit and linked to it.
    const processes = inTrace.filter((s) => s.name === 'process traced-summary');
    assert.equal(processes.length, attempts, `one process span per attempt of ${jobId}`);
    for (const attempt of processes) {
      assert.equal(attempt.kind, SpanKind.CONSUMER);
      assert.equal(attempt.parentSpanId, submit.spanId);
      assert.deepEqual(attempt.links, [{ traceId, spanId: submit.spanId }]);
      assert.equal(attempt.attributes['messaging.operation.type'], 'process');
      assert.equal(attempt.attributes['messaging.message.id'], jobId);
    }
    const last = processes.find((s) => s.attributes['waitless.job.attempt'] === attempts)!;
    assert.equal(last.attributes['waitless.job.outcome'], 'completed');
    assert.equal(last.status.code, SpanStatusCode.UNSET);

    // Steps are children of their attempt; the model call is a child of its step.
    const steps = inTrace.filter((s) => s.name === 'step prepare' || s.name === 'step llm');
    assert.equal(steps.length, 2 * attempts);
    for (const step of steps) assert.ok(processes.some((p) => p.spanId === step.parentSpanId), `${step.name} is a child of a process span`);
    const chat = only(inTrace, (s) => s.name === 'chat test-model', `chat span of ${jobId}`);
    const llmStep = steps.find((s) => s.spanId === chat.parentSpanId);
    assert.equal(llmStep?.name, 'step llm');
    assert.equal(chat.kind, SpanKind.CLIENT);
    assert.equal(chat.attributes['gen_ai.operation.name'], 'chat');
    assert.equal(chat.attributes['gen_ai.request.model'], 'test-model');
    assert.equal(chat.attributes['gen_ai.response.model'], 'test-model-fake');
    assert.equal(chat.attributes['gen_ai.usage.output_tokens'], 10);
    assert.ok((chat.attributes['gen_ai.usage.input_tokens'] as number) > 0);
    assert.ok((chat.attributes['gen_ai.response.time_to_first_chunk'] as number) > 0);
    assert.equal(chat.attributes['server.address'], '127.0.0.1');

    // The webhook attempt: a CLIENT span in the job's trace, its URL's query redacted, its context sent along.
    const post = only(inTrace, (s) => s.name === 'POST', `webhook span of ${jobId}`);
    assert.equal(post.kind, SpanKind.CLIENT);
    assert.equal(post.parentSpanId, submit.spanId);
    assert.equal(post.attributes['http.request.method'], 'POST');
    assert.equal(post.attributes['http.response.status_code'], 204);
    assert.equal(post.attributes['server.address'], '127.0.0.1');
    assert.equal(post.attributes['url.full'], `${receiver.url}/hook?token=REDACTED`);
    const delivered = receiver.received.find((r) => r.body.data?.id === jobId);
    assert.equal(delivered?.headers.traceparent, `00-${traceId}-${post.spanId}-01`);
  }

  // The HTTP submit continues the caller's trace; the library submit, the application's span.
  const httpSubmit = only(local, (s) => s.attributes['messaging.message.id'] === httpJob, 'HTTP submit');
  assert.deepEqual([httpSubmit.traceId, httpSubmit.parentSpanId], [callerTrace, callerSpan]);
  const librarySubmit = only(local, (s) => s.attributes['messaging.message.id'] === libraryJob, 'library submit');
  assert.deepEqual([librarySubmit.traceId, librarySubmit.parentSpanId], [applicationSpan.traceId, applicationSpan.spanId]);

  // The failed first attempt: an error status with the exception; its retry replayed both steps.
  const first = only(remote, (s) => s.name === 'process traced-summary' && s.traceId === librarySubmit.traceId && s.attributes['waitless.job.attempt'] === 1, 'first attempt');
  assert.equal(first.status.code, SpanStatusCode.ERROR);
  assert.equal(first.status.message, 'the first attempt fails on purpose');
  assert.equal(first.attributes['waitless.job.outcome'], 'retried');
  assert.deepEqual(first.events, ['exception']);
  const replayed = remote.filter((s) => s.traceId === librarySubmit.traceId && s.name.startsWith('step ') && s.attributes['waitless.step.replayed'] === true);
  assert.deepEqual(replayed.map((s) => s.name).sort(), ['step llm', 'step prepare']);
  assert.equal(llm.requests.length, 2, 'one model request per job: the retry paid for nothing again');

  assert.equal(await worker.stop(), 0);
});

test('in one process: the worker continues the submitter trace, a routed submit is the HTTP server span child, an untraced submit stores no trace context', async (t) => {
  const llm = await startFakeOpenAI({ tokenDelayMs: 1 });
  t.after(() => llm.close());
  process.env[OPENAI_URL_ENV] = llm.baseURL;
  const engine = await openEngine('postgres', { jobs: [tracedSummary] });
  t.after(() => engine.close());
  engine.waitless.startWorker({ pollInterval: '100ms' });
  exporter.reset();

  const { job } = await engine.waitless.submit(tracedSummary, { text: 'in process' });
  await within(engine.waitless.result(job.id), 10_000, 'the job to complete');
  const { driver } = internals(engine.waitless);
  const [row] = await driver.query<{ trace_context: { traceparent: string } | null }>({ text: 'SELECT trace_context FROM jobs WHERE id = $1', values: [job.id] });
  const submit = await eventually(() => localSpans().find((s) => s.name === 'send traced-summary'), 5000, 'the submit span');
  assert.equal(row?.trace_context?.traceparent, `00-${submit.traceId}-${submit.spanId}-01`);
  const attempt = await eventually(() => localSpans().find((s) => s.name === 'process traced-summary'), 5000, 'the process span');
  assert.deepEqual([attempt.traceId, attempt.parentSpanId], [submit.traceId, submit.spanId]);

  // Behind HTTP instrumentation (a server span active around the handler, as it makes one): the
  // submit is that span's child, and the request's traceparent is left to the instrumentation.
  const handler = createHttpHandler(engine.waitless, { auth: { mode: 'none', tenant: 'default' } });
  const serverSpanId = await tracer.startActiveSpan('POST /v1/jobs/:name', { kind: SpanKind.SERVER }, async (span) => {
    try {
      const answer = await handler(
        new Request('http://127.0.0.1/v1/jobs/traced-summary', {
          method: 'POST',
          headers: { 'content-type': 'application/json', traceparent: `00-${'c3'.repeat(16)}-${'d4'.repeat(8)}-01` },
          body: JSON.stringify({ input: { text: 'behind instrumentation' } }),
        }),
      );
      assert.equal(answer.status, 202);
      return span.spanContext().spanId;
    } finally {
      span.end();
    }
  });
  const server = only(localSpans(), (s) => s.spanId === serverSpanId, 'server span');
  const routed = only(localSpans(), (s) => s.name === 'send traced-summary' && s.parentSpanId === serverSpanId, 'submit under the server span');
  assert.equal(routed.traceId, server.traceId);

  // With tracing off (the API's no-op tracer, as when no SDK is registered), nothing is stored.
  trace.disable();
  t.after(() => trace.setGlobalTracerProvider(new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] })));
  const untraced = await engine.waitless.submit(tracedSummary, { text: 'untraced' });
  const [bare] = await driver.query<{ trace_context: unknown }>({ text: 'SELECT trace_context FROM jobs WHERE id = $1', values: [untraced.job.id] });
  assert.equal(bare?.trace_context, null);
  await within(engine.waitless.result(untraced.job.id), 10_000, 'the untraced job to complete');
});

after(() => exporter.shutdown());

test('a worker stopped by SIGTERM sends the spans its SDK still held before it exits', async (t) => {
  const llm = await startFakeOpenAI({ tokenDelayMs: 1 });
  t.after(() => llm.close());
  const engine = await openEngine('postgres', { jobs: [tracedSummary] });
  t.after(() => engine.close());
  // Spans are held in a batch the SDK would send only an hour later.
  const { worker, spansFile } = await startTracedWorker(t, engine.schema, llm.baseURL, { env: { WAITLESS_TEST_SPANS_BATCH: '1' } });
  const { job } = await engine.waitless.submit(tracedSummary, { text: 'last job before shutdown' });
  await within(engine.waitless.result(job.id), 15_000, 'the job to complete');
  assert.equal(existsSync(spansFile), false, 'nothing sent yet: the batch holds the spans');

  worker.signal('SIGTERM');
  assert.deepEqual(await within(worker.exited, 20_000, 'the worker to exit'), { code: 0, signal: null });
  const spans = readFileSync(spansFile, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as SpanRecord);
  const processSpan = only(spans, (s) => s.name === 'process traced-summary', 'process span');
  assert.equal(processSpan.attributes['messaging.message.id'], job.id);
});

test("a worker's claims and rounds of writes run outside the trace of the job that set them going", async (t) => {
  const quick = defineJob({
    name: 'quick-traced',
    input: z.object({ n: z.number() }),
    run: async ({ n }, ctx) => {
      ctx.write(`chunk ${n}`);
      await ctx.flush();
      return { n };
    },
  });
  const engine = await openEngine('postgres', { jobs: [quick] });
  t.after(() => engine.close());
  // What auto-instrumentation (pg, http) would parent its spans on: the active span when a claim or a round of writes is sent.
  const { driver } = internals(engine.waitless);
  const query = driver.query.bind(driver);
  const seen: Array<{ statement: string; span: string | undefined }> = [];
  driver.query = ((sql: Parameters<typeof driver.query>[0]) => {
    const statement = sql.text.includes('lease_token = gen_random_uuid()') ? 'claim' : sql.text.includes('last_round_id = p.round') ? 'writes' : undefined;
    if (statement) seen.push({ statement, span: trace.getActiveSpan()?.spanContext().spanId });
    return query(sql);
  });
  // More jobs than the worker runs at once: each one finishing starts the next claim from inside its own run.
  const ids = [];
  for (let n = 0; n < 4; n++) ids.push((await engine.waitless.submit(quick, { n })).job.id);
  const worker = engine.waitless.startWorker({ concurrency: 1, pollInterval: '1h' });
  t.after(() => worker.stop());
  for (const id of ids) await within(engine.waitless.result(id), 10_000, 'the job to complete');
  assert.ok(seen.filter((s) => s.statement === 'claim').length >= 4, `a claim a job at least: ${JSON.stringify(seen)}`);
  assert.ok(seen.some((s) => s.statement === 'writes'), 'rounds of writes were sent');
  assert.deepEqual(
    seen.filter((s) => s.span !== undefined),
    [],
    'no claim and no round of writes ran inside a job span',
  );
});
