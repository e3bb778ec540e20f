// The dashboard in headless Chromium against a real server on a real database: live list,
// job detail with its event timeline, recover, cancel, redeliver, and the sign-in of serve mode.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { Browser, Page } from 'playwright-core';
import { z } from 'zod';
import { defineJob } from '../../src/job/definition.ts';
import type { Job } from '../../src/job/model.ts';
import { createHttpApp } from '../../src/http/app.ts';
import type { Worker } from '../../src/worker/worker.ts';
import { BACKENDS, eventually, finished, openEngine, startServer, type TestEngine, type TestServer } from '../helpers.ts';
import { launchChromium, screenshot } from './chromium.ts';

// ------------------------------------------------------------------------------ jobs

const STAGES = ['reading', 'extracting', 'analyzing', 'summarizing'];
const SENTENCES = [
  'The document describes the payment service.',
  'Three findings concern token storage.',
  'Key rotation is manual and overdue.',
  'Audit logs are kept for 30 days.',
  'Two endpoints lack rate limits.',
  'Overall risk is moderate.',
];

/** Reports progress and writes a sentence every `delayMs`, like a model streaming an answer. */
const analyzeDocument = defineJob({
  name: 'analyze-document',
  input: z.object({ text: z.string(), steps: z.number().int().min(1).max(100).default(8), delayMs: z.number().int().min(0).max(2000).default(150) }),
  async run({ text, steps, delayMs }, ctx) {
    for (let i = 1; i <= steps; i++) {
      await delay(delayMs, undefined, { signal: ctx.signal });
      const stage = STAGES[Math.min(STAGES.length - 1, Math.floor(((i - 1) / steps) * STAGES.length))];
      await ctx.progress({ percent: Math.round((i / steps) * 100), stage, message: `step ${i} of ${steps}` });
      ctx.write(`${SENTENCES[(i - 1) % SENTENCES.length]} `);
    }
    return { summary: SENTENCES.slice(0, 2).join(' '), words: text.split(/\s+/).length };
  },
});

/** Long-running, with an instant fallback answer; stops when its signal aborts (cancel). */
const generateReport = defineJob({
  name: 'generate-report',
  input: z.object({ quarter: z.string(), steps: z.number().int().default(100), delayMs: z.number().int().default(200) }),
  fallback: ({ quarter }) => ({ title: `Report ${quarter}`, sections: 0, note: 'Full report is being written.' }),
  async run({ quarter, steps, delayMs }, ctx) {
    for (let i = 1; i <= steps; i++) {
      await delay(delayMs, undefined, { signal: ctx.signal });
      await ctx.progress({ percent: Math.round((i / steps) * 100), stage: i < steps / 2 ? 'collecting' : 'writing', message: `section ${i}` });
      ctx.write(`Section ${i}: revenue grew in ${quarter}. `);
    }
    return { title: `Report ${quarter}`, sections: steps, note: 'complete' };
  },
});

/** Fails while its invoice is in `failingInvoices` (one attempt only), succeeds once removed. */
const failingInvoices = new Set<string>();
const extractInvoice = defineJob({
  name: 'extract-invoice',
  input: z.object({ invoice: z.string() }),
  retry: { attempts: 1 },
  async run({ invoice }, ctx) {
    await ctx.progress({ percent: 30, stage: 'ocr', message: `reading ${invoice}` });
    ctx.log.info('OCR started', { invoice });
    ctx.write(`Scanning ${invoice}… `);
    await delay(100, undefined, { signal: ctx.signal });
    if (failingInvoices.has(invoice)) {
      ctx.log.error('OCR provider failed', { status: 503 });
      throw new Error('OCR provider answered 503: model overloaded');
    }
    ctx.log.info('3 line items found');
    await ctx.progress({ percent: 100, stage: 'done' });
    ctx.write('3 line items found.');
    return { invoice, total: 1284.5, currency: 'EUR', lines: 3 };
  },
});

/** Runs past its time budget: ends timed_out. */
const transcribeAudio = defineJob({
  name: 'transcribe-audio',
  input: z.object({ file: z.string() }),
  timeout: '300ms',
  retry: { attempts: 1 },
  async run(_input, ctx) {
    await ctx.progress({ percent: 10, stage: 'uploading' });
    await delay(5000, undefined, { signal: ctx.signal });
    return {};
  },
});

/** No worker runs it here: it stays queued. */
const translateBatch = defineJob({
  name: 'translate-batch',
  input: z.object({ language: z.string() }),
  async run() {
    return {};
  },
});

const MAIN_JOBS = ['analyze-document', 'generate-report', 'transcribe-audio'];

// ------------------------------------------------------------------------------ helpers

interface Received {
  headers: IncomingMessage['headers'];
  body: string;
}

/** A webhook receiver on loopback that answers 200 and records every request. */
async function startReceiver() {
  const received: Received[] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks/plans`,
    /** Requests about one job. */
    forJob: (id: string) => received.filter((r) => r.body.includes(id)),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

type JobView = Job & { links: Record<string, string> };

async function submit(server: TestServer | string, name: string, input: unknown, extra: Record<string, unknown> = {}): Promise<JobView> {
  const base = typeof server === 'string' ? server : server.url;
  const response = await fetch(`${base}/v1/jobs/${name}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input, ...extra }),
  });
  assert.equal(response.status, 202, await response.clone().text());
  return (await response.json()) as JobView;
}

const row = (id: string) => `tr[data-testid="job-row"][data-job-id="${id}"]`;
const detailStatus = (status: string) => `[data-testid="detail-status"][data-status="${status}"]`;

let browser: Browser;

interface Dashboard {
  page: Page;
  close: () => Promise<void>;
}

/**
 * Opens the dashboard in a fresh context (its own sessionStorage) at 1280×800. Uncaught page
 * errors and CSP violations fail the test at close.
 */
async function openDashboard(url: string, options: { waitLive?: boolean } = {}): Promise<Dashboard> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (/Content.Security.Policy/i.test(message.text())) problems.push(`CSP: ${message.text()}`);
  });
  await page.goto(url);
  if (options.waitLive !== false) await page.waitForSelector('[data-testid="connection"][data-state="live"]', { timeout: 30_000 });
  return {
    page,
    async close() {
      await context.close();
      assert.deepEqual(problems, []);
    },
  };
}

/** Waits until the job's row shows a status and a percent that `check` accepts; answers the percent. */
async function waitRow(page: Page, id: string, check: { status: string; above?: number; below?: number }): Promise<number> {
  const handle = await page.waitForFunction(
    ([jobId, status, above, below]) => {
      const tr = document.querySelector<HTMLElement>(`tr[data-job-id="${jobId}"]`);
      if (!tr || tr.dataset.status !== status || tr.dataset.percent === '') return false;
      const percent = Number(tr.dataset.percent);
      return percent > above && percent < below ? percent : false;
    },
    [id, check.status, check.above ?? -1, check.below ?? 101] as const,
    { timeout: 30_000 },
  );
  return (await handle.jsonValue()) as number;
}

async function timelineStatuses(page: Page): Promise<string[]> {
  return page.$$eval('[data-testid="timeline-event"][data-type="status"]', (rows) => rows.map((r) => (r as HTMLElement).dataset.status ?? '?'));
}

async function confirmAction(page: Page, action: 'cancel' | 'recover'): Promise<void> {
  await page.click(`[data-testid="action-${action}"]`);
  await page.waitForSelector('[data-testid="confirm"]:not([hidden])');
  await page.click('[data-testid="confirm-yes"]');
}

// ------------------------------------------------------------------------------ tests

before(async () => {
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
});

for (const [index, backend] of BACKENDS.entries()) {
  describe(`dashboard on ${backend}`, () => {
    let engine: TestEngine;
    let server: TestServer;
    let receiver: Awaited<ReturnType<typeof startReceiver>>;
    let invoiceWorker: Worker;
    /** The job of the redeliver test, shown again in the detail screenshot. */
    let webhookJobId: string | undefined;

    before(async () => {
      receiver = await startReceiver();
      engine = await openEngine(backend, {
        jobs: [analyzeDocument, generateReport, extractInvoice, transcribeAudio, translateBatch],
        webhooks: { retrySchedule: ['100ms', '100ms'], timeout: '500ms', pollInterval: '50ms', ssrf: { allow: ['127.0.0.1'] } },
      });
      engine.waitless.startWorker({ names: MAIN_JOBS, pollInterval: 50, shutdownGrace: '100ms' });
      invoiceWorker = engine.waitless.startWorker({ names: ['extract-invoice'], pollInterval: 50, shutdownGrace: '100ms' });
      server = await startServer(engine.waitless, { dashboard: true });
    });
    after(async () => {
      await server?.close();
      await engine?.close();
      await receiver?.close();
    });

    it('serves the page and its module graph with content types, CSP and no-cache; unknown files, unreachable modules and traversal get a 404 problem', async () => {
      const redirect = await fetch(`${server.url}/dashboard`, { redirect: 'manual' });
      assert.ok([301, 302, 307, 308].includes(redirect.status) || redirect.status === 200, `GET /dashboard answered ${redirect.status}`);
      for (const [path, type] of [
        ['/dashboard/', 'text/html'],
        ['/dashboard/app/main.js', 'text/javascript'],
        ['/dashboard/app/detail.js', 'text/javascript'],
        ['/dashboard/contract/job-events.js', 'text/javascript'],
        ['/dashboard/contract/statuses.js', 'text/javascript'],
        ['/dashboard/vendor/eventsource-parser/index.js', 'text/javascript'],
        ['/dashboard/dashboard.css', 'text/css'],
      ] as const) {
        const response = await fetch(`${server.url}${path}`);
        assert.equal(response.status, 200, path);
        assert.match(response.headers.get('content-type') ?? '', new RegExp(`^${type}`), path);
        assert.equal(response.headers.get('cache-control'), 'no-cache', path);
        assert.match(response.headers.get('content-security-policy') ?? '', /default-src 'self'.*script-src 'self'/, path);
        const body = await response.text();
        assert.doesNotMatch(body, /https?:\/\/(?!www\.w3\.org)/, `${path} loads nothing from another origin`);
        if (path.endsWith('.js')) {
          const specifiers = [...body.matchAll(/^\s*(?:import|export)\b[^;'"]*?from\s*['"]([^'"]+)['"]/gm)].map((m) => m[1]!);
          assert.ok(specifiers.length > 0 || path.includes('statuses'), `${path} imports something`);
          for (const specifier of specifiers) assert.match(specifier, /^\.\.?\/.*\.js$/, `${path}: a relative .js import, not "${specifier}"`);
        }
      }
      for (const path of [
        '/dashboard/nope.js',
        '/dashboard/..%2Fhttp%2Fapp.ts',
        '/dashboard/%2e%2e%2f%2e%2e%2fpackage.json',
        '/dashboard/dashboard.ts',
        '/dashboard/app/../../package.json',
        '/dashboard/app/..%2F..%2Fpackage.json',
        '/dashboard/app/main.ts',
        '/dashboard/app/types.js', // types only: imported by no module
        '/dashboard/contract/submit.js', // a contract module the page does not import
        '/dashboard/contract/../http/app.js',
        '/dashboard/vendor/eventsource-parser/../../../package.json',
        '/dashboard/vendor/zod/index.js',
      ]) {
        const response = await fetch(`${server.url}${path}`);
        assert.equal(response.status, 404, path);
        assert.equal(response.headers.get('content-type'), 'application/problem+json', path);
        await response.body?.cancel();
      }
    });

    it('shows a job submitted after the page opened, its progress moving, until it completes — without a reload', async () => {
      const { page, close } = await openDashboard(`${server.url}/dashboard/`);
      try {
        await page.evaluate(() => {
          (window as unknown as { samePage?: string }).samePage = 'still here';
        });
        const job = await submit(server, 'analyze-document', { text: 'Quarterly security review of the payment service', steps: 10, delayMs: 150 });
        await page.waitForSelector(row(job.id), { timeout: 30_000 });
        assert.equal(await page.locator('tr[data-testid="job-row"]').first().getAttribute('data-job-id'), job.id, 'the new job is at the top');
        const early = await waitRow(page, job.id, { status: 'running', above: 0, below: 60 });
        const later = await waitRow(page, job.id, { status: 'running', above: early });
        assert.ok(later > early);
        assert.notEqual(await page.locator(`${row(job.id)} [data-testid="job-stage"]`).textContent(), '');
        await page.waitForSelector(`${row(job.id)}[data-status="completed"]`, { timeout: 30_000 });
        assert.equal(await page.locator(`${row(job.id)} [data-testid="job-percent"]`).textContent(), '100%');
        assert.equal(await page.locator(`${row(job.id)} [data-testid="job-status"]`).textContent(), 'completed');
        assert.equal(await page.evaluate(() => (window as unknown as { samePage?: string }).samePage), 'still here', 'no reload happened');
        assert.equal(await page.locator(row(job.id)).count(), 1);
      } finally {
        await close();
      }
    });

    it('recovers a failed job: failed → queued (visible) → completed, and the timeline shows the recovery', async () => {
      const invoice = `INV-${backend}-0042`;
      failingInvoices.add(invoice);
      const job = await submit(server, 'extract-invoice', { invoice });
      assert.equal((await finished(engine.waitless, job.id)).status, 'failed');
      // No worker for this job while the page recovers it, so "queued" stays on screen.
      await invoiceWorker.stop();
      const { page, close } = await openDashboard(`${server.url}/dashboard/#/jobs/${job.id}`);
      try {
        await page.waitForSelector(detailStatus('failed'), { timeout: 30_000 });
        assert.match((await page.locator('[data-testid="detail-error-message"]').textContent()) ?? '', /model overloaded/);
        assert.equal(await page.locator('[data-testid="action-cancel"]').count(), 0, 'a failed job cannot be cancelled');
        await confirmAction(page, 'recover');
        await page.waitForSelector(detailStatus('queued'), { timeout: 30_000 });
        await page.waitForSelector('[data-testid="timeline-event"][data-type="status"][data-recovered="true"]', { timeout: 30_000 });
        assert.match((await page.locator('[data-testid="timeline-event"][data-recovered="true"]').textContent()) ?? '', /recovered from failed/);

        failingInvoices.delete(invoice);
        invoiceWorker = engine.waitless.startWorker({ names: ['extract-invoice'], pollInterval: 50, shutdownGrace: '100ms' });
        await page.waitForSelector(detailStatus('completed'), { timeout: 30_000 });
        await page.waitForSelector('[data-testid="detail-result"]:has-text("1284.5")', { timeout: 30_000 });
        await page.waitForFunction(() => document.querySelectorAll('[data-testid="timeline-event"][data-status="completed"]').length === 1, undefined, { timeout: 30_000 });
        assert.deepEqual(await timelineStatuses(page), ['queued', 'running', 'failed', 'queued', 'running', 'completed']);
        assert.ok(await page.locator('[data-testid="timeline-event"][data-status="failed"]:has-text("model overloaded")').count(), 'the failed attempt shows its error');
        assert.equal(await page.locator('[data-testid="detail-error-card"]').isHidden(), true, 'no error once completed');
        assert.equal(await page.locator('[data-testid="action-recover"]').count(), 0, 'a completed job cannot be recovered');
        // The job's own log, both attempts', in order; the failed attempt's error line among them.
        const logLines = () =>
          page.$$eval('[data-testid="log-line"]', (lines) => lines.map((l) => `${(l as HTMLElement).dataset.level}: ${l.querySelector('.log-message')?.textContent ?? ''}`));
        const expectedLog = ['info: OCR started', 'error: OCR provider failed', 'info: OCR started', 'info: 3 line items found'];
        await page.waitForFunction(() => document.querySelectorAll('[data-testid="log-line"]').length === 4, undefined, { timeout: 30_000 });
        assert.deepEqual(await logLines(), expectedLog);
        assert.match((await page.locator('[data-testid="log-line"][data-level="error"]').textContent()) ?? '', /"status":503/);
        // A reload keeps the selection (the URL hash), and shows the log once, not twice.
        await page.reload();
        await page.waitForSelector(detailStatus('completed'), { timeout: 30_000 });
        assert.equal(await page.locator('[data-testid="detail-id"]').textContent(), job.id);
        await page.waitForFunction(() => document.querySelectorAll('[data-testid="log-line"]').length === 4, undefined, { timeout: 30_000 });
        assert.deepEqual(await logLines(), expectedLog);
      } finally {
        await close();
      }
    });

    it('redelivers a webhook: the receiver gets it again with the same webhook-id, and the page shows the second attempt', async () => {
      const job = await submit(server, 'analyze-document', { text: 'Plan for the Q3 migration', steps: 6, delayMs: 100 }, { webhook: { url: receiver.url } });
      webhookJobId = job.id;
      await eventually(() => receiver.forJob(job.id).length === 1, 'the first delivery', 10_000);
      const { page, close } = await openDashboard(`${server.url}/dashboard/#/jobs/${job.id}`);
      try {
        await page.waitForSelector('[data-testid="delivery"][data-status="succeeded"][data-attempts="1"]', { timeout: 30_000 });
        assert.equal(await page.locator('[data-testid="delivery-event"]').textContent(), 'job.completed');
        assert.match((await page.locator('[data-testid="delivery-attempt"]').first().textContent()) ?? '', /HTTP 200/);
        assert.match((await page.locator('[data-testid="detail-output"]').textContent()) ?? '', /payment service\. Three findings/);
        await page.click('[data-testid="redeliver"]');
        await eventually(() => receiver.forJob(job.id).length === 2, 'the redelivery', 10_000);
        const [first, second] = receiver.forJob(job.id);
        assert.ok(first?.headers['webhook-id']);
        assert.equal(second?.headers['webhook-id'], first.headers['webhook-id'], 'the same webhook-id');
        await page.waitForSelector('[data-testid="delivery"][data-attempts="2"]', { timeout: 30_000 });
        assert.equal(await page.locator('[data-testid="delivery-attempt"]').count(), 2);
      } finally {
        await close();
      }
    });

    it('cancels a running job from the detail: it ends cancelled, in the detail and in the list', async () => {
      const job = await submit(server, 'generate-report', { quarter: `Q3-${backend}` });
      const { page, close } = await openDashboard(`${server.url}/dashboard/#/jobs/${job.id}`);
      try {
        await page.waitForSelector(detailStatus('running'), { timeout: 30_000 });
        await page.waitForSelector('[data-testid="provisional"]', { timeout: 30_000 });
        assert.match((await page.locator('[data-testid="detail-result"]').textContent()) ?? '', /Full report is being written/);
        await page.waitForFunction(() => (document.querySelector('[data-testid="detail-output"]')?.textContent ?? '').includes('Section 2'), undefined, { timeout: 30_000 });
        assert.equal(await page.locator('[data-testid="action-recover"]').textContent(), 'Stuck? Recover');
        await confirmAction(page, 'cancel');
        await page.waitForSelector(detailStatus('cancelled'), { timeout: 30_000 });
        await page.waitForSelector('[data-testid="timeline-event"][data-status="cancelled"]', { timeout: 30_000 });
        assert.equal((await finished(engine.waitless, job.id)).status, 'cancelled');
        await page.click('[data-testid="back"]');
        await page.waitForSelector(`${row(job.id)}[data-status="cancelled"]`, { timeout: 30_000 });
      } finally {
        await close();
      }
    });

    it('filters by status and name, and opens a job by id (an unknown id says so)', async () => {
      const queued = await submit(server, 'translate-batch', { language: 'de' });
      const { page, close } = await openDashboard(`${server.url}/dashboard/`);
      try {
        await page.waitForSelector(row(queued.id));
        await page.check('[data-testid="filter-status-queued"]');
        await page.waitForFunction(() => [...document.querySelectorAll<HTMLElement>('tr[data-testid="job-row"]')].every((r) => r.dataset.status === 'queued'), undefined, { timeout: 30_000 });
        await page.waitForSelector(row(queued.id));
        await page.uncheck('[data-testid="filter-status-queued"]');
        await page.fill('[data-testid="name-filter"]', 'extract-invoice');
        await page.waitForFunction(
          () => {
            const rows = [...document.querySelectorAll('tr[data-testid="job-row"]')];
            return rows.length > 0 && rows.every((r) => r.querySelector('[data-testid="job-name"]')?.textContent === 'extract-invoice');
          },
          undefined,
          { timeout: 30_000 },
        );
        // Clearing the filters brings every job back, one submitted meanwhile too.
        const other = await submit(server, 'translate-batch', { language: 'fr' });
        await page.click('[data-testid="clear-filters"]');
        await page.waitForSelector(row(other.id), { timeout: 30_000 });

        const unknown = '01900000-0000-7000-8000-000000000000';
        await page.fill('[data-testid="open-id"]', unknown);
        await page.click('[data-testid="open-submit"]');
        await page.waitForSelector(`[data-testid="open-error"]:has-text("No job with id ${unknown}")`, { timeout: 30_000 });
        await page.fill('[data-testid="open-id"]', queued.id);
        await page.click('[data-testid="open-submit"]');
        await page.waitForSelector(detailStatus('queued'), { timeout: 30_000 });
        assert.equal(new URL(page.url()).hash, `#/jobs/${queued.id}`);
      } finally {
        await close();
      }
    });

    it('asks for an admin key in serve mode: a wrong key shows the error, an admin key opens the list', async () => {
      const tenant = `acme-${backend}`;
      const secured = await startServer(engine.waitless, { dashboard: true, auth: { mode: 'api-key', keys: engine.waitless.apiKeys } });
      try {
        const { job } = await engine.waitless.submit('analyze-document', { text: 'acme contract', steps: 2, delayMs: 20 }, { tenant });
        const { page, close } = await openDashboard(`${secured.url}/dashboard`, { waitLive: false });
        try {
          await page.waitForSelector('[data-testid="auth-form"]', { state: 'visible', timeout: 30_000 });
          assert.equal(await page.locator('[data-testid="list-view"]').isHidden(), true);
          assert.equal(await page.locator('[data-testid="connection"]').getAttribute('data-state'), 'signed-out');
          await page.fill('[data-testid="auth-key"]', `wl_0123456789abcdef_${'A'.repeat(43)}`);
          await page.click('[data-testid="auth-submit"]');
          await page.waitForSelector('[data-testid="auth-error"]:has-text("unknown or revoked")', { timeout: 30_000 });
          assert.equal(await page.locator('[data-testid="auth-form"]').isVisible(), true);

          const { token } = await engine.waitless.apiKeys.create(tenant, { admin: true });
          await page.fill('[data-testid="auth-key"]', token);
          await page.click('[data-testid="auth-submit"]');
          await page.waitForSelector(row(job.id), { timeout: 30_000 });
          await page.waitForSelector('[data-testid="connection"][data-state="live"]', { timeout: 30_000 });
          assert.equal(await page.locator('[data-testid="auth-view"]').isHidden(), true);
          assert.equal(await page.locator('tr[data-testid="job-row"]').count(), 1, "only the key's tenant's jobs");
          // Live in serve mode too: a job submitted now appears.
          const { job: next } = await engine.waitless.submit('analyze-document', { text: 'acme renewal', steps: 2, delayMs: 20 }, { tenant });
          await page.waitForSelector(`${row(next.id)}[data-status="completed"]`, { timeout: 30_000 });
          // The key lives in the tab: a reload needs no new sign-in.
          await page.reload();
          await page.waitForSelector(row(next.id), { timeout: 30_000 });
          assert.equal(await page.locator('[data-testid="auth-view"]').isHidden(), true);
        } finally {
          await close();
        }
      } finally {
        await secured.close();
      }
    });

    it('refuses a service (non-admin) key with a clear message, and shows no job', async () => {
      const tenant = `service-${backend}`;
      const secured = await startServer(engine.waitless, { dashboard: true, auth: { mode: 'api-key', keys: engine.waitless.apiKeys } });
      try {
        const { job } = await engine.waitless.submit('analyze-document', { text: 'service key', steps: 2, delayMs: 20 }, { tenant });
        const { page, close } = await openDashboard(`${secured.url}/dashboard`, { waitLive: false });
        try {
          await page.waitForSelector('[data-testid="auth-form"]', { state: 'visible', timeout: 30_000 });
          const { token } = await engine.waitless.apiKeys.create(tenant, { admin: false });
          await page.fill('[data-testid="auth-key"]', token);
          await page.click('[data-testid="auth-submit"]');
          await page.waitForSelector('[data-testid="auth-error"]:has-text("not an admin key")', { timeout: 30_000 });
          assert.equal(await page.locator('[data-testid="auth-form"]').isVisible(), true);
          assert.equal(await page.locator('[data-testid="list-view"]').isHidden(), true);
          assert.equal(await page.locator(row(job.id)).count(), 0, 'no job of the tenant is shown');
          assert.equal(await page.locator('[data-testid="connection"]').getAttribute('data-state'), 'signed-out');
          // The same tab then signs in with an admin key.
          const admin = await engine.waitless.apiKeys.create(tenant, { admin: true });
          await page.fill('[data-testid="auth-key"]', admin.token);
          await page.click('[data-testid="auth-submit"]');
          await page.waitForSelector(row(job.id), { timeout: 30_000 });
        } finally {
          await close();
        }
      } finally {
        await secured.close();
      }
    });

    it('reconnects when the stream drops, and lists again: nothing that changed meanwhile is missed', async () => {
      const app = createHttpApp(engine.waitless, { auth: { mode: 'none', tenant: 'default' }, dashboard: true });
      const listen = (port: number) =>
        new Promise<ServerType>((resolve) => {
          const s = serve({ fetch: app.fetch, port, hostname: '127.0.0.1' }, () => resolve(s));
        });
      const stop = (s: ServerType) =>
        new Promise<void>((resolve) => {
          s.close(() => resolve());
          if ('closeAllConnections' in s) s.closeAllConnections();
        });
      let http = await listen(0);
      const { port } = http.address() as AddressInfo;
      try {
        const before = await submit(`http://127.0.0.1:${port}`, 'translate-batch', { language: 'it' });
        const { page, close } = await openDashboard(`http://127.0.0.1:${port}/dashboard/`);
        try {
          await page.check('[data-testid="filter-status-queued"]');
          await page.waitForSelector(row(before.id));
          await page.evaluate(() => {
            (window as unknown as { samePage?: string }).samePage = 'still here';
          });
          await stop(http);
          await page.waitForSelector('[data-testid="connection"][data-state="reconnecting"]', { timeout: 30_000 });
          // While the page has no stream, no message will ever carry these changes.
          await engine.waitless.cancel(before.id);
          const { job: meanwhile } = await engine.waitless.submit('translate-batch', { language: 'pt' });
          http = await listen(port);
          await page.waitForSelector('[data-testid="connection"][data-state="live"]', { timeout: 30_000 });
          await page.waitForSelector(`${row(meanwhile.id)}[data-status="queued"]`, { timeout: 30_000 });
          await page.waitForSelector(row(before.id), { state: 'detached', timeout: 30_000 });
          assert.equal(await page.evaluate(() => (window as unknown as { samePage?: string }).samePage), 'still here');
        } finally {
          await close();
        }
      } finally {
        await stop(http);
      }
    });

    it('works under a base path: the page finds the API beside its own location', async () => {
      const mounted = await startServer(engine.waitless, { dashboard: true, basePath: '/jobs-api' });
      try {
        const job = await submit(`${mounted.url}/jobs-api`, 'analyze-document', { text: 'mounted', steps: 2, delayMs: 20 });
        const { page, close } = await openDashboard(`${mounted.url}/jobs-api/dashboard`);
        try {
          assert.equal(new URL(page.url()).pathname, '/jobs-api/dashboard/');
          await page.waitForSelector(`${row(job.id)}[data-status="completed"]`, { timeout: 30_000 });
          await page.click(`${row(job.id)} [data-testid="job-name"]`);
          await page.waitForSelector(detailStatus('completed'), { timeout: 30_000 });
        } finally {
          await close();
        }
      } finally {
        await mounted.close();
      }
    });

    if (index === 0) {
      it('screenshots: the list with jobs in every state, and a job in detail', async () => {
        // Something in every state beside the completed, recovered and cancelled jobs above.
        const failing = 'INV-2291';
        failingInvoices.add(failing);
        const failed = await submit(server, 'extract-invoice', { invoice: failing });
        const timedOut = await submit(server, 'transcribe-audio', { file: 'board-meeting.m4a' });
        await submit(server, 'translate-batch', { language: 'ja' });
        const running = await submit(server, 'generate-report', { quarter: 'Q4', steps: 40, delayMs: 250 });
        const streaming = await submit(server, 'analyze-document', { text: 'Incident review', steps: 30, delayMs: 250 });
        await finished(engine.waitless, failed.id);
        await finished(engine.waitless, timedOut.id);
        const { page, close } = await openDashboard(`${server.url}/dashboard/`);
        try {
          await waitRow(page, running.id, { status: 'running', above: 10 });
          await waitRow(page, streaming.id, { status: 'running', above: 10 });
          await page.waitForSelector(`${row(timedOut.id)}[data-status="timed_out"]`);
          await screenshot(page, 'dashboard-list');

          assert.ok(webhookJobId, 'the redeliver test ran');
          await page.click(`${row(webhookJobId)} [data-testid="job-name"]`);
          await page.waitForSelector('[data-testid="delivery"][data-attempts="2"]', { timeout: 30_000 });
          await page.waitForSelector(detailStatus('completed'));
          await screenshot(page, 'dashboard-job');
          // Stop the long jobs while the page watches, so no change is in flight at teardown.
          await engine.waitless.cancel(running.id);
          await engine.waitless.cancel(streaming.id);
          await page.waitForSelector(`${row(running.id)}[data-status="cancelled"]`, { state: 'attached', timeout: 30_000 });
          await page.waitForSelector(`${row(streaming.id)}[data-status="cancelled"]`, { state: 'attached', timeout: 30_000 });
        } finally {
          await close();
          failingInvoices.delete(failing);
        }
      });
    }
  });
}
