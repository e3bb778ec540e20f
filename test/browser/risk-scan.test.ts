/**
 * The risk-scan example (examples/risk-scan) in a real headless Chromium against the real
 * server (`startRiskScan`, in this process, so the test can look in the database): the page
 * comes alive within a second of the click, a double click is one job, a reload resumes the
 * job, cancel cancels, a subject switch never shows the old subject's result, and a job token
 * opens its own job only. The simulated model takes 3 s per job.
 *
 * `WAITLESS_SCREENSHOTS=1` writes docs/screenshots/risk-scan-fallback.png and -result.png.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { build } from 'esbuild';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { type RiskScanServer, startRiskScan } from '../../examples/risk-scan/server.ts';
import type { RiskAssessment, RiskScanInput } from '../../examples/risk-scan/jobs.ts';
import { COMPANIES } from '../../examples/risk-scan/questions.ts';
import { type Backend, BACKENDS, dropSchema, eventually, finished, freshSchema, POSTGRES_URL, silentLogger } from '../helpers.ts';
import { launchChromium, screenshot } from './chromium.ts';

const SECONDS = 3;
const VIEWPORT = { width: 1280, height: 800 };
const RESULT_TIMEOUT = 15_000;
const [ACME, GLOBEX, INITECH] = COMPANIES as [(typeof COMPANIES)[number], (typeof COMPANIES)[number], (typeof COMPANIES)[number]];

let browser: Browser;
const contexts: BrowserContext[] = [];

before(async () => {
  browser = await launchChromium();
});

after(async () => {
  await Promise.all(contexts.map((c) => c.close().catch(() => {})));
  await browser?.close();
});

/** Everything a backend's tests share: its server and helpers bound to it. */
function harness(backend: Backend) {
  let server: RiskScanServer;
  const schema = freshSchema();

  before(async () => {
    server = await startRiskScan({
      port: 0,
      database: backend === 'postgres' ? POSTGRES_URL : 'memory://',
      schema,
      seconds: SECONDS,
      openai: null,
      logger: silentLogger,
    });
  });
  after(async () => {
    await server?.close();
    if (backend === 'postgres') await dropSchema(schema);
  });

  /** A fresh browser context (its own sessionStorage) on the page; page errors and React warnings are collected. */
  const open = async (): Promise<{ page: Page; errors: string[] }> => {
    const context = await browser.newContext({ viewport: VIEWPORT });
    contexts.push(context);
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(`pageerror: ${error.message}`));
    page.on('console', (message) => {
      // A 401/404 answer is logged by Chromium itself as "Failed to load resource"; the page shows those as text.
      if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) errors.push(`console: ${message.text()}`);
    });
    await page.goto(server.url);
    await page.waitForSelector('[data-testid=submit]');
    return { page, errors };
  };

  const jobIds = async () => new Set((await server.waitless.list({ name: 'risk-scan', limit: 100 })).jobs.map((j) => j.id));
  const shownJobId = async (page: Page) => (await page.locator('[data-testid=job-id]').textContent())?.trim();
  const percentOf = (page: Page) => page.locator('[data-testid=progress]').getAttribute('data-percent').then(Number);
  const resultOf = async (id: string) => {
    const job = await finished(server.waitless, id, RESULT_TIMEOUT);
    assert.equal(job.status, 'completed', `job ${id} completed`);
    return job.result as RiskAssessment;
  };

  /** `POST /scan` from Node, as the page does: the job and its token. */
  const scan = async (company: string) => {
    const input: RiskScanInput = { company, answers: ACME.answers };
    const response = await fetch(`${server.url}/scan`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(input) });
    assert.equal(response.status, 202);
    return (await response.json()) as { job: { id: string }; token: string };
  };

  return { get server() { return server; }, open, jobIds, shownJobId, percentOf, resultOf, scan };
}

for (const backend of (['pglite', 'postgres'] as const).filter((b) => BACKENDS.includes(b))) {
  const full = backend === 'pglite'; // every scenario on PGlite; the main path again on PostgreSQL

  describe(`risk-scan example (${backend})`, { timeout: 90_000 }, () => {
    const h = harness(backend);

    test('submit: the estimate is up first, progress advances, the AI assessment replaces the estimate', async () => {
      const { page, errors } = await h.open();
      await page.click(`[data-testid=tab-${ACME.id}]`);
      await page.click('[data-testid=submit]');
      // The estimate from the 202 body comes up; how soon is measured by bench/sign-of-life.ts,
      // never asserted here.
      const fallback = page.locator('[data-testid=fallback]');
      await fallback.waitFor({ timeout: RESULT_TIMEOUT });
      assert.match((await fallback.textContent()) ?? '', /Instant estimate — the AI assessment is on its way/);
      const id = await h.shownJobId(page);
      assert.ok(id, 'the page shows the job id');

      // Progress advances: two different percents, both seen while the estimate is still up.
      await page.waitForSelector('[data-testid=progress]');
      const first = await h.percentOf(page);
      await page.waitForFunction(
        (seen) => Number(document.querySelector('[data-testid=progress]')?.getAttribute('data-percent') ?? seen) !== seen,
        first,
        { timeout: RESULT_TIMEOUT },
      );
      const second = await h.percentOf(page);
      assert.notEqual(second, first);

      // The AI text streams in under the estimate.
      await page.waitForSelector('[data-testid=ai-stream]', { timeout: RESULT_TIMEOUT });
      if (full) await screenshot(page, 'risk-scan-fallback');

      // Then the AI assessment takes the estimate's place.
      const aiResult = page.locator('[data-testid=ai-result]');
      await aiResult.waitFor({ timeout: RESULT_TIMEOUT });
      const result = await h.resultOf(id);
      assert.equal(result.kind, 'ai');
      assert.equal(await page.locator('[data-testid=fallback]').count(), 0, 'the estimate is gone');
      assert.equal(await page.locator('[data-testid=ai-stream]').count(), 0, 'the streaming preview is gone');
      assert.ok((await aiResult.textContent())!.includes(result.sections.executiveSummary), 'the page shows the job’s own result');
      assert.ok(result.sections.executiveSummary.startsWith(ACME.name));
      assert.equal(await page.getAttribute('[data-testid=job-status]', 'data-status'), 'completed');
      if (full) await screenshot(page, 'risk-scan-result');
      assert.deepEqual(errors, []);
    });

    test('a double click, two rapid clicks, two click() calls in one task: one request, one job', async () => {
      const variants: Array<[string, (page: Page) => Promise<void>]> = [
        ['dblclick', (page) => page.dblclick('[data-testid=submit]')],
        [
          'two rapid mouse clicks',
          async (page) => {
            const button = page.locator('[data-testid=submit]');
            await button.scrollIntoViewIfNeeded();
            const box = (await button.boundingBox())!;
            const [x, y] = [box.x + box.width / 2, box.y + box.height / 2];
            await Promise.all([page.mouse.click(x, y), page.mouse.click(x, y)]);
          },
        ],
        [
          'two click() calls in one task',
          (page) =>
            page.evaluate(() => {
              const button = document.querySelector<HTMLButtonElement>('[data-testid=submit]')!;
              button.click();
              button.click();
            }),
        ],
      ];
      for (const [what, clickTwice] of full ? variants : variants.slice(0, 1)) {
        const { page, errors } = await h.open();
        await page.click(`[data-testid=tab-${GLOBEX.id}]`);
        const posts: string[] = [];
        page.on('request', (request) => {
          if (request.method() === 'POST' && new URL(request.url()).pathname === '/scan') posts.push(request.headers()['idempotency-key'] ?? '');
        });
        const before = await h.jobIds();
        await clickTwice(page);
        await page.waitForSelector('[data-testid=job-id]');
        const id = await h.shownJobId(page);
        const created = [...(await h.jobIds())].filter((j) => !before.has(j));
        assert.deepEqual(created, [id], `${what}: exactly one new job`);
        assert.equal(posts.length, 1, `${what}: exactly one POST /scan`);
        assert.ok(await page.isDisabled('[data-testid=submit]'), `${what}: the button is disabled while the job runs`);
        assert.deepEqual(errors, []);
      }
    });

    if (!full) return;

    test('a reload mid-job shows the same job, and finishes it', async () => {
      const { page, errors } = await h.open();
      await page.click(`[data-testid=tab-${INITECH.id}]`);
      const before = await h.jobIds();
      await page.click('[data-testid=submit]');
      await page.waitForSelector('[data-testid=progress]');
      const id = (await h.shownJobId(page))!;
      assert.equal((await h.server.waitless.get(id))?.done, false, 'the job is still running at the reload');

      await page.reload();
      await page.waitForSelector('[data-testid=job-id]');
      assert.equal(await h.shownJobId(page), id, 'the same job after the reload');
      assert.equal(await page.getAttribute(`[data-testid=tab-${INITECH.id}]`, 'aria-selected'), 'true');
      await page.locator('[data-testid=ai-result]').waitFor({ timeout: RESULT_TIMEOUT });
      const result = await h.resultOf(id);
      assert.ok((await page.locator('[data-testid=ai-result]').textContent())!.includes(result.sections.executiveSummary));
      assert.deepEqual([...(await h.jobIds())].filter((j) => !before.has(j)), [id], 'the reload submitted nothing');
      assert.deepEqual(errors, []);
    });

    test('cancel from the page: cancelled in the database, and the page says so', async () => {
      const { page, errors } = await h.open();
      await page.click(`[data-testid=tab-${ACME.id}]`);
      await page.click('[data-testid=submit]');
      await page.waitForSelector('[data-testid=cancel]');
      const id = (await h.shownJobId(page))!;
      await page.click('[data-testid=cancel]');
      await page.waitForSelector('[data-testid=cancelled]', { timeout: 30_000 });
      assert.equal(await page.getAttribute('[data-testid=job-status]', 'data-status'), 'cancelled');
      assert.equal(await page.locator('[data-testid=cancel]').count(), 0);
      const job = await eventually(async () => {
        const j = await h.server.waitless.get(id);
        return j?.done && j;
      }, 'the job ends');
      assert.equal(job.status, 'cancelled');
      assert.equal(await page.locator('[data-testid=ai-result]').count(), 0);
      assert.deepEqual(errors, []);
    });

    test('switching subject mid-job: the other subject never shows the old result; switching back shows it', async () => {
      const { page, errors } = await h.open();
      const panel = page.locator('[data-testid=panel]');
      await page.click(`[data-testid=tab-${ACME.id}]`);
      await page.click('[data-testid=submit]');
      await page.waitForSelector('[data-testid=progress]');
      const acmeJob = (await h.shownJobId(page))!;

      // Move on to Globex while Acme's job runs: a fresh questionnaire, no trace of Acme's job.
      await page.click(`[data-testid=tab-${GLOBEX.id}]`);
      await page.waitForSelector('[data-testid=empty]');
      assert.equal(await page.locator('[data-testid=job-id]').count(), 0);
      await page.click('[data-testid=submit]');
      await page.waitForSelector('[data-testid=job-id]');
      const globexJob = (await h.shownJobId(page))!;
      assert.notEqual(globexJob, acmeJob);

      // Acme's job completes while Globex is on screen: nothing of it appears.
      const acmeResult = await h.resultOf(acmeJob);
      assert.equal(await h.shownJobId(page), globexJob);
      assert.ok(!(await panel.textContent())!.includes(acmeResult.sections.executiveSummary));
      assert.ok(!(await panel.textContent())!.includes(ACME.name));

      // Globex gets its own result, and only its own.
      await page.locator('[data-testid=ai-result]').waitFor({ timeout: RESULT_TIMEOUT });
      const globexResult = await h.resultOf(globexJob);
      const globexText = (await panel.textContent())!;
      assert.ok(globexText.includes(globexResult.sections.executiveSummary));
      assert.ok(!globexText.includes(acmeResult.sections.executiveSummary));
      assert.ok(!globexText.includes(ACME.name));

      // Back to Acme: its own job, resumed, with its own result.
      await page.click(`[data-testid=tab-${ACME.id}]`);
      await page.waitForFunction((id) => document.querySelector('[data-testid=job-id]')?.textContent?.trim() === id, acmeJob);
      await page.locator('[data-testid=ai-result]').waitFor({ timeout: RESULT_TIMEOUT });
      const acmeText = (await panel.textContent())!;
      assert.ok(acmeText.includes(acmeResult.sections.executiveSummary));
      assert.ok(!acmeText.includes(globexResult.sections.executiveSummary));
      assert.deepEqual(errors, []);
    });

    test('a job token opens its own job only: another job 404, the list 403, expired 401; the page shows the 401', async () => {
      const { url, waitless } = h.server;
      const { scan } = h;
      const get = (path: string, token: string | undefined, init: RequestInit = {}) =>
        fetch(`${url}/api${path}`, { ...init, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
      const isProblem = async (response: Response, status: number, what: string) => {
        assert.equal(response.status, status, what);
        assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/, what);
        assert.equal(((await response.json()) as { status: number }).status, status, what);
      };

      const a = await scan('Token Test A');
      const b = await scan('Token Test B');
      assert.ok(a.token.startsWith('wlt_'));
      const own = await get(`/v1/jobs/${a.job.id}`, a.token);
      assert.equal(own.status, 200);
      assert.equal(((await own.json()) as { id: string }).id, a.job.id);

      await isProblem(await get(`/v1/jobs/${b.job.id}`, a.token), 404, "another job's status");
      await isProblem(await get(`/v1/jobs/${b.job.id}/events`, a.token), 404, "another job's events");
      await isProblem(await get(`/v1/jobs/${b.job.id}/cancel`, a.token, { method: 'POST' }), 404, 'cancelling another job');
      await isProblem(await get('/v1/jobs', a.token), 403, 'the list');
      const readOnly = (await waitless.createJobToken(a.job.id))!;
      await isProblem(await get(`/v1/jobs/${a.job.id}/cancel`, readOnly.token, { method: 'POST' }), 403, 'cancel with a read-only token');
      // One character of the signature changed, away from its end (the last base64url
      // character carries unused bits, so changing it may leave the decoded bytes as they were).
      const at = a.token.length - 5;
      const tampered = `${a.token.slice(0, at)}${a.token[at] === 'A' ? 'B' : 'A'}${a.token.slice(at + 1)}`;
      await isProblem(await get(`/v1/jobs/${a.job.id}`, tampered), 401, 'a tampered token');
      await isProblem(await get(`/v1/jobs/${a.job.id}`, undefined), 401, 'no token');

      const shortLived = (await waitless.createJobToken(a.job.id, { ttl: '1s' }))!;
      await eventually(async () => (await get(`/v1/jobs/${a.job.id}`, shortLived.token)).status === 401, 'the short-lived token expires', 5000);
      await isProblem(await get(`/v1/jobs/${a.job.id}`, shortLived.token), 401, 'an expired token');

      // The page holding the expired token says so, as text.
      const { page, errors } = await h.open();
      await page.evaluate(
        ([key, value]) => sessionStorage.setItem(key!, value!),
        [`risk-scan:${INITECH.id}`, JSON.stringify({ jobId: a.job.id, token: shortLived.token, subject: INITECH.id })],
      );
      await page.click(`[data-testid=tab-${INITECH.id}]`);
      await page.reload();
      const error = page.locator('[data-testid=error]');
      await error.waitFor({ timeout: 30_000 });
      assert.match((await error.textContent())!, /The job token has expired/, 'the problem detail, as text');
      assert.match((await error.textContent())!, /401/);
      assert.deepEqual(errors, []);
      await Promise.all([finished(waitless, a.job.id, RESULT_TIMEOUT), finished(waitless, b.job.id, RESULT_TIMEOUT)]);
    });

    test('useJob in React: seen with another subject, a job is never applied (onStale once, onResult never); unchanged, it is', async () => {
      const script = await bundleHookHarness();
      const context = await browser.newContext({ viewport: VIEWPORT });
      contexts.push(context);
      // Served from the example's origin, so the harness reaches /api as the page does.
      await context.route(/\/hook-harness(\?.*)?$/, (route) => route.fulfill({ contentType: 'text/html', body: '<!doctype html><div id="root"></div><script type="module" src="/hook-harness.js"></script>' }));
      await context.route(/\/hook-harness\.js$/, (route) => route.fulfill({ contentType: 'text/javascript', body: script }));
      const state = (page: Page) => page.locator('#state');
      const shown = async (page: Page) => JSON.parse((await state(page).textContent())!) as { result: { kind: string } | null; fallback: unknown; partial: string };
      const calls = (page: Page) => page.evaluate(() => (window as unknown as HarnessWindow).calls);

      const moved = await h.scan('Moved On Ltd');
      const stayed = await h.scan('Stayed Ltd');
      const [left, kept] = [await context.newPage(), await context.newPage()];
      await left.goto(`${h.server.url}/hook-harness?id=${moved.job.id}&token=${moved.token}`);
      await kept.goto(`${h.server.url}/hook-harness?id=${stayed.job.id}&token=${stayed.token}`);

      // The fallback is on screen; then the user moves on to another subject before the result.
      await left.waitForFunction(() => (JSON.parse(document.querySelector('#state')?.textContent ?? '{}') as { fallback?: unknown }).fallback != null);
      assert.equal(await state(left).getAttribute('data-stale'), 'false');
      await left.evaluate(() => (window as unknown as HarnessWindow).setSubject('another subject'));
      await left.waitForSelector('#state[data-stale="true"]');
      assert.equal((await shown(left)).fallback, null, 'the left subject’s estimate is withdrawn at once');

      await h.resultOf(moved.job.id);
      await left.waitForSelector('#state[data-status="completed"][data-done="true"]', { timeout: RESULT_TIMEOUT });
      await left.waitForFunction(() => (window as unknown as HarnessWindow).calls.stales.length > 0);
      assert.deepEqual(await calls(left), { results: [], stales: [moved.job.id] }, 'onStale once, onResult never');
      assert.equal((await shown(left)).result, null, 'the result is not applied');
      assert.equal((await shown(left)).partial, '');
      // Coming back to the first subject does not revive it: the user had moved on.
      await left.evaluate(() => (window as unknown as HarnessWindow).setSubject('first'));
      assert.equal(await state(left).getAttribute('data-stale'), 'true');
      assert.equal((await shown(left)).result, null);

      // The same hook with the subject unchanged applies the result, and calls onResult once.
      await kept.waitForFunction(() => (window as unknown as HarnessWindow).calls.results.length > 0, undefined, { timeout: RESULT_TIMEOUT });
      const keptCalls = await calls(kept);
      assert.equal(keptCalls.results.length, 1);
      assert.deepEqual(keptCalls.stales, []);
      assert.equal((await shown(kept)).result?.kind, 'ai');
      assert.equal(await state(kept).getAttribute('data-stale'), 'false');
    });
  });
}

interface HarnessWindow {
  setSubject: (subject: string) => void;
  calls: { results: unknown[]; stales: string[] };
}

/** A page with one `useJob` whose subject the test can change (`window.setSubject`), bundled like the example's. */
async function bundleHookHarness(): Promise<string> {
  const contents = `
    import { StrictMode, useState } from 'react';
    import { createRoot } from 'react-dom/client';
    import { useJob } from '../../src/react/index.ts';
    const params = new URLSearchParams(location.search);
    const w = window as any;
    w.calls = { results: [], stales: [] };
    function Harness() {
      const [subject, setSubject] = useState('first');
      w.setSubject = setSubject;
      const job = useJob(params.get('id'), {
        baseUrl: '/api',
        token: params.get('token') ?? undefined,
        subject,
        onResult: (result) => w.calls.results.push(result),
        onStale: (j) => w.calls.stales.push(j.id),
      });
      return (
        <pre id="state" data-status={job.status ?? ''} data-stale={String(job.isStale)} data-done={String(job.isDone)}>
          {JSON.stringify({ result: job.result ?? null, fallback: job.fallback ?? null, partial: job.partial })}
        </pre>
      );
    }
    createRoot(document.getElementById('root')!).render(<StrictMode><Harness /></StrictMode>);
  `;
  const result = await build({
    stdin: { contents, resolveDir: import.meta.dirname, loader: 'tsx', sourcefile: 'hook-harness.tsx' },
    bundle: true,
    format: 'esm',
    jsx: 'automatic',
    platform: 'browser',
    write: false,
    define: { 'process.env.NODE_ENV': '"development"' },
    logLevel: 'silent',
  });
  return result.outputFiles[0]!.text;
}
