import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { isTerminalEvent, type JobChange, WaitlessClient, type WatchEvent } from '../src/client/client.ts';
import { verifyWebhook } from '../src/client/verify.ts';
import { JobUnsuccessfulError, ResultTimeoutError, WaitlessError } from '../src/errors.ts';
import { WaitlessApiError } from '../src/client/errors.ts';
import { defineJob } from '../src/job/definition.ts';
import { NonRetryableError } from '../src/job/errors.ts';
import type { JobEvent } from '../src/job/model.ts';
import { BACKENDS, deferred, eventually, openEngine, readSse, startServer, type TestEngine, type TestServer } from './helpers.ts';

/** Gates keyed by input, so a test decides when a handler may go on. */
const gates = new Map<string, ReturnType<typeof deferred<void>>>();
const gate = (key: string) => {
  let g = gates.get(key);
  if (!g) gates.set(key, (g = deferred()));
  return g;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const echo = defineJob({
  name: 'echo',
  input: z.object({ text: z.string().min(1), gate: z.string().optional(), pause: z.number().optional() }),
  retry: { attempts: 1 },
  async run({ text, gate: key, pause }, ctx) {
    await ctx.progress({ percent: 10, stage: 'start' });
    if (key) await gate(key).promise;
    for (const word of text.split(' ')) {
      ctx.write(`${word} `);
      if (pause) {
        await ctx.flush();
        await ctx.progress({ percent: 50, stage: word });
        await sleep(pause);
      }
    }
    await ctx.progress({ percent: 90, stage: 'writing' });
    return { echo: text };
  },
});

const boom = defineJob({
  name: 'boom',
  input: z.object({ why: z.string() }),
  retry: { attempts: 1 },
  run: async ({ why }): Promise<never> => {
    throw new NonRetryableError(why);
  },
});

/** A job with flow control, so a submit may name a concurrency key. */
const limited = defineJob({
  name: 'limited',
  input: z.object({ n: z.number() }),
  concurrency: { limit: 2 },
  run: async ({ n }) => n,
});

/** A local receiver of webhook deliveries, recording each request. */
async function startReceiver(): Promise<{ url: string; received: Array<{ headers: IncomingMessage['headers']; body: string }>; close(): Promise<void> }> {
  const received: Array<{ headers: IncomingMessage['headers']; body: string }> = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const slow = defineJob({
  name: 'slow',
  input: z.object({}),
  retry: { attempts: 1 },
  run: async (_input, ctx) => {
    await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
    return 'never';
  },
});

// -----------------------------------------------------------------------------------------
// A tiny HTTP proxy in front of the server, to play a misbehaving network.

interface ForwardOptions {
  /** Forward the request, then destroy the client's connection instead of answering (a lost answer). */
  dropResponse?: boolean;
  /** Destroy the client's connection after this many bytes of the answer's body. */
  cutAfterBytes?: number;
  /** Hold the whole answer back until it ends (a buffering proxy). */
  buffer?: boolean;
}
type Forward = (options?: ForwardOptions) => void;
type Interceptor = (req: IncomingMessage, res: ServerResponse, forward: Forward) => void;

interface Proxy {
  url: string;
  requests: Array<{ method: string; url: string; headers: IncomingMessage['headers'] }>;
  close(): Promise<void>;
}

async function startProxy(target: string, intercept: Interceptor): Promise<Proxy> {
  const upstream = new URL(target);
  const requests: Proxy['requests'] = [];
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers });
    const forward: Forward = (options = {}) => {
      const outgoing = httpRequest(
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
        (answer) => {
          if (options.dropResponse) {
            answer.resume();
            answer.on('end', () => req.socket.destroy());
            return;
          }
          res.on('close', () => answer.destroy());
          if (options.buffer) {
            const chunks: Buffer[] = [];
            answer.on('data', (chunk: Buffer) => chunks.push(chunk));
            answer.on('end', () => {
              res.writeHead(answer.statusCode ?? 502, answer.headers);
              res.end(Buffer.concat(chunks));
            });
            return;
          }
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          res.flushHeaders();
          let sent = 0;
          answer.on('data', (chunk: Buffer) => {
            if (options.cutAfterBytes !== undefined && sent + chunk.length >= options.cutAfterBytes) {
              answer.destroy();
              // Let the bytes reach the client, then cut the connection (mid-event, usually).
              res.write(chunk.subarray(0, options.cutAfterBytes - sent), () => res.destroy());
              sent = options.cutAfterBytes;
              return;
            }
            sent += chunk.length;
            res.write(chunk);
          });
          answer.on('end', () => res.end());
        },
      );
      outgoing.on('error', () => res.destroy());
      req.pipe(outgoing);
    };
    intercept(req, res, forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const html = (res: ServerResponse, status: number) => {
  res.writeHead(status, { 'content-type': 'text/html' });
  res.end(`<html><body><h1>${status} from the proxy</h1><p>This page is not JSON.</p></body></html>`);
};
const isEvents = (req: IncomingMessage) => /^\/v1\/jobs\/[^/?]+\/events/.test(req.url ?? '');
const isLongPoll = (req: IncomingMessage) => /[?&]wait=/.test(req.url ?? '');
const wantsSse = (req: IncomingMessage) => /text\/event-stream/.test(req.headers.accept ?? '');

/** Collects every event a watch yields. */
async function collect(iterable: AsyncIterable<WatchEvent>, onEvent: (event: WatchEvent) => void = () => {}): Promise<WatchEvent[]> {
  const events: WatchEvent[] = [];
  for await (const event of iterable) {
    events.push(event);
    onEvent(event);
  }
  return events;
}

/** Statuses of the status events, in order. */
const statuses = (events: JobEvent[]) => events.filter((e) => e.type === 'status').map((e) => e.data.status as string);

// -----------------------------------------------------------------------------------------

describe('client errors', () => {
  it('turns an HTML page from a proxy into a WaitlessApiError, never a JSON parse error', async () => {
    const proxy = await startProxy('http://127.0.0.1:9', (_req, res) => html(res, 502));
    try {
      const client = new WaitlessClient({ baseUrl: proxy.url, retry: { attempts: 2, initialDelayMs: 10 } });
      const error = await client.get('x').then(
        () => assert.fail('resolved'),
        (e: unknown) => e,
      );
      assert.ok(error instanceof WaitlessApiError, String(error));
      assert.ok(error instanceof WaitlessError && error.code === 'api_error', "the client's errors are of the one family");
      assert.equal(error.status, 502);
      assert.equal(error.problem, undefined);
      assert.match(error.message, /502 .*"text\/html" body instead of an application\/problem\+json error.*proxy.*502 from the proxy/);
      assert.equal(proxy.requests.length, 2, '5xx is retried');
    } finally {
      await proxy.close();
    }
  });
});

for (const backend of BACKENDS) {
  describe(`client on ${backend}`, () => {
    let engine: TestEngine;
    let server: TestServer;
    let client: WaitlessClient;
    const proxies: Proxy[] = [];
    const proxy = async (intercept: Interceptor) => {
      const p = await startProxy(server.url, intercept);
      proxies.push(p);
      return p;
    };
    const fastRetry = { initialDelayMs: 20, maxDelayMs: 200 };
    /** Every event of a job, straight from the server. */
    const serverEvents = async (id: string) => (await readSse(await fetch(`${server.url}/v1/jobs/${id}/events`))).events.map((e) => JSON.parse(e.data) as JobEvent);
    /** Jobs of `name` whose input has `text`. */
    const jobsWith = async (name: string, text: string) => (await client.list({ name, limit: 100 })).jobs.filter((j) => (j.input as { text?: string }).text === text);

    before(async () => {
      engine = await openEngine(backend, {
        jobs: [echo, boom, slow, limited],
        webhooks: { retrySchedule: ['100ms'], timeout: '2s', pollInterval: '50ms', ssrf: { allow: ['127.0.0.1'] } },
      });
      engine.waitless.startWorker({ pollInterval: 200, outputFlushInterval: 20 });
      server = await startServer(engine.waitless, { sseHeartbeatMs: 200 });
      client = new WaitlessClient({ baseUrl: `${server.url}/`, retry: fastRetry });
    });
    after(async () => {
      for (const g of gates.values()) g.resolve();
      for (const p of proxies) await p.close();
      await server.close();
      await engine.close();
    });

    it('submit → watch yields every event in order exactly once, ending with the terminal one; result() returns the result', async () => {
      const key = `watch-${backend}`;
      const job = await client.submit('echo', { text: 'one two three', gate: key });
      assert.equal(job.status, 'queued');
      assert.equal(job.name, 'echo');
      const events = await collect(client.watch(job.id), (e) => {
        if (e.type === 'progress') gate(key).resolve(); // the stream is live mid-job
      });
      assert.deepEqual(events, await serverEvents(job.id));
      assert.deepEqual(
        events.map((e) => e.seq),
        events.map((_, i) => i + 1),
      );
      assert.ok(isTerminalEvent(events.at(-1)!));
      assert.deepEqual(statuses(events), ['queued', 'running', 'completed']);
      assert.equal(events.filter((e) => e.type === 'output').map((e) => e.data.text).join(''), 'one two three ');
      assert.deepEqual(await client.result(job.id), { echo: 'one two three' });
      // Resuming from a point yields only what comes after it.
      const rest = await collect(client.watch(job.id, { after: 3 }));
      assert.deepEqual(rest, events.slice(3));
      assert.deepEqual(await collect(client.watch(job.id, { after: events.at(-1)!.seq })), []);
    });

    it('submit retries 503s with the same Idempotency-Key: exactly one job', async () => {
      let posts = 0;
      const p = await proxy((req, res, forward) => {
        if (req.method === 'POST' && ++posts <= 2) {
          res.writeHead(503, { 'content-type': 'text/html', 'retry-after': '0' });
          res.end('<h1>Service Unavailable</h1>');
          return;
        }
        forward();
      });
      const text = `retry 503 ${backend}`;
      const job = await new WaitlessClient({ baseUrl: p.url, retry: fastRetry }).submit('echo', { text });
      assert.equal(posts, 3);
      const keys = p.requests.filter((r) => r.method === 'POST').map((r) => r.headers['idempotency-key']);
      assert.equal(keys.length, 3);
      assert.match(String(keys[0]), /^[0-9a-f-]{36}$/);
      assert.ok(keys.every((k) => k === keys[0]), 'the same key on every try');
      const jobs = await jobsWith('echo', text);
      assert.deepEqual(
        jobs.map((j) => j.id),
        [job.id],
      );
    });

    it('a submit whose answer was lost is retried and gets the job the first try created', async () => {
      let posts = 0;
      const p = await proxy((req, _res, forward) => forward({ dropResponse: req.method === 'POST' && ++posts === 1 }));
      const text = `lost answer ${backend}`;
      const job = await new WaitlessClient({ baseUrl: p.url, retry: fastRetry }).submit('echo', { text }, { idempotencyKey: `lost-${backend}-${randomUUID()}` });
      assert.equal(posts, 2);
      const jobs = await jobsWith('echo', text);
      assert.deepEqual(
        jobs.map((j) => j.id),
        [job.id],
        'the server created one job, and the client got it',
      );
    });

    it('does not retry a 4xx: a bad input is a 422 WaitlessApiError with the problem', async () => {
      let posts = 0;
      const p = await proxy((req, _res, forward) => {
        if (req.method === 'POST') posts++;
        forward();
      });
      const error = await new WaitlessClient({ baseUrl: p.url, retry: fastRetry }).submit('echo', { text: '' }).catch((e: unknown) => e);
      assert.ok(error instanceof WaitlessApiError);
      assert.equal(error.status, 422);
      assert.equal(error.type, '/problems/invalid-input');
      assert.equal(error.problem?.errors?.[0]?.path, 'input.text');
      assert.equal(posts, 1);
    });

    it('watch behind a proxy that refuses text/event-stream still yields every event, by long-poll', async () => {
      let refused = 0;
      const p = await proxy((req, res, forward) => {
        if (wantsSse(req)) {
          refused++;
          res.writeHead(406, { 'content-type': 'text/plain' });
          res.end('Not Acceptable: streaming responses are not allowed');
          return;
        }
        forward();
      });
      const key = `no-sse-${backend}`;
      const job = await client.submit('echo', { text: 'long poll works', gate: key });
      const events = await collect(new WaitlessClient({ baseUrl: p.url }).watch(job.id), (e) => {
        if (e.type === 'progress') setTimeout(() => gate(key).resolve(), 100);
      });
      assert.equal(refused, 1, 'SSE was tried once');
      assert.ok(p.requests.some((r) => /[?&]wait=25&since=/.test(r.url)), 'long-poll was used');
      assert.deepEqual(events, await serverEvents(job.id), 'the real events, in order, exactly once');
    });

    it('watch behind a proxy that blocks the events endpoint yields every status change and the terminal state (synthesized)', async () => {
      const p = await proxy((req, res, forward) => (isEvents(req) ? html(res, 404) : forward()));
      const key = `no-events-${backend}`;
      const job = await client.submit('echo', { text: 'made from snapshots', gate: key });
      const events = await collect(new WaitlessClient({ baseUrl: p.url }).watch(job.id), (e) => {
        if (e.type === 'status' && e.data.status === 'running') setTimeout(() => gate(key).resolve(), 100);
      });
      assertDegraded(events, 'made from snapshots');
      assert.ok(p.requests.some((r) => isLongPollUrl(r.url)), 'long-poll was used');
    });

    it('watch falls back to plain polling when long-poll fails too', async () => {
      const p = await proxy((req, res, forward) => (isEvents(req) ? html(res, 406) : isLongPoll(req) ? html(res, 504) : forward()));
      const key = `poll-${backend}`;
      const job = await client.submit('echo', { text: 'polled', gate: key });
      const events = await collect(new WaitlessClient({ baseUrl: p.url, retry: fastRetry }).watch(job.id), (e) => {
        if (e.type === 'status' && e.data.status === 'running') gate(key).resolve();
      });
      assertDegraded(events, 'polled');
      const plain = p.requests.filter((r) => r.url === `/v1/jobs/${job.id}`);
      assert.ok(plain.length >= 2, 'plain polls');
    });

    it('watch behind a proxy that buffers event streams notices the silence and falls back', async () => {
      const p = await proxy((req, _res, forward) => forward({ buffer: isEvents(req) }));
      const key = `buffered-${backend}`;
      const job = await client.submit('echo', { text: 'held back', gate: key });
      const events = await collect(new WaitlessClient({ baseUrl: p.url, sseIdleTimeoutMs: 300 }).watch(job.id), (e) => {
        if (e.type === 'status' && e.data.status === 'running') setTimeout(() => gate(key).resolve(), 100);
      });
      assertDegraded(events, 'held back');
      assert.ok(p.requests.some((r) => isLongPollUrl(r.url)), 'long-poll was used');
    });

    it('watch resumes after the SSE connection is cut mid-job, without losing or repeating an event', async () => {
      let streams = 0;
      const p = await proxy((req, _res, forward) => {
        if (isEvents(req) && ++streams <= 3) return forward({ cutAfterBytes: 350 }); // mid-event, usually
        forward();
      });
      const job = await client.submit('echo', { text: 'a b c d e f', pause: 30 });
      const events = await collect(new WaitlessClient({ baseUrl: p.url }).watch(job.id));
      assert.deepEqual(events, await serverEvents(job.id));
      assert.ok(streams >= 3, `reconnected (${streams} connections)`);
      const resumes = p.requests.filter((r) => isEvents({ url: r.url } as IncomingMessage)).map((r) => r.headers['last-event-id']);
      assert.equal(resumes[0], undefined);
      assert.ok(
        resumes.slice(1).every((id, i) => Number(id) > 0 && (i === 0 || Number(id) > Number(resumes[i]))),
        `later connections resume with a growing Last-Event-ID (${resumes.join(',')})`,
      );
      assert.equal(events.filter((e) => e.type === 'output').map((e) => e.data.text).join(''), 'a b c d e f ');
    });

    it('result() rejects with a JobUnsuccessfulError for a failed job, and for a cancelled one', async () => {
      const failed = await client.submit('boom', { why: 'the model refused' });
      const error = await client.result(failed.id).catch((e: unknown) => e);
      assert.ok(error instanceof JobUnsuccessfulError, String(error));
      assert.equal(error.jobStatus, 'failed');
      assert.equal(error.code, 'job_unsuccessful');
      assert.equal(error.job.error?.code, 'handler_error');
      assert.equal(error.job.id, failed.id);
      assert.equal(error.job.error?.message, 'the model refused');
      assert.match(error.message, /failed: the model refused/);

      const running = await client.submit('slow', {});
      const pending = client.result(running.id).catch((e: unknown) => e);
      await eventually(async () => (await client.get(running.id)).status === 'running', 'slow job running');
      const cancelled = await client.cancel(running.id);
      assert.equal(cancelled.status, 'cancelled');
      const cancelError = await pending;
      assert.ok(cancelError instanceof JobUnsuccessfulError);
      assert.equal(cancelError.jobStatus, 'cancelled');
    });

    it('result() rejects on timeout and on abort', async () => {
      const job = await client.submit('slow', {});
      const timedOut = await client.result(job.id, { timeout: 150 }).catch((e: unknown) => e);
      assert.ok(timedOut instanceof ResultTimeoutError, String(timedOut));
      assert.equal(timedOut.jobId, job.id);
      const controller = new AbortController();
      setTimeout(() => controller.abort(new Error('user gave up')), 100);
      await assert.rejects(client.result(job.id, { signal: controller.signal }), /user gave up/);
      const watching = collect(client.watch(job.id, { signal: AbortSignal.timeout(100) }));
      await assert.rejects(watching, { name: 'TimeoutError' });
      await client.cancel(job.id);
    });

    it('an unknown id is a WaitlessApiError 404 with the problem detail, from get, cancel, watch and result', async () => {
      const id = randomUUID();
      const check = (error: unknown) => {
        assert.ok(error instanceof WaitlessApiError, String(error));
        assert.equal(error.status, 404);
        assert.equal(error.type, '/problems/job-not-found');
        assert.equal(error.title, 'Job not found');
        assert.equal(error.detail, `No job with id "${id}" exists for this API key.`);
        assert.match(String(error.problem?.instance), new RegExp(`^/v1/jobs/${id}(/events|/cancel)?$`));
        return true;
      };
      check(await client.get(id).catch((e: unknown) => e));
      check(await client.cancel(id).catch((e: unknown) => e));
      check(await collect(client.watch(id)).catch((e: unknown) => e));
      check(await collect(client.watch(id, { transport: 'long-poll' })).catch((e: unknown) => e));
      check(await collect(client.watch(id, { transport: 'poll' })).catch((e: unknown) => e));
      check(await client.result(id).catch((e: unknown) => e));
    });

    it('submit sends every option of the HTTP schema, and each is applied', async () => {
      const receiver = await startReceiver();
      try {
        const runAt = new Date(Date.now() + 3_600_000);
        runAt.setMilliseconds(0);
        const job = await client.submit(
          'limited',
          { n: 1 },
          {
            priority: 7,
            runAt,
            supersede: { key: `doc-${backend}`, policy: 'reject' },
            context: { doc: 42 },
            concurrencyKey: 'user-1',
            token: { cancel: true, ttlSeconds: 60 },
            webhook: { url: receiver.url, events: ['job.cancelled'] },
          },
        );
        assert.equal(job.priority, 7);
        assert.equal(Date.parse(job.runAt), runAt.getTime());
        assert.equal(job.supersedeKey, `doc-${backend}`);
        assert.deepEqual(job.context, { doc: 42 });
        assert.deepEqual(job.concurrency, { key: 'user-1', limit: 2 });
        assert.ok(job.token?.token.startsWith('wlt_'), 'the answer carries the token asked for');
        const read = await client.get(job.id);
        assert.deepEqual([read.priority, read.runAt, read.supersedeKey, read.context, read.concurrency], [job.priority, job.runAt, job.supersedeKey, job.context, job.concurrency]);
        // The supersede policy applies: a second job with the key is refused while this one waits.
        const refused = await client.submit('limited', { n: 2 }, { supersede: { key: `doc-${backend}`, policy: 'reject' } }).catch((e: unknown) => e);
        assert.ok(refused instanceof WaitlessApiError && refused.status === 409, String(refused));
        // The token reads and (minted with cancel) cancels this job, and nothing else.
        const browser = new WaitlessClient({ baseUrl: server.url, apiKey: job.token!.token });
        assert.equal((await browser.get(job.id)).id, job.id);
        assert.equal((await browser.cancel(job.id)).status, 'cancelled');
        // The job webhook was kept: its cancellation is delivered to the receiver, and listed.
        await eventually(() => receiver.received.length === 1, 'the job.cancelled webhook');
        const [delivery] = await client.deliveries(job.id);
        assert.equal(delivery!.eventType, 'job.cancelled');
        assert.equal(delivery!.url, receiver.url);
        const again = await client.redeliver(delivery!.id);
        assert.equal(again.id, delivery!.id);
        await eventually(() => receiver.received.length === 2, 'the redelivery');
        assert.equal(receiver.received[1]!.headers['webhook-id'], delivery!.id);

        const delayed = await client.submit('limited', { n: 3 }, { delay: '1h' });
        const waits = Date.parse(delayed.runAt) - Date.parse(delayed.createdAt);
        assert.ok(waits >= 3_599_000 && waits <= 3_601_000, `runAt is an hour after createdAt (${waits} ms)`);
        await client.cancel(delayed.id);
        const bad = await client.submit('limited', { n: 4 }, { delay: 1000, runAt }).catch((e: unknown) => e);
        assert.ok(bad instanceof WaitlessApiError && bad.status === 422, 'runAt and delay together are refused');
      } finally {
        await receiver.close();
      }
    });

    it('manages webhook endpoints and secrets; verifyWebhook takes the secrets as the API lists them', async () => {
      const receiver = await startReceiver();
      try {
        const endpoint = await client.createWebhookEndpoint({ url: receiver.url, events: ['job.completed'] });
        assert.deepEqual(endpoint.events, ['job.completed']);
        assert.ok((await client.webhookEndpoints()).some((e) => e.id === endpoint.id));
        const job = await client.submit('echo', { text: `endpoint ${backend}` });
        assert.deepEqual(await client.result(job.id), { echo: `endpoint ${backend}` });
        await eventually(() => receiver.received.length >= 1, 'the endpoint receives job.completed');
        const message = receiver.received.find((r) => r.body.includes(job.id))!;
        const secrets = await client.webhookSecrets();
        const verified = await verifyWebhook({ headers: message.headers, body: message.body }, secrets);
        assert.equal((verified.payload as { type: string }).type, 'job.completed');

        const rotated = await client.rotateWebhookSecret({ overlapSeconds: 60 });
        assert.ok(rotated.secret.startsWith('whsec_'));
        const both = await client.webhookSecrets();
        assert.equal(both[0]!.secret, rotated.secret, 'newest first');
        assert.ok(both.some((s) => s.secret === secrets[0]!.secret), 'the previous secret still signs during the overlap');
        await verifyWebhook({ headers: message.headers, body: message.body }, both);

        await client.deleteWebhookEndpoint(endpoint.id);
        assert.ok(!(await client.webhookEndpoints()).some((e) => e.id === endpoint.id));
        const gone = await client.deleteWebhookEndpoint(endpoint.id).catch((e: unknown) => e);
        assert.ok(gone instanceof WaitlessApiError && gone.status === 404);
      } finally {
        await receiver.close();
      }
    });

    it('jobChanges() streams the changes of the tenant\'s jobs', async () => {
      const controller = new AbortController();
      const seen: JobChange[] = [];
      const stream = client.jobChanges({ signal: controller.signal });
      const first = stream.next(); // opens the stream before the job exists
      const job = await client.submit('echo', { text: `changes ${backend}` });
      const reading = (async () => {
        let next = await first;
        while (!next.done) {
          seen.push(next.value);
          if (next.value.type === 'job' && next.value.job.id === job.id && next.value.job.done) return;
          next = await stream.next();
        }
      })();
      // Bounded: the stream is cut (and `reading` rejects) if the change does not come.
      const timer = setTimeout(() => controller.abort(new Error('The completed job did not show in the tenant stream.')), 15_000);
      try {
        await reading;
      } finally {
        clearTimeout(timer);
        controller.abort();
      }
      const mine = seen.filter((c): c is Extract<JobChange, { type: 'job' }> => c.type === 'job' && c.job.id === job.id);
      assert.equal(mine.at(-1)!.job.status, 'completed');
      assert.ok(!('input' in mine[0]!.job), 'summaries, without the input');
    });

    it('recover() puts a failed job back in the queue', async () => {
      const job = await client.submit('boom', { why: `recover ${backend}` });
      await client.result(job.id).catch(() => {});
      const recovered = await client.recover(job.id);
      assert.equal(recovered.status, 'queued');
      await client.result(job.id).catch(() => {});
      assert.equal((await client.get(job.id)).status, 'failed');
    });

    it('list() filters by status and name and pages with the cursor', async () => {
      const text = `list ${backend}`;
      for (let i = 0; i < 3; i++) await client.submit('echo', { text });
      await eventually(async () => (await jobsWith('echo', text)).every((j) => j.done) && true, 'list jobs done');
      const first = await client.list({ name: 'echo', status: ['completed'], limit: 2 });
      assert.equal(first.jobs.length, 2);
      assert.ok(first.nextCursor);
      assert.ok(first.jobs.every((j) => j.name === 'echo' && j.status === 'completed'));
      const second = await client.list({ name: 'echo', status: 'completed', limit: 2, cursor: first.nextCursor });
      assert.ok(second.jobs.every((j) => !first.jobs.some((f) => f.id === j.id)));
      const bad = await client.list({ limit: 1000 }).catch((e: unknown) => e);
      assert.ok(bad instanceof WaitlessApiError);
      assert.equal(bad.status, 400);
    });
  });
}

const isLongPollUrl = (url: string) => /[?&]wait=/.test(url);

/** What a watch made from snapshots must show: statuses in order, the terminal one, no repeats. */
function assertDegraded(events: WatchEvent[], text: string): void {
  assert.ok(events.length > 0);
  assert.ok(
    events.every((e) => e.synthesized === true),
    'synthesized',
  );
  for (let i = 1; i < events.length; i++) assert.ok(events[i]!.seq > events[i - 1]!.seq, 'sequence numbers only grow');
  const seen = statuses(events);
  assert.ok(seen.includes('running'), `running seen (${seen.join(',')})`);
  assert.equal(seen.at(-1), 'completed');
  assert.deepEqual(
    seen.filter((s) => s !== 'queued'),
    ['running', 'completed'],
  );
  const last = events.at(-1)!;
  assert.ok(isTerminalEvent(last));
  assert.deepEqual(last.data.result, { echo: text });
  assert.equal(events.filter((e) => e.type === 'output').map((e) => e.data.text).join(''), `${text} `);
}
