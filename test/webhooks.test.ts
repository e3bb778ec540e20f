import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { z } from 'zod';
import { defineJob } from '../src/job/definition.ts';
import type { Job } from '../src/job/model.ts';
import type { WebhookDelivery } from '../src/store/webhook-store.ts';
import { BACKENDS, deferred, eventually, openEngine, startServer, type TestEngine, type TestServer } from './helpers.ts';

interface Received {
  headers: IncomingMessage['headers'];
  body: string;
}

/** A webhook receiver on loopback whose answer each test decides. */
async function startReceiver(answer: (req: Received, n: number) => { status: number; headers?: Record<string, string>; hang?: boolean; delayMs?: number }) {
  const received: Received[] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      const entry = { headers: req.headers, body };
      received.push(entry);
      const reply = answer(entry, received.length);
      if (reply.hang) return; // never answers: the sender's timeout must end it
      const send = () => res.writeHead(reply.status, reply.headers).end(`answer ${reply.status}`);
      if (reply.delayMs) setTimeout(send, reply.delayMs);
      else send();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const gates = new Map<string, ReturnType<typeof deferred<void>>>();
const summarize = defineJob({
  name: 'summarize',
  input: z.object({ text: z.string(), gate: z.string().optional() }),
  run: async ({ text, gate }, ctx) => {
    await ctx.progress({ stage: 'summarizing', percent: 50 });
    if (gate) {
      let g = gates.get(gate);
      if (!g) gates.set(gate, (g = deferred()));
      await g.promise;
    }
    return { summary: text.toUpperCase(), nothing: null };
  },
});

const post = (server: TestServer, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${server.url}/v1/jobs/summarize`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

for (const backend of BACKENDS) {
  describe(`webhooks on ${backend}`, () => {
    let engine: TestEngine;
    let server: TestServer;
    const deliveries = async (id: string) =>
      ((await (await fetch(`${server.url}/v1/jobs/${id}/deliveries`)).json()) as { deliveries: WebhookDelivery[] }).deliveries;
    const secret = async () => ((await (await fetch(`${server.url}/v1/webhooks/secret`)).json()) as { secrets: Array<{ secret: string }> }).secrets;

    before(async () => {
      engine = await openEngine(backend, {
        jobs: [summarize],
        webhooks: { retrySchedule: ['100ms', '100ms', '100ms'], timeout: '500ms', pollInterval: '50ms', ssrf: { allow: ['127.0.0.1'] } },
      });
      engine.waitless.startWorker({ pollInterval: 50 });
      server = await startServer(engine.waitless);
    });
    after(async () => {
      for (const g of gates.values()) g.resolve();
      await server.close();
      await engine.close();
    });

    it('keeps a redelivery asked for while an attempt is in flight: it is sent right after that attempt', async () => {
      // A receiver that takes its time (within the 500 ms timeout) to accept the first request.
      const slow = await startReceiver((_req, n) => ({ status: 200, delayMs: n === 1 ? 300 : 0 }));
      try {
        const submitted = await post(server, { input: { text: 'again' }, webhook: { url: slow.url } });
        const { id } = (await submitted.json()) as Job;
        await eventually(() => slow.received.length === 1, 'first attempt in flight');
        const [inFlight] = await deliveries(id);
        assert.equal(inFlight!.status, 'delivering');
        const redelivered = await fetch(`${server.url}/v1/deliveries/${inFlight!.id}/redeliver`, { method: 'POST' });
        assert.equal(redelivered.status, 202);
        // The first attempt succeeds, and the redelivery asked for meanwhile still follows.
        await eventually(() => slow.received.length === 2, 'redelivered after the in-flight attempt');
        assert.equal(slow.received[1]!.headers['webhook-id'], inFlight!.id);
        await eventually(async () => (await deliveries(id))[0]!.attempts.length === 2, 'both attempts recorded');
      } finally {
        await slow.close();
      }
    });

    it('posts a signed Standard Webhooks message that the reference library verifies', async () => {
      const receiver = await startReceiver(() => ({ status: 204 }));
      try {
        const submitted = await post(server, { input: { text: 'hello' }, webhook: { url: receiver.url } });
        assert.equal(submitted.status, 202);
        const { id } = (await submitted.json()) as Job;
        await eventually(() => receiver.received.length === 1, 'webhook received');
        const [message] = receiver.received;
        const [{ secret: whsec }] = (await secret()) as [{ secret: string }];
        const payload = new Webhook(whsec).verify(message!.body, message!.headers as Record<string, string>) as {
          type: string;
          data: { id: string; status: string; result: unknown; statusUrl: string };
        };
        assert.equal(payload.type, 'job.completed');
        assert.equal(payload.data.id, id);
        assert.deepEqual(payload.data.result, { summary: 'HELLO', nothing: null });
        assert.equal(payload.data.statusUrl, `${server.url}/v1/jobs/${id}`);
        assert.equal(message!.headers['webhook-id'], (await deliveries(id))[0]!.id);
        const [delivery] = await eventually(async () => {
          const list = await deliveries(id);
          return list[0]?.status === 'succeeded' && list;
        }, 'delivery recorded as succeeded');
        assert.equal(delivery!.attempts.length, 1);
        assert.equal(delivery!.attempts[0]!.statusCode, 204);
        assert.ok(delivery!.attempts[0]!.latencyMs >= 0);
      } finally {
        await receiver.close();
      }
    });

    it('retries a receiver that answers 503, honouring Retry-After, and delivers once it recovers', async () => {
      const receiver = await startReceiver((_req, n) => (n <= 2 ? { status: 503, headers: { 'retry-after': '0' } } : { status: 200 }));
      try {
        const { id } = (await (await post(server, { input: { text: 'flaky' }, webhook: { url: receiver.url } })).json()) as Job;
        const [delivery] = await eventually(async () => {
          const list = await deliveries(id);
          return list[0]?.status === 'succeeded' && list;
        }, 'delivered after the receiver recovered');
        assert.deepEqual(delivery!.attempts.map((a) => a.statusCode), [503, 503, 200]);
        assert.equal(delivery!.attempts[0]!.responseExcerpt, 'answer 503');
        assert.equal(new Set(receiver.received.map((r) => r.headers['webhook-id'])).size, 1, 'one webhook-id on every attempt');
        assert.equal(receiver.received.length, 3);
      } finally {
        await receiver.close();
      }
    });

    it('gives up after the schedule, counts a redirect as a failure, and times out a silent receiver', async () => {
      const redirecting = await startReceiver(() => ({ status: 302, headers: { location: 'http://127.0.0.1:1/elsewhere' } }));
      const silent = await startReceiver(() => ({ status: 200, hang: true }));
      try {
        const a = (await (await post(server, { input: { text: 'a' }, webhook: { url: redirecting.url } })).json()) as Job;
        const b = (await (await post(server, { input: { text: 'b' }, webhook: { url: silent.url } })).json()) as Job;
        const [redirected] = await eventually(async () => {
          const list = await deliveries(a.id);
          return list[0]?.status === 'failed' && list;
        }, 'redirect delivery failed', 20_000);
        assert.deepEqual(redirected!.attempts.map((x) => x.statusCode), [302, 302, 302, 302], 'one attempt plus one per scheduled retry');
        const [timedOut] = await eventually(async () => {
          const list = await deliveries(b.id);
          return list[0]?.attempts.length && list;
        }, 'silent receiver attempt recorded', 20_000);
        assert.match(timedOut!.attempts[0]!.error ?? '', /timed out/);
      } finally {
        await redirecting.close();
        await silent.close();
      }
    });

    it('disables an endpoint that answers 410 Gone', async () => {
      const receiver = await startReceiver(() => ({ status: 410 }));
      try {
        const created = await fetch(`${server.url}/v1/webhooks/endpoints`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ url: receiver.url, events: ['job.completed'] }),
        });
        assert.equal(created.status, 201);
        const endpoint = (await created.json()) as { id: string };
        const { id } = (await (await post(server, { input: { text: 'gone' } })).json()) as Job;
        const [delivery] = await eventually(async () => {
          const list = await deliveries(id);
          return list[0]?.status === 'failed' && list;
        }, 'delivery failed on 410');
        assert.equal(delivery!.attempts.length, 1, '410 is not retried');
        const endpoints = ((await (await fetch(`${server.url}/v1/webhooks/endpoints`)).json()) as { endpoints: Array<{ id: string; disabledAt?: string }> }).endpoints;
        assert.ok(endpoints.find((e) => e.id === endpoint.id)?.disabledAt, 'the endpoint is disabled');
        const next = (await (await post(server, { input: { text: 'after' } })).json()) as Job;
        await eventually(async () => (await engine.waitless.get(next.id))?.done, 'next job done');
        assert.equal((await deliveries(next.id)).length, 0, 'a disabled endpoint gets nothing more');
        await fetch(`${server.url}/v1/webhooks/endpoints/${endpoint.id}`, { method: 'DELETE' });
      } finally {
        await receiver.close();
      }
    });

    it('writes the delivery with the terminal state (cancel included) and redelivers on demand', async () => {
      const receiver = await startReceiver(() => ({ status: 200 }));
      try {
        const key = `cancel-${backend}`;
        const { id } = (await (await post(server, { input: { text: 'slow', gate: key }, webhook: { url: receiver.url, events: ['job.cancelled'] } })).json()) as Job;
        assert.equal((await deliveries(id)).length, 0, 'nothing before the job ends');
        await fetch(`${server.url}/v1/jobs/${id}/cancel`, { method: 'POST' });
        const [delivery] = await eventually(async () => {
          const list = await deliveries(id);
          return list[0]?.status === 'succeeded' && list;
        }, 'cancel delivered');
        assert.equal(delivery!.eventType, 'job.cancelled');
        gates.get(key)?.resolve();
        const again = await fetch(`${server.url}/v1/deliveries/${delivery!.id}/redeliver`, { method: 'POST' });
        assert.equal(again.status, 202);
        await eventually(async () => (await deliveries(id))[0]!.attempts.length === 2, 'second attempt recorded');
        assert.equal(receiver.received.filter((r) => r.headers['webhook-id'] === delivery!.id).length, 2);
        assert.equal((await fetch(`${server.url}/v1/deliveries/00000000-0000-7000-8000-000000000000/redeliver`, { method: 'POST' })).status, 404);
      } finally {
        await receiver.close();
      }
    });

    it('sends progress webhooks only to those who ask for them', async () => {
      const receiver = await startReceiver(() => ({ status: 200 }));
      try {
        const { id } = (await (await post(server, { input: { text: 'p' }, webhook: { url: receiver.url, events: ['job.progress', 'job.completed'] } })).json()) as Job;
        await eventually(() => receiver.received.length === 2, 'progress and completion received');
        const types = receiver.received.map((r) => (JSON.parse(r.body) as { type: string; data: { progress?: unknown } }));
        assert.deepEqual(types.map((t) => t.type).sort(), ['job.completed', 'job.progress']);
        assert.deepEqual(types.find((t) => t.type === 'job.progress')!.data.progress, { stage: 'summarizing', percent: 50 });
        assert.deepEqual((await deliveries(id)).map((d) => d.eventType).sort(), ['job.completed', 'job.progress']);
        const bad = await post(server, { input: { text: 'p' }, webhook: { url: receiver.url, events: ['job.exploded'] } });
        assert.equal(bad.status, 422);
      } finally {
        await receiver.close();
      }
    });

    it('signs with the old and the new secret side by side during a rotation', async () => {
      const receiver = await startReceiver(() => ({ status: 200 }));
      try {
        const [{ secret: oldSecret }] = (await secret()) as [{ secret: string }];
        const rotated = await fetch(`${server.url}/v1/webhooks/secret/rotate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"overlapSeconds":3600}' });
        assert.equal(rotated.status, 201);
        const { secret: newSecret } = (await rotated.json()) as { secret: string };
        await post(server, { input: { text: 'rotated' }, webhook: { url: receiver.url } });
        await eventually(() => receiver.received.length === 1, 'received');
        const message = receiver.received[0]!;
        assert.equal(String(message.headers['webhook-signature']).split(' ').length, 2);
        for (const s of [oldSecret, newSecret]) new Webhook(s).verify(message.body, message.headers as Record<string, string>);
      } finally {
        await receiver.close();
      }
    });

    it('refuses unsafe webhook URLs at submit with a problem that says why', async () => {
      for (const url of ['http://10.0.0.1/hook', 'http://169.254.169.254/latest', 'http://[::1]/x', 'ftp://example.com/x']) {
        const response = await post(server, { input: { text: 'x' }, webhook: { url } });
        assert.equal(response.status, 422, url);
        assert.equal(response.headers.get('content-type'), 'application/problem+json');
        assert.match(((await response.json()) as { detail: string }).detail, /refused/);
      }
      const endpoint = await fetch(`${server.url}/v1/webhooks/endpoints`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ url: 'http://192.168.1.1/x' }),
      });
      assert.equal(endpoint.status, 422);
      assert.equal(((await endpoint.json()) as { type: string }).type, '/problems/unsafe-webhook-url');
    });
  });
}

describe('webhook host checks during a DNS outage', () => {
  it('answers 503 with Retry-After instead of refusing the URL for good', async () => {
    const outage = Object.assign(new Error('getaddrinfo EAI_AGAIN hooks.example.com'), { code: 'EAI_AGAIN' });
    const engine = await openEngine('pglite', { jobs: [summarize], webhooks: { ssrf: { lookup: () => Promise.reject(outage) } } });
    const server = await startServer(engine.waitless);
    try {
      const response = await post(server, { input: { text: 'x' }, webhook: { url: 'https://hooks.example.com/x' } });
      assert.equal(response.status, 503);
      assert.equal(response.headers.get('retry-after'), '5');
      assert.match(((await response.json()) as { detail: string }).detail, /could not be checked right now/);
      assert.equal((await engine.waitless.list()).jobs.length, 0, 'no job was created');
      const endpoint = await fetch(`${server.url}/v1/webhooks/endpoints`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ url: 'https://hooks.example.com/x' }),
      });
      assert.equal(endpoint.status, 503);
      assert.equal(endpoint.headers.get('retry-after'), '5');
      assert.deepEqual(await engine.waitless.webhooks.listEndpoints('default'), [], 'no endpoint was created');
    } finally {
      await server.close();
      await engine.close();
    }
  });
});
