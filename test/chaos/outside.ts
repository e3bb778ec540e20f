/**
 * The world outside Waitless in the chaos scenario, on loopback: the service the steps call for
 * their side effects (it records every call before it answers, and holds the gates the
 * superseded jobs wait on) and the user's webhook receiver.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyWebhook } from '../../src/client/verify.ts';
import type { EffectCall } from './jobs.ts';


export interface EffectRecord extends EffectCall {
  receipt: string;
}

/** The service steps call for their side effects (it records every call before it answers), and the gates. */
export async function startEffects(): Promise<{ url: string; calls: EffectRecord[]; openGates(): void; close(): Promise<void> }> {
  const calls: EffectRecord[] = [];
  let gatesOpen = false;
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url?.startsWith('/gates/')) return json(res, 200, { open: gatesOpen });
    if (req.method !== 'POST' || req.url !== '/effects') return json(res, 404, {});
    void readBody(req).then((body) => {
      const call = JSON.parse(body) as EffectCall;
      const receipt = `${call.jobId}/${call.step}/a${call.attempt}/#${calls.length}`;
      calls.push({ ...call, receipt });
      json(res, 200, { receipt });
    });
  });
  const url = await listen(server);
  return { url, calls, openGates: () => (gatesOpen = true), close: () => closeServer(server) };
}

export type ReceiverMode = 'up' | '503' | 'close';

export interface RawDelivery {
  webhookId: string;
  mode: ReceiverMode;
  outcome: 'applied' | 'duplicate' | 'other-event' | '503' | 'closed' | 'unverified';
}

/**
 * The user's webhook receiver: verifies each message (Standard Webhooks, the tenant's secrets),
 * applies a `job.completed` result once per job id (an apply idempotent in itself, as the
 * client's documentation recommends), and keeps every raw delivery, down or up.
 */
export async function startReceiver(secrets: () => string[]) {
  const raw: RawDelivery[] = [];
  const applied = new Map<string, { result: unknown; webhookId: string }>();
  /** 2xx answers per webhook-id: more than one is a delivery sent again after it was acknowledged. */
  const acked = new Map<string, number>();
  /** Events other than job.completed, by job id. */
  const otherEvents = new Map<string, string[]>();
  let mode: ReceiverMode = 'up';
  const server = createServer((req, res) => {
    void readBody(req).then(async (body) => {
      const webhookId = String(req.headers['webhook-id'] ?? '');
      const seen = mode;
      if (seen === '503') {
        raw.push({ webhookId, mode: seen, outcome: '503' });
        return json(res, 503, { detail: 'down for maintenance' });
      }
      if (seen === 'close') {
        raw.push({ webhookId, mode: seen, outcome: 'closed' });
        req.socket.destroy();
        return;
      }
      let message;
      try {
        message = await verifyWebhook({ headers: req.headers, body }, secrets());
      } catch {
        raw.push({ webhookId, mode: seen, outcome: 'unverified' });
        return json(res, 401, {});
      }
      const payload = message.payload as { type: string; data: { id: string; result?: unknown } };
      const jobId = payload.data.id;
      let outcome: RawDelivery['outcome'];
      if (payload.type !== 'job.completed') {
        otherEvents.set(jobId, [...(otherEvents.get(jobId) ?? []), payload.type]);
        outcome = 'other-event';
      } else if (applied.has(jobId)) {
        outcome = 'duplicate';
      } else {
        applied.set(jobId, { result: payload.data.result, webhookId: message.id });
        outcome = 'applied';
      }
      raw.push({ webhookId: message.id, mode: seen, outcome });
      acked.set(message.id, (acked.get(message.id) ?? 0) + 1);
      res.writeHead(204).end();
    });
  });
  const url = `${await listen(server)}/hooks`;
  return {
    url,
    raw,
    applied,
    acked,
    otherEvents,
    setMode: (next: ReceiverMode) => (mode = next),
    close: () => closeServer(server),
  };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => resolve(body));
    req.on('error', () => resolve(body));
  });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}
