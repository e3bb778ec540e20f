import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { pino } from 'pino';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { analyzeDocument } from '../src/demo/analyze-document.ts';
import { defineJob } from '../src/job/definition.ts';
import type { Job } from '../src/job/model.ts';
import { wellFormedString } from '../src/store/json.ts';
import { createWaitless } from '../src/engine.ts';
import { createHttpHandler } from '../src/http/app.ts';
import { internals } from '../src/internals.ts';
import { JobTokens } from '../src/access/job-tokens.ts';
import { WaitlessClient } from '../src/client/client.ts';
import { readSse as readSseStream } from '../src/contract/sse.ts';
import { createReconciler } from '../src/reconciler/reconciler.ts';
import {
  BACKENDS,
  createGates,
  dropSchema,
  eventually,
  finished,
  freshSchema,
  openEngine,
  POSTGRES_URL,
  readSse,
  silentLogger,
  startServer,
  type TestEngine,
  type TestServer,
} from './helpers.ts';

/** Half of an emoji: what a string cut in the middle of "😀" ends with. */
const HIGH = '\ud83d';
const LOW = '\ude00';

/** A job whose every write carries lone surrogates: a step result, progress, output and result. */
const halves = defineJob({
  name: 'halves',
  input: z.object({ text: z.string() }),
  retry: { attempts: 3 },
  async run({ text }, ctx) {
    const step = await ctx.step('cut', async () => ({ [`key${HIGH}`]: `step ${LOW}` }));
    await ctx.progress({ percent: 50, message: `half ${HIGH}` });
    ctx.write(`out ${HIGH}`);
    return { text, step, tail: `end ${LOW}x` };
  },
});

/** A job that fails for good with a message that ends in half an emoji. */
const failsCut = defineJob({
  name: 'fails-cut',
  input: z.object({}),
  retry: { attempts: 1 },
  run: async () => {
    throw new Error(`broken ${HIGH}`);
  },
});

const postJson = (url: string, body: string, headers: Record<string, string> = {}) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

for (const backend of BACKENDS) {
  describe(`lone surrogates on ${backend}`, () => {
    let engine: TestEngine;
    let server: TestServer;

    before(async () => {
      engine = await openEngine(backend, { jobs: [halves, failsCut, analyzeDocument] });
      engine.waitless.startWorker({ pollInterval: 50, outputFlushInterval: 20 });
      server = await startServer(engine.waitless);
    });
    after(async () => {
      await server.close();
      await engine.close();
    });

    it('accepts an input and a context holding lone surrogates (202) and runs the job once, every write mended to U+FFFD', async () => {
      // JSON.stringify writes a lone surrogate as the escape "\ud83d", exactly as a client would send it.
      const body = JSON.stringify({ input: { text: `in ${HIGH}` }, context: { [`k${LOW}`]: `v ${HIGH}` } });
      assert.match(body, /\\ud83d/);
      const response = await postJson(`${server.url}/v1/jobs/halves`, body);
      assert.equal(response.status, 202, await response.clone().text());
      const { id } = (await response.json()) as Job;
      const job = await finished(engine.waitless, id);
      assert.equal(job.status, 'completed', JSON.stringify(job.error));
      assert.equal(job.attempt, 1, 'finishing must not fail and be retried as a crash');
      assert.deepEqual(job.input, { text: 'in \ufffd' });
      assert.deepEqual(job.context, { 'k\ufffd': 'v \ufffd' });
      assert.deepEqual(job.result, { text: 'in \ufffd', step: { 'key\ufffd': 'step \ufffd' }, tail: 'end \ufffdx' });
      assert.equal(job.output, 'out \ufffd');
      assert.deepEqual(job.progress, { percent: 50, message: 'half \ufffd' });
      const events = await engine.waitless.events(id);
      assert.ok(events.some((e) => e.type === 'output'));
    });

    it('completes once a job whose step result, progress, output and result hold lone surrogates (its input is clean)', async () => {
      const { job: submitted } = await engine.waitless.submit('halves', { text: 'plain' });
      const job = await finished(engine.waitless, submitted.id);
      assert.equal(job.status, 'completed', JSON.stringify(job.error));
      assert.equal(job.attempt, 1);
      assert.deepEqual(job.result, { text: 'plain', step: { 'key\ufffd': 'step \ufffd' }, tail: 'end \ufffdx' });
      assert.equal(job.output, 'out \ufffd');
    });

    it('records a failure whose message holds a lone surrogate as that failure, not as a crashed worker', async () => {
      const { job } = await engine.waitless.submit('fails-cut', {});
      const done = await finished(engine.waitless, job.id);
      assert.equal(done.status, 'failed');
      assert.equal(done.attempt, 1);
      assert.match(done.error?.message ?? '', /^broken \ufffd/);
    });

    it("the demo job's fallback cuts a long opening by code points, never through an emoji", async () => {
      const opening = `${'x'.repeat(159)}😀 and more words to follow`;
      const response = await postJson(`${server.url}/v1/jobs/analyze-document`, JSON.stringify({ input: { text: opening, seconds: 0 } }));
      assert.equal(response.status, 202, await response.clone().text());
      const submitted = (await response.json()) as Job;
      const summary = (submitted.fallback?.result as { summary: string }).summary;
      assert.ok(summary.includes(`${'x'.repeat(159)}😀"`), summary);
      assert.equal(wellFormedString(summary), summary);
      const job = await finished(engine.waitless, submitted.id);
      assert.equal(job.status, 'completed');
      assert.equal(job.attempt, 1);
    });
  });
}

/** Nests `{ "a": … }` `depth` levels deep, as JSON text (no recursion, so the test itself cannot overflow). */
const nestedJson = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;

const echo = defineJob({ name: 'echo', input: z.unknown(), retry: { attempts: 1 }, run: async (input) => input });

for (const backend of BACKENDS) {
  describe(`bad input on ${backend}`, () => {
    let engine: TestEngine;
    let open: TestServer;
    let keyed: TestServer;
    let apiKey: string;
    let jobId: string;
    let jobToken: string;

    before(async () => {
      engine = await openEngine(backend, { jobs: [echo] });
      open = await startServer(engine.waitless);
      keyed = await startServer(engine.waitless, { auth: { mode: 'api-key', keys: engine.waitless.apiKeys }, maxBodyBytes: 4096 });
      apiKey = (await engine.waitless.apiKeys.create('acme', { admin: true })).token;
      const { job } = await engine.waitless.submit('echo', { hello: 'world' }, { tenant: 'acme' });
      jobId = job.id;
      jobToken = (await engine.waitless.createJobToken(job.id, { tenant: 'acme', cancel: true }))!.token;
    });
    after(async () => {
      await open.close();
      await keyed.close();
      await engine.close();
    });

    it('refuses an input nested 5 000 deep with 422 naming the limit, over HTTP and from the library', async () => {
      const response = await postJson(`${open.url}/v1/jobs/echo`, `{"input":${nestedJson(5000)}}`);
      assert.equal(response.status, 422);
      assert.equal(response.headers.get('content-type'), 'application/problem+json');
      assert.match(((await response.json()) as { detail: string }).detail, /deeper than 100 levels/);
      await assert.rejects(engine.waitless.submit('echo', JSON.parse(nestedJson(5000))), { name: 'InputValidationError' });
      // 100 levels are still fine.
      assert.equal((await postJson(`${open.url}/v1/jobs/echo`, `{"input":${nestedJson(99)}}`)).status, 202);
    });

    it('refuses a context nested 5 000 deep with 422', async () => {
      const response = await postJson(`${open.url}/v1/jobs/echo`, `{"input":{},"context":${nestedJson(5000)}}`);
      assert.equal(response.status, 422);
    });

    it('answers NUL characters and broken escapes in query and path parameters with a 4xx problem, never a 500', async () => {
      const probes: Array<[string, string, number]> = [
        ['GET', '/v1/jobs?name=%00', 400],
        ['GET', '/v1/jobs?name=%E0%A4%A', 400],
        ['GET', '/v1/jobs?cursor=%00', 400],
        ['GET', '/v1/jobs?cursor=AA', 400],
        ['GET', '/v1/jobs?status=%00', 400],
        ['GET', '/v1/jobs/%00', 404],
        ['GET', '/v1/jobs/%E0%A4%A', 404],
        ['GET', '/v1/jobs/%00/events', 404],
        ['GET', '/v1/jobs/%00/deliveries', 404],
        ['POST', '/v1/jobs/%00/cancel', 404],
        ['POST', '/v1/jobs/%00/recover', 404],
        ['POST', '/v1/jobs/%00/tokens', 404],
        ['POST', '/v1/jobs/%E0%A4%A/tokens', 404],
        ['POST', '/v1/deliveries/%00/redeliver', 404],
        ['DELETE', '/v1/webhooks/endpoints/%00', 404],
        ['POST', '/v1/jobs/%00', 404],
      ];
      for (const [method, path, status] of probes) {
        const response = await fetch(`${keyed.url}${path}`, { method, headers: { authorization: `Bearer ${apiKey}` } });
        assert.equal(response.status, status, `${method} ${path}: ${await response.text()}`);
        assert.equal(response.headers.get('content-type'), 'application/problem+json', `${method} ${path}`);
      }
    });

    it('refuses a body past the limit with 413 on every route that reads one, announced or streamed', async () => {
      const big = JSON.stringify({ pad: 'x'.repeat(64 * 1024) });
      const routes = ['/v1/webhooks/secret/rotate', `/v1/jobs/${jobId}/tokens`, '/v1/webhooks/endpoints', '/v1/jobs/echo', `/v1/jobs/${jobId}/cancel`];
      for (const path of routes) {
        const announced = await postJson(`${keyed.url}${path}`, big, { authorization: `Bearer ${apiKey}` });
        assert.equal(announced.status, 413, `${path}: ${await announced.text()}`);
        // Chunked: no Content-Length to trust, so the limit must hold while the body streams in.
        const streamed = await fetch(`${keyed.url}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
          body: new Blob([big]).stream(),
          duplex: 'half',
        } as RequestInit);
        assert.equal(streamed.status, 413, `${path} (chunked)`);
        assert.equal(streamed.headers.get('content-type'), 'application/problem+json');
      }
      // Without credentials too: the size is refused before anything else is looked at.
      assert.equal((await postJson(`${keyed.url}/v1/webhooks/secret/rotate`, big)).status, 413);
    });

    it('answers NUL characters in the submit envelope and in webhook endpoints with a 4xx problem, never a 500', async () => {
      const bodies: unknown[] = [
        { input: {}, concurrencyKey: 'a\u0000b' },
        { input: {}, supersede: { key: 'a\u0000b' } },
        { input: {}, webhook: { url: 'http://127.0.0.1/\u0000' } },
      ];
      for (const body of bodies) {
        const response = await postJson(`${keyed.url}/v1/jobs/echo`, JSON.stringify(body), { authorization: `Bearer ${apiKey}` });
        assert.ok(response.status >= 400 && response.status < 500, `${JSON.stringify(body)}: ${response.status} ${await response.text()}`);
      }
      const endpoint = await postJson(`${keyed.url}/v1/webhooks/endpoints`, JSON.stringify({ url: 'http://127.0.0.1/\u0000' }), { authorization: `Bearer ${apiKey}` });
      assert.ok(endpoint.status >= 400 && endpoint.status < 500, `${endpoint.status} ${await endpoint.text()}`);
    });

    it('answers a job token on a path with a malformed percent-escape with a 4xx problem', async () => {
      for (const path of [`/v1/jobs/%E0%A4%A`, `/v1/jobs/%E0%A4%A/events`, `/v1/jobs/%/cancel`]) {
        const method = path.endsWith('cancel') ? 'POST' : 'GET';
        const response = await fetch(`${keyed.url}${path}`, { method, headers: { authorization: `Bearer ${jobToken}` } });
        assert.equal(response.status, 404, `${path}: ${await response.text()}`);
      }
      // The same token still reads its own job.
      assert.equal((await fetch(`${keyed.url}/v1/jobs/${jobId}`, { headers: { authorization: `Bearer ${jobToken}` } })).status, 200);
    });
  });
}

describe('API keys', () => {
  for (const backend of BACKENDS) {
    it(`refuses an API key in ?access_token= with a 401 naming the header, and still takes a job token there (${backend})`, async () => {
      const engine = await openEngine(backend, { jobs: [echo] });
      const server = await startServer(engine.waitless, { auth: { mode: 'api-key', keys: engine.waitless.apiKeys } });
      try {
        const key = await engine.waitless.apiKeys.create('acme');
        const response = await fetch(`${server.url}/v1/jobs?access_token=${key.token}`);
        assert.equal(response.status, 401);
        assert.match(((await response.json()) as { detail: string }).detail, /Authorization: Bearer/);
        assert.equal((await fetch(`${server.url}/v1/jobs`, { headers: { authorization: `Bearer ${key.token}` } })).status, 200);
        const { job } = await engine.waitless.submit('echo', {}, { tenant: 'acme' });
        const token = (await engine.waitless.createJobToken(job.id, { tenant: 'acme' }))!.token;
        assert.equal((await fetch(`${server.url}/v1/jobs/${job.id}?access_token=${token}`)).status, 200);
      } finally {
        await server.close();
        await engine.close();
      }
    });
  }

  it('a key revoked in one process is refused by another at once, though its cache would keep it 10 minutes (postgres)', { skip: !BACKENDS.includes('postgres') }, async () => {
    const a = await openEngine('postgres', { jobs: [echo] });
    // A second engine on the same schema: its own pool, auth cache and LISTEN connection, as another process has.
    const b = await createWaitless({ jobs: [echo], database: a.databaseUrl, schema: a.schema, logger: silentLogger });
    const server = await startServer(b, { auth: { mode: 'api-key', keys: b.apiKeys, cacheMs: 600_000 } });
    try {
      const key = await a.waitless.apiKeys.create('acme');
      const call = () => fetch(`${server.url}/v1/jobs`, { headers: { authorization: `Bearer ${key.token}` } }).then((r) => r.status);
      assert.equal(await call(), 200);
      assert.equal(await call(), 200, 'served from the cache');
      assert.equal(await a.waitless.apiKeys.revoke(key.id), true);
      await eventually(async () => (await call()) === 401, 'the revoked key refused by the other engine', 10_000);
    } finally {
      await server.close();
      await b.close();
      await a.close();
    }
  });

  it('a key revoked is refused at once by the same embedded engine (pglite)', { skip: !BACKENDS.includes('pglite') }, async () => {
    const engine = await openEngine('pglite', { jobs: [echo] });
    const server = await startServer(engine.waitless, { auth: { mode: 'api-key', keys: engine.waitless.apiKeys, cacheMs: 600_000 } });
    try {
      const key = await engine.waitless.apiKeys.create('acme');
      const call = () => fetch(`${server.url}/v1/jobs`, { headers: { authorization: `Bearer ${key.token}` } }).then((r) => r.status);
      assert.equal(await call(), 200);
      await engine.waitless.apiKeys.revoke(key.id);
      await eventually(async () => (await call()) === 401, 'the revoked key refused', 10_000);
    } finally {
      await server.close();
      await engine.close();
    }
  });
});

describe('webhook URLs in logs', () => {
  it('logs a webhook URL without its query values, for a failed attempt and a delivered one', async () => {
    let calls = 0;
    const receiver = createServer((_req, res) => res.writeHead(++calls === 1 ? 500 : 200).end());
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        done();
      },
    });
    const waitless = await createWaitless({
      jobs: [echo],
      database: 'memory://',
      logger: pino({ level: 'info' }, sink),
      webhooks: { retrySchedule: ['50ms'], pollInterval: '50ms', ssrf: { allow: ['127.0.0.1'] } },
    });
    try {
      waitless.startWorker({ pollInterval: 50 });
      const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/in?token=s3cret-value&tenant=acme`;
      const { job } = await waitless.submit('echo', {}, { webhook: { url } });
      await finished(waitless, job.id);
      await eventually(() => lines.some((l) => l.includes('webhook delivered')), 'the delivery logged');
      const logged = lines.filter((l) => l.includes('/hooks/in'));
      assert.ok(logged.some((l) => l.includes('webhook attempt failed')), lines.join('\n'));
      for (const line of logged) {
        assert.equal((JSON.parse(line) as { url: string }).url, `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/in?token=REDACTED&tenant=REDACTED`);
      }
      assert.ok(!lines.some((l) => l.includes('s3cret-value')), 'the secret is in no log line');
    } finally {
      await waitless.close();
      receiver.closeAllConnections();
      await new Promise((resolve) => receiver.close(resolve));
    }
  });
});

describe('embedding without auth', () => {
  it('refuses to build the HTTP API with no auth option (a TypeError naming both modes), and warns when it runs open', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        done();
      },
    });
    const waitless = await createWaitless({ jobs: [echo], database: 'memory://', logger: pino({ level: 'info' }, sink) });
    try {
      // As JavaScript callers may: no options, or options without auth.
      const untyped = createHttpHandler as (waitless: unknown, options?: unknown) => unknown;
      assert.throws(() => untyped(waitless), (error: Error) => error instanceof TypeError && /mode: 'api-key'/.test(error.message) && /mode: 'none'/.test(error.message));
      assert.throws(() => untyped(waitless, { basePath: '/jobs-api' }), TypeError);
      assert.throws(() => untyped(waitless, { auth: { mode: 'none' } }), TypeError, 'open mode names its tenant');
      assert.ok(!lines.some((l) => l.includes('without authentication')));
      const handler = createHttpHandler(waitless, { auth: { mode: 'none', tenant: 'default' } });
      assert.ok(lines.some((l) => l.includes('the HTTP API runs without authentication')), lines.join('\n'));
      assert.equal((await handler(new Request('http://localhost/v1/whoami'))).status, 200);
      const keyed = createHttpHandler(waitless, { auth: { mode: 'api-key', keys: waitless.apiKeys } });
      assert.equal((await keyed(new Request('http://localhost/v1/whoami'))).status, 401);
    } finally {
      await waitless.close();
    }
  });
});

/** A request with headers fetch may not set (Host), over plain node:http. */
function rawRequest(url: string, method: string, headers: Record<string, string>, body = ''): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { method, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) } }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text }));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end(body);
  });
}

describe('the local-only guard of an open API (waitless dev)', () => {
  let engine: TestEngine;
  let server: TestServer;
  let port: string;
  const secrets = async () => JSON.stringify(await engine.waitless.webhooks.secrets('default'));

  before(async () => {
    engine = await openEngine('pglite', { jobs: [echo] });
    server = await startServer(engine.waitless, { localOnly: true, cors: { origin: ['https://app.example.com'] } });
    port = new URL(server.url).port;
  });
  after(async () => {
    await server.close();
    await engine.close();
  });

  it('answers only requests whose Host names loopback: another name (DNS rebinding) gets 421', async () => {
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, 'localhost']) {
      assert.equal((await rawRequest(`${server.url}/v1/jobs`, 'GET', { host })).status, 200, host);
    }
    for (const host of [`rebind.attacker.example:${port}`, `127.0.0.1.attacker.example:${port}`, 'attacker.example']) {
      const response = await rawRequest(`${server.url}/v1/webhooks/secret`, 'GET', { host });
      assert.equal(response.status, 421, `Host: ${host}`);
      assert.ok(!response.body.includes('whsec_'), 'no secret leaks');
    }
    assert.equal((await rawRequest(`${server.url}/dashboard`, 'GET', { host: `attacker.example:${port}` })).status, 421);
  });

  it('refuses a cross-site simple request (an empty text/plain POST) that would rotate the webhook secret', async () => {
    const before = await secrets();
    const host = `127.0.0.1:${port}`;
    for (const headers of [
      { origin: 'https://attacker.example', 'content-type': 'text/plain' } as Record<string, string>,
      { origin: 'null', 'content-type': 'application/x-www-form-urlencoded' },
      { 'sec-fetch-site': 'cross-site', 'content-type': 'text/plain' },
      // Another app on this machine, on another port, is another origin too.
      { origin: 'http://localhost:5173', 'content-type': 'text/plain' },
    ]) {
      const response = await rawRequest(`${server.url}/v1/webhooks/secret/rotate`, 'POST', { host, ...headers });
      assert.equal(response.status, 403, JSON.stringify(headers));
      assert.match(response.body, /may not change anything here/);
    }
    assert.equal(await secrets(), before, 'the secret was not rotated');
    // This server's own pages (the dashboard), an allowed origin, and a client with no Origin may.
    for (const headers of [{ origin: `http://${host}` } as Record<string, string>, { origin: 'https://app.example.com' }, { 'sec-fetch-site': 'same-origin' }, {}]) {
      const response = await rawRequest(`${server.url}/v1/webhooks/secret/rotate`, 'POST', { host, 'content-type': 'application/json', ...headers }, '{}');
      assert.equal(response.status, 201, `${JSON.stringify(headers)}: ${response.body}`);
    }
    assert.notEqual(await secrets(), before);
  });
});

describe('job tokens', () => {
  it('ends an event stream opened with a job token when the token expires, while the job still runs', async () => {
    const { gate, releaseAll } = createGates();
    const held = defineJob({
      name: 'held',
      input: z.object({}),
      run: async () => {
        await gate('held').promise;
        return 'done';
      },
    });
    const engine = await openEngine('pglite', { jobs: [held] });
    engine.waitless.startWorker({ pollInterval: 50 });
    const server = await startServer(engine.waitless, { auth: { mode: 'api-key', keys: engine.waitless.apiKeys }, sseHeartbeatMs: 100 });
    try {
      const { job } = await engine.waitless.submit('held', {});
      await eventually(async () => (await engine.waitless.get(job.id))?.status === 'running', 'the job running');
      const { token } = (await engine.waitless.createJobToken(job.id, { ttl: '2s' }))!;
      const stream = await fetch(`${server.url}/v1/jobs/${job.id}/events?access_token=${token}`, { signal: AbortSignal.timeout(30_000) });
      assert.equal(stream.status, 200);
      const { events } = await readSse(stream);
      assert.ok(events.length > 0, 'the stream sent the job events before it ended');
      assert.equal((await engine.waitless.get(job.id))?.status, 'running', 'the stream ended for the token, not for the job');
      const again = await fetch(`${server.url}/v1/jobs/${job.id}/events?access_token=${token}`);
      assert.equal(again.status, 401);
      assert.match(((await again.json()) as { detail: string }).detail, /expired/);
    } finally {
      releaseAll();
      await server.close();
      await engine.close();
    }
  });
});

describe('rotating the job-token secret', () => {
  it('keeps old tokens valid through the overlap, and with overlap 0 invalidates them in another process at once (postgres)', { skip: !BACKENDS.includes('postgres') }, async () => {
    const a = await openEngine('postgres', { jobs: [echo] });
    // Another engine on the same schema: its own cached secret and LISTEN connection, as another process has.
    const b = await createWaitless({ jobs: [echo], database: a.databaseUrl, schema: a.schema, logger: silentLogger });
    const server = await startServer(b, { auth: { mode: 'api-key', keys: b.apiKeys } });
    try {
      const { job } = await a.waitless.submit('echo', {});
      const mint = async () => (await a.waitless.createJobToken(job.id, { ttl: '1h' }))!.token;
      const read = (token: string) => fetch(`${server.url}/v1/jobs/${job.id}`, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.status);
      const old = await mint();
      assert.equal(await read(old), 200);

      await a.waitless.rotateJobTokenSecret();
      const fresh = await mint();
      // B signed nothing with the new secret yet: it accepts A's new token once it has heard of the rotation.
      await eventually(async () => (await read(fresh)) === 200, 'a token signed with the new secret accepted by the other engine', 10_000);
      assert.equal(await read(old), 200, 'a token from before the rotation still works during the overlap');
      const minted = (await b.createJobToken(job.id))!.token;
      assert.equal(await read(minted), 200);

      await a.waitless.rotateJobTokenSecret({ overlap: 0 });
      await eventually(async () => (await read(fresh)) === 401 && (await read(old)) === 401 && (await read(minted)) === 401, 'every earlier token refused', 10_000);
      assert.equal(await read(await mint()), 200);
      await assert.rejects(a.waitless.rotateJobTokenSecret({ overlap: '2w' as never }), { name: 'InvalidOptionError' });
    } finally {
      await server.close();
      await b.close();
      await a.close();
    }
  });

  it('rotates on embedded PGlite too (pglite)', { skip: !BACKENDS.includes('pglite') }, async () => {
    const engine = await openEngine('pglite', { jobs: [echo] });
    try {
      const { job } = await engine.waitless.submit('echo', {});
      const { token } = (await engine.waitless.createJobToken(job.id))!;
      const { jobTokens } = internals(engine.waitless);
      assert.equal((await jobTokens.verify(token)).ok, true);
      await engine.waitless.rotateJobTokenSecret({ overlap: '1h' });
      assert.equal((await jobTokens.verify(token)).ok, true);
      await engine.waitless.rotateJobTokenSecret({ overlap: 0 });
      assert.deepEqual(await jobTokens.verify(token), { ok: false, reason: 'invalid' });
      const { token: after } = (await engine.waitless.createJobToken(job.id))!;
      assert.equal((await jobTokens.verify(after)).ok, true);
    } finally {
      await engine.close();
    }
  });

  it('a process that missed the rotation notification refuses ended tokens once it reads the secrets again (pglite)', { skip: !BACKENDS.includes('pglite') }, async () => {
    const engine = await openEngine('pglite', { jobs: [echo] });
    try {
      const { job } = await engine.waitless.submit('echo', {});
      const { token } = (await engine.waitless.createJobToken(job.id, { ttl: '1h' }))!;
      // Checks tokens on the same database but hears no notification, as a process whose LISTEN connection is down.
      const deaf = new JobTokens(internals(engine.waitless).driver);
      assert.equal((await deaf.verify(token)).ok, true);
      await engine.waitless.rotateJobTokenSecret({ overlap: 0 });
      assert.equal((await deaf.verify(token)).ok, true, 'the secrets it read a moment ago are still trusted');
      assert.deepEqual(await deaf.verify(token, Date.now() + 11_000), { ok: false, reason: 'invalid' }, 'past their 10 s they are read again');
    } finally {
      await engine.close();
    }
  });

  it('two rotations at once keep the secret the first made current for the overlap (postgres)', { skip: !BACKENDS.includes('postgres') }, async () => {
    const a = await openEngine('postgres', { jobs: [echo] });
    const b = await createWaitless({ jobs: [echo], database: a.databaseUrl, schema: a.schema, logger: silentLogger });
    const holder = new pg.Client({ connectionString: a.databaseUrl });
    await holder.connect();
    try {
      const { job } = await a.waitless.submit('echo', {});
      await a.waitless.createJobToken(job.id);
      const secretOf = async (name: string) =>
        (await holder.query<{ secret: string }>(`SELECT secret FROM ${a.schema}.server_secrets WHERE name = $1`, [name])).rows[0]?.secret;
      const original = await secretOf('job-tokens');
      // Hold the secret's row so both rotations start before either can finish.
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM ${a.schema}.server_secrets WHERE name = 'job-tokens' FOR UPDATE`);
      const both = Promise.all([a.waitless.rotateJobTokenSecret({ overlap: '1h' }), b.rotateJobTokenSecret({ overlap: '1h' })]);
      const holderPid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await eventually(
        async () =>
          (await internals(a.waitless).driver.query<{ n: number }>({
              // The first waits on the holder, the second on the first.
              text: `SELECT count(*)::int AS n FROM pg_stat_activity a WHERE $1 = ANY(pg_blocking_pids(a.pid)) OR EXISTS
                (SELECT 1 FROM pg_stat_activity b WHERE $1 = ANY(pg_blocking_pids(b.pid)) AND b.pid = ANY(pg_blocking_pids(a.pid)))`,
              values: [holderPid],
            }))[0]!.n === 2,
        'both rotations waiting on the held row',
      );
      await holder.query('COMMIT');
      await both;
      const current = await secretOf('job-tokens');
      const kept = JSON.parse((await secretOf('job-tokens:previous'))!) as { secret: string };
      assert.notEqual(current, original);
      assert.notEqual(kept.secret, original, 'the secret kept is the one the first rotation made current: its tokens stay valid');
      assert.notEqual(kept.secret, current);
    } finally {
      await holder.end();
      await b.close();
      await a.close();
    }
  });
});

describe('waitless keys rotate-job-tokens', () => {
  it('rotates the secret from another process: with 0, a token is refused at once by the running engine', { skip: !BACKENDS.includes('postgres') }, async () => {
    const engine = await openEngine('postgres', { jobs: [echo] });
    try {
      const { job } = await engine.waitless.submit('echo', {});
      const { token } = (await engine.waitless.createJobToken(job.id))!;
      const { jobTokens } = internals(engine.waitless);
      assert.equal((await jobTokens.verify(token)).ok, true);
      const cli = (...args: string[]) =>
        new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
          execFile(
            process.execPath,
            [fileURLToPath(new URL('../src/cli/main.ts', import.meta.url)), 'keys', 'rotate-job-tokens', ...args, '--database', engine.databaseUrl, '--schema', engine.schema],
            { env: { ...process.env, LOG_LEVEL: 'silent' }, timeout: 60_000, killSignal: 'SIGKILL' },
            (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
          );
        });
      const refused = await cli('2w');
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, /overlap must be a duration/);
      const kept = await cli();
      assert.equal(kept.code, 0, kept.stderr);
      assert.match(kept.stdout, /accepted for 24h more/);
      await eventually(async () => {
        // The engine reads the secrets again once it hears of the rotation; the old token still passes.
        const fresh = (await engine.waitless.createJobToken(job.id))!.token;
        return fresh !== token && (await jobTokens.verify(token)).ok;
      }, 'the rotation heard, the old token kept', 10_000);
      const ended = await cli('0');
      assert.equal(ended.code, 0, ended.stderr);
      await eventually(async () => !(await jobTokens.verify(token)).ok, 'the old token refused', 10_000);
    } finally {
      await engine.close();
    }
  });
});

describe('the reconciler with lone surrogates', () => {
  it('tracks a job with a context holding a lone surrogate (postgres)', { skip: !BACKENDS.includes('postgres') }, async () => {
    const schema = freshSchema();
    const reconciler = await createReconciler({ source: new WaitlessClient({ baseUrl: 'http://127.0.0.1:9' }), database: POSTGRES_URL, schema, apply: async () => {} });
    try {
      const tracked = await reconciler.track('0190f6a0-0000-7000-8000-000000000000', { note: `cut ${HIGH}` });
      assert.deepEqual(tracked.context, { note: 'cut \ufffd' });
    } finally {
      await reconciler.close();
      await dropSchema(schema);
    }
  });
});

describe('waitless dev', () => {
  it('turns the local-only guard on, and says that --host is ignored', async () => {
    const child = spawn(process.execPath, [fileURLToPath(new URL('../src/cli/main.ts', import.meta.url)), 'dev', '--port', '0', '--data', 'memory://', '--host', '0.0.0.0'], {
      env: { ...process.env, LOG_LEVEL: 'warn', LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise((resolve) => child.on('exit', resolve));
    try {
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const url = await eventually(() => /API:\s+(http:\/\/127\.0\.0\.1:\d+)\/v1\/jobs/.exec(output)?.[1], 'dev prints its URL', 30_000);
      assert.match(output, /listens on 127\.0\.0\.1 only, whatever --host says/);
      const port = new URL(url).port;
      assert.equal((await rawRequest(`${url}/v1/webhooks/secret`, 'GET', { host: `rebind.attacker.example:${port}` })).status, 421);
      const rotate = await rawRequest(`${url}/v1/webhooks/secret/rotate`, 'POST', { host: `127.0.0.1:${port}`, origin: 'https://attacker.example', 'content-type': 'text/plain' });
      assert.equal(rotate.status, 403);
      assert.equal((await rawRequest(`${url}/v1/jobs`, 'GET', { host: `localhost:${port}` })).status, 200);
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
  });
});

describe('job-token streams and rotation', () => {
  it('ends a stream opened with a job token when another process invalidates every token (postgres)', { skip: !BACKENDS.includes('postgres') }, async () => {
    const { gate, releaseAll } = createGates();
    const held = defineJob({ name: 'held', input: z.object({}), run: async () => gate('held').promise.then(() => 'done') });
    const a = await openEngine('postgres', { jobs: [held] });
    const b = await createWaitless({ jobs: [held], database: a.databaseUrl, schema: a.schema, logger: silentLogger });
    a.waitless.startWorker({ pollInterval: 50 });
    const server = await startServer(b, { auth: { mode: 'api-key', keys: b.apiKeys }, sseHeartbeatMs: 100 });
    try {
      const { job } = await a.waitless.submit('held', {});
      await eventually(async () => (await a.waitless.get(job.id))?.status === 'running', 'the job running');
      const { token } = (await a.waitless.createJobToken(job.id, { ttl: '1h' }))!;
      const stream = await fetch(`${server.url}/v1/jobs/${job.id}/events?access_token=${token}`, { signal: AbortSignal.timeout(30_000) });
      assert.equal(stream.status, 200);
      const messages = readSseStream(stream.body!)[Symbol.asyncIterator]();
      assert.equal((await messages.next()).done, false, 'the stream sends the job events');
      // Rotating with overlap 0 in the other engine ends the stream; the job keeps running.
      await a.waitless.rotateJobTokenSecret({ overlap: 0 });
      while (!(await messages.next()).done);
      assert.equal((await a.waitless.get(job.id))?.status, 'running', 'the stream ended for the token, not for the job');
      assert.equal((await fetch(`${server.url}/v1/jobs/${job.id}/events?access_token=${token}`)).status, 401);
    } finally {
      releaseAll();
      await server.close();
      await b.close();
      await a.close();
    }
  });
});
