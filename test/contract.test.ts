import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SUBMIT_BODY_FIELDS } from '../src/client/client.ts';
import { parseRetryAfter as clientParseRetryAfter } from '../src/client/index.ts';
import { retryAfterSeconds } from '../src/contract/cadence.ts';
import { type FoldedJob, foldJobEvent, isTerminalEvent, parseJobEvent } from '../src/contract/job-events.ts';
import { parseRetryAfter } from '../src/contract/retry-after.ts';
import { readSse, type SseMessage } from '../src/contract/sse.ts';
import { JOB_STATUSES, TERMINAL_STATUSES } from '../src/contract/statuses.ts';
import { submitRequestSchema } from '../src/contract/submit.ts';
import { TERMINAL_WEBHOOK_EVENTS } from '../src/contract/webhook-events.ts';
import type { JobEvent } from '../src/job/model.ts';
import { parseRetryAfter as senderParseRetryAfter } from '../src/webhooks/deliver.ts';

/** A body that delivers `text` in the given pieces. */
function body(pieces: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const piece of pieces) controller.enqueue(encoder.encode(piece));
      controller.close();
    },
  });
}

async function messages(pieces: string[], comments: string[] = []): Promise<SseMessage[]> {
  const out: SseMessage[] = [];
  for await (const message of readSse(body(pieces), { onComment: (c) => comments.push(c) })) out.push(message);
  return out;
}

describe('the contract', () => {
  it('reads SSE with CRLF, CR and LF line ends split across chunks, a BOM, comments, multi-line data and ids', async () => {
    const text = '\ufeff: hello\r\nid: 1\r\nevent: progress\r\ndata: {"a":\r\ndata:1}\r\n\r\nid: 2\rdata: x\r\rdata:no-space\n\nretry: 50\nevent: e\n\ndata: unterminated';
    const comments: string[] = [];
    const oneByOne = await messages([...text], comments);
    assert.deepEqual(oneByOne, [
      { event: 'progress', data: '{"a":\n1}', id: '1' },
      { event: undefined, data: 'x', id: '2' },
      { event: undefined, data: 'no-space', id: undefined },
    ]);
    assert.deepEqual(comments, ['hello']);
    assert.deepEqual(await messages([text]), oneByOne, 'the same messages when the text comes in one chunk');
  });

  it('reads a job event from an SSE message, and nothing else', () => {
    const event: JobEvent = { seq: 3, type: 'output', data: { text: 'hi' }, at: '2026-01-01T00:00:00.000Z' };
    assert.deepEqual(parseJobEvent(JSON.stringify(event), '3'), event);
    assert.deepEqual(parseJobEvent(JSON.stringify({ ...event, seq: undefined }), '3'), event, 'the SSE id stands in for a missing seq');
    for (const junk of ['', 'not json', '{}', '{"type":"other","seq":1}', '{"type":"status"}', '[1]']) assert.equal(parseJobEvent(junk), undefined, junk);
  });

  it('folds events into a job: status, attempt, progress, output (afresh per attempt), result and error', () => {
    let job: FoldedJob & { name: string } = { name: 'kept', status: 'queued', done: false, attempt: 0, output: '', version: 1, updatedAt: 'a' };
    const events: JobEvent[] = [
      { seq: 1, type: 'status', data: { status: 'queued' }, at: 'old' },
      { seq: 2, type: 'status', data: { status: 'running', attempt: 1 }, at: 'b' },
      { seq: 3, type: 'output', data: { text: 'one ' }, at: 'c' },
      { seq: 4, type: 'status', data: { status: 'queued', attempt: 1, error: { message: 'retry' } }, at: 'd' },
      { seq: 5, type: 'status', data: { status: 'running', attempt: 2 }, at: 'e' },
      { seq: 6, type: 'output', data: { text: 'two' }, at: 'f' },
      { seq: 7, type: 'progress', data: { percent: 50 }, at: 'g' },
      { seq: 8, type: 'step', data: { name: 's', status: 'started' }, at: 'h' },
      { seq: 9, type: 'status', data: { status: 'completed', attempt: 2, result: { ok: true } }, at: 'i' },
    ];
    for (const event of events) job = foldJobEvent(job, event);
    assert.deepEqual(job, {
      name: 'kept',
      status: 'completed',
      done: true,
      attempt: 2,
      output: 'two',
      progress: { percent: 50 },
      version: 9,
      updatedAt: 'i',
      result: { ok: true },
      error: { message: 'retry' },
    });
    assert.ok(isTerminalEvent(events.at(-1)!));
    assert.ok(!isTerminalEvent(events[0]!));
    assert.equal(foldJobEvent(job, events[2]!), job, 'an event already folded changes nothing');
  });

  it('has one Retry-After rule, for the client and the webhook sender: whole seconds or an HTTP date', () => {
    assert.equal(clientParseRetryAfter, parseRetryAfter);
    assert.equal(senderParseRetryAfter, parseRetryAfter);
    const now = Date.parse('Wed, 21 Oct 2015 07:28:00 GMT');
    assert.equal(parseRetryAfter('0', now), 0);
    assert.equal(parseRetryAfter(' 120 ', now), 120_000);
    assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:28:30 GMT', now), 30_000);
    assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:00:00 GMT', now), 0);
    for (const junk of [undefined, null, '', 'soon', '-1', '1.5']) assert.equal(parseRetryAfter(junk, now), undefined, String(junk));
  });

  it('the poll cadence is front-loaded', () => {
    assert.deepEqual([0, 9_999, 10_000, 60_000, 5 * 60_000, 15 * 60_000, 86_400_000].map(retryAfterSeconds), [1, 1, 2, 5, 15, 30, 30]);
  });

  it('the terminal statuses and terminal webhook events are the same set', () => {
    assert.deepEqual(
      TERMINAL_WEBHOOK_EVENTS.map((e) => e.slice('job.'.length)),
      JOB_STATUSES.filter((s) => TERMINAL_STATUSES.has(s)),
    );
  });

  it("the client's submit options cover every field the HTTP schema accepts", () => {
    assert.deepEqual([...SUBMIT_BODY_FIELDS].sort(), Object.keys(submitRequestSchema.shape).sort());
  });
});
