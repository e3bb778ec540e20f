/**
 * The README says what is true. Its TypeScript, TSX and JavaScript snippets compile under the
 * project's strict settings, as written: each is written to a file of its own, after
 * declarations of the names it leaves to the reader (your model, your billing, your app), and
 * `tsc` checks them against the package's source. A snippet with no entry here fails the test. Its sample of an SSE stream is the one the demo job sends.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readSse } from '../src/contract/sse.ts';
import { analyzeDocument } from '../src/demo/analyze-document.ts';
import { createWaitless } from '../src/engine.ts';
import { silentLogger, startServer } from './helpers.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

/** A README snippet that `tsc` checks, and what it needs around it. */
interface Checked {
  /** A string only this snippet contains. */
  marker: string;
  /** Declarations of the names it leaves to the reader (your model, your billing, your app). */
  prelude?: string;
  /** Statements after it: checks of what it states against the package's own types. */
  postlude?: string;
  /** Where it is written, when other snippets import it or its path matters; default `snippet-N.<lang>`. */
  file?: string;
  /** Checked as a Next.js app checks it: modules resolved as a bundler does, without extensions. */
  next?: true;
}

/** Every ```ts, ```tsx and ```js block of the README is one of these (the test fails on one that is not). */
const CHECKED: Checked[] = [
  {
    // Retention: a definition's own rule, the engine's, per tenant, and a dry run.
    marker: "tenants: { acme: { default: '365d' } }",
    postlude: "export const counted: number = deleted.jobs + deleted.job_events + deleted.webhook_deliveries;",
  },
  {
    // A job, as every endpoint shows it: exactly the client's JobView, no more, no less.
    marker: 'interface JobView {',
    postlude: [
      "type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;",
      "export const same: Same<JobView, import('waitless/client').JobView> = true;",
    ].join('\n'),
  },
  {
    marker: "import { WaitlessError } from 'waitless';",
    prelude: "declare const waitless: import('waitless').Waitless;\ndeclare const url: string;",
  },
  {
    // The other snippets import it as ./jobs.ts (../../../jobs from the Next route).
    marker: "name: 'summarize'",
    file: 'jobs.ts',
    prelude: 'declare function streamFromYourModel(text: string, options: { signal: AbortSignal }): AsyncIterable<string>;',
  },
  {
    marker: "name: 'report'",
    prelude: [
      "declare const waitless: import('waitless').Waitless;",
      'declare function currentVersion(docId: string): Promise<number>;',
      'declare function fetchDocument(id: string): Promise<string>;',
      'declare const billing: { charge(options: { idempotencyKey: string }): Promise<{ id: string }> };',
      'declare function extractFacts(doc: string, options: { signal: AbortSignal }): Promise<string[]>;',
      'declare function scanRisks(doc: string, options: { signal: AbortSignal }): Promise<string[]>;',
      "declare const openai: import('openai').OpenAI;",
      "declare function prompt(facts: string[], risks: string[]): import('openai/resources/chat/completions').ChatCompletionMessageParam[];",
    ].join('\n'),
  },
  { marker: "import { createWaitless, createHttpHandler } from 'waitless';", prelude: 'declare const url: string;' },
  { marker: 'new NodeSDK({' },
  { marker: "app.use('/jobs-api', createNodeListener(handler))", prelude: 'declare const handler: (request: Request) => Promise<Response>;' },
  { marker: 'scope.removeAllContentTypeParsers()', prelude: 'declare const handler: (request: Request) => Promise<Response>;' },
  { marker: 'serverExternalPackages', file: 'next.config.mjs', next: true },
  { marker: '// app/jobs-api/[...path]/route.ts', file: 'app/jobs-api/[...path]/route.ts', next: true },
  { marker: "import { WaitlessClient, verifyWebhook } from 'waitless/client';", prelude: 'declare const repo: string;' },
  {
    marker: 'const secrets = await client.webhookSecrets();',
    prelude: [
      "import { verifyWebhook } from 'waitless/client';",
      "declare const client: import('waitless/client').WaitlessClient;",
      "declare const req: import('node:http').IncomingMessage;",
      'declare const rawBody: Buffer;',
    ].join('\n'),
  },
  {
    marker: 'createReconciler({',
    prelude: [
      "declare const client: import('waitless/client').WaitlessClient;",
      'declare const job: { id: string };',
      'declare const planId: string;',
      'declare function isStillWanted(context: unknown): boolean;',
      'declare function notifyUser(message: string | undefined): void;',
      'declare function publish(tracked: unknown): void;',
      "declare const app: import('hono').Hono;",
    ].join('\n'),
  },
  {
    marker: "import { useJob, useSubmitJob } from 'waitless/react';",
    prelude: [
      "import type { ReactNode } from 'react';",
      "import type { SubmittedJob } from 'waitless/react';",
      'interface Company { id: string; name: string }',
      'interface ScanInput { answers: Record<string, string> }',
      'interface Report { score: number; text: string }',
      'declare function Report(props: { value: Report }): ReactNode;',
      'declare function Estimate(props: { value: unknown }): ReactNode;',
      'declare function Progress(props: { value: unknown; text: string; onCancel: () => unknown }): ReactNode;',
      'declare function answersOf(company: Company): ScanInput;',
      "declare function postToMyBackend(input: ScanInput, context: { idempotencyKey: string; signal: AbortSignal }): Promise<SubmittedJob<ScanInput, Report>>;",
    ].join('\n'),
  },
];

let dir = '';
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Runs `tsc -p project` in `cwd`; its exit code and what it printed. */
function tsc(project: string, cwd: string): Promise<{ code: number | null; output: string }> {
  const bin = join(ROOT, 'node_modules/typescript/bin/tsc');
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, '-p', project], { cwd, timeout: 100_000, killSignal: 'SIGKILL' }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, output: stdout + stderr }),
    );
  });
}

it('the README snippets typecheck with tsc --strict', { timeout: 120_000 }, async () => {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/^( *)```(ts|tsx|js)\n([\s\S]*?)^ *```$/gm)].map(([, indent, lang, body]) => ({
    lang: lang!,
    text: body!
      .split('\n')
      .map((line) => line.slice(indent!.length))
      .join('\n'),
  }));
  const unchecked = blocks.filter(({ text }) => !CHECKED.some(({ marker }) => text.includes(marker)));
  assert.deepEqual(
    unchecked.map(({ lang, text }) => `${lang}: ${text.split('\n')[0]}`),
    [],
    'every ts, tsx and js block of the README has an entry in CHECKED (a marker, and the names it leaves to the reader)',
  );
  // Inside the clone, so that 'zod', 'hono', 'express'… resolve from its node_modules.
  dir = await mkdtemp(join(ROOT, '.waitless-readme-'));
  const files = { node: [] as string[], next: [] as string[] };
  for (const [index, { marker, prelude = '', postlude = '', file, next }] of CHECKED.entries()) {
    const matching = blocks.filter(({ text }) => text.includes(marker));
    assert.equal(matching.length, 1, `one README block contains ${marker}`);
    const { lang, text } = matching[0]!;
    const path = file ?? `snippet-${index + 1}.${lang}`;
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), [prelude, text, postlude].filter(Boolean).join('\n'));
    (next ? files.next : files.node).push(path);
  }
  // 'waitless' and its subpaths: the package's own source, as the bin maps them in a clone.
  const paths = { waitless: ['../src/index.ts'], 'waitless/*': ['../src/*/index.ts'] };
  await writeFile(
    join(dir, 'tsconfig.json'),
    JSON.stringify({ extends: '../tsconfig.json', compilerOptions: { noEmit: true, checkJs: true, paths }, include: files.node }),
  );
  // A Next.js app resolves modules as a bundler does: `import * as jobs from '../../../jobs'`.
  await writeFile(
    join(dir, 'tsconfig.next.json'),
    JSON.stringify({
      extends: '../tsconfig.json',
      compilerOptions: { noEmit: true, checkJs: true, module: 'esnext', moduleResolution: 'bundler', paths },
      include: files.next,
    }),
  );
  for (const project of ['tsconfig.json', 'tsconfig.next.json']) {
    const result = await tsc(join(dir, project), dir);
    assert.equal(result.code, 0, `tsc (${project}) found errors in the README snippets:\n${result.output}`);
  }
});

interface SseBlock {
  id: string;
  event: string;
  data: Record<string, unknown>;
}

/** The messages of an SSE text, read by the project's one SSE reader. */
async function parseSse(text: string): Promise<SseBlock[]> {
  const blocks: SseBlock[] = [];
  for await (const message of readSse(new Response(text).body!)) {
    blocks.push({ id: message.id!, event: message.event!, data: JSON.parse(message.data) as Record<string, unknown> });
  }
  return blocks;
}

/** Whether `real` has the sample's shape: the same keys in the same order, the same values where the sample shows one ("…" stands for any). */
function sameShape(sample: unknown, real: unknown, path = '(event)'): void {
  if (sample === '…') return;
  if (sample !== null && typeof sample === 'object') {
    assert.ok(real !== null && typeof real === 'object', `${path} is an object`);
    assert.deepEqual(Object.keys(real), Object.keys(sample), `${path} has the README's keys, in its order`);
    for (const [key, value] of Object.entries(sample)) sameShape(value, (real as Record<string, unknown>)[key], `${path}.${key}`);
    return;
  }
  assert.deepEqual(real, sample, `${path} as the README shows it`);
}

it("the README's SSE sample is what the demo job's stream sends", { timeout: 120_000 }, async () => {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('curl -N http://127.0.0.1:3000/v1/jobs/$JOB/events');
  // The sample's last event has no blank line after it in the README; a stream's always does.
  const sample = await parseSse(`${/```text\n([\s\S]*?)```/.exec(readme.slice(start))![1]!.replace(/^…$/m, '')}\n\n`);
  assert.ok(sample.length >= 5, 'the README shows a sample stream');

  const waitless = await createWaitless({ jobs: [analyzeDocument], database: 'memory://', logger: silentLogger });
  const server = await startServer(waitless);
  try {
    waitless.startWorker();
    const submitted = await fetch(`${server.url}/v1/jobs/analyze-document`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input: { text: 'Quarterly security review of the payment service', seconds: 2 } }),
    });
    const { id } = (await submitted.json()) as { id: string };
    // The stream ends after the terminal event.
    const real = await parseSse(await (await fetch(`${server.url}/v1/jobs/${id}/events`, { signal: AbortSignal.timeout(60_000) })).text());
    const last = sample.at(-1)!;
    // Which number an event gets depends on how the job's writes were grouped: the sample's
    // events are matched in order, each to the next real event of its type, and the last to the
    // terminal one.
    let from = 0;
    for (const event of sample) {
      const index = event === last ? real.length - 1 : real.findIndex((r, i) => i >= from && r.event === event.event);
      const match = real[index];
      assert.ok(match && index >= from, `the stream has a ${event.event} event after event ${real[from - 1]?.id ?? 0}, as the sample shows`);
      from = index + 1;
      assert.equal(match.event, event.event, `the sample's event ${event.id} is ${event.event}`);
      // How much text one output event carries depends on timing: its keys are the shape.
      if (event.event === 'output') sameShape({ ...event.data, seq: '…', data: { text: '…' } }, match.data);
      else sameShape({ ...event.data, seq: '…' }, match.data);
    }
    assert.deepEqual(real.map((r) => Number(r.id)), real.map((_, i) => i + 1), 'the stream numbers its events 1, 2, 3… with none missing');
  } finally {
    await server.close();
    await waitless.close();
  }
});
