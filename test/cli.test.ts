import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Job } from '../src/job/model.ts';
import { eventually } from './helpers.ts';

const CLI = new URL('../src/cli/main.ts', import.meta.url).pathname;

interface DevProcess {
  child: ChildProcess;
  url: string;
  output: () => string;
  exited: Promise<number | null>;
}

/** Starts `waitless dev` on a free port and waits for the URL it prints. */
async function startDev(dataDir: string, ...flags: string[]): Promise<DevProcess> {
  const child = spawn(process.execPath, [CLI, 'dev', '--port', '0', '--data', dataDir, ...flags], {
    env: { ...process.env, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await eventually(() => /API:\s+(http:\/\/127\.0\.0\.1:\d+)\/v1\/jobs/.exec(output)?.[1], 'dev prints its URL', 30_000);
  return { child, url, output: () => output, exited };
}

describe('waitless dev', () => {
  const children: ChildProcess[] = [];
  let dataDir = '';
  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('serves the demo job, shuts down gracefully on Ctrl-C, and the job survives the restart', async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'waitless-dev-'));
    // A short grace period, so Ctrl-C hands the running job back instead of waiting for it.
    const first = await startDev(dataDir, '--shutdown-grace', '200ms');
    children.push(first.child);
    assert.match(first.output(), /analyze-document/);
    assert.match(first.output(), /curl -i -X POST/);

    const response = await fetch(`${first.url}/v1/jobs/analyze-document`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input: { text: 'Incident report: the payment service was slow for an hour', seconds: 6 } }),
    });
    assert.equal(response.status, 202);
    const { id, fallback } = (await response.json()) as Job;
    assert.match(String((fallback?.result as { summary?: string } | undefined)?.summary), /Incident report: the payment service was slow for an hour/, 'the demo job answers at once with its fallback');
    assert.match(first.output(), /Dashboard: http:\/\/127\.0\.0\.1:\d+\/dashboard/);
    const dashboard = await fetch(`${first.url}/dashboard/`);
    assert.equal(dashboard.status, 200);
    assert.match(dashboard.headers.get('content-type') ?? '', /text\/html/);
    await eventually(async () => {
      const job = (await (await fetch(`${first.url}/v1/jobs/${id}`)).json()) as Job;
      return job.status === 'running' && job.progress;
    }, 'the demo job reports progress');

    // Ctrl-C mid-job: the demo job honours its signal, so it is handed back to the queue.
    first.child.kill('SIGINT');
    assert.equal(await first.exited, 0);

    const second = await startDev(dataDir);
    children.push(second.child);
    const done = await eventually(async () => {
      const job = (await (await fetch(`${second.url}/v1/jobs/${id}`)).json()) as Job;
      return job.done && job;
    }, 'the job completes after the restart', 30_000);
    assert.equal(done.status, 'completed');
    assert.equal(done.attempt, 1, 'a shutdown hand-back does not use up an attempt');
    const handBack = await fetch(`${second.url}/v1/jobs/${id}/events`).then((r) => r.text());
    assert.match(handBack, /"reason":"worker_shutdown"/, 'the event log shows the hand-back');
    assert.match((done.result as { summary: string }).summary, /words/);
    assert.ok(done.output.length > 0, 'partial output was streamed');
    second.child.kill('SIGTERM');
    assert.equal(await second.exited, 0);
  });

  it('says so and exits when its port is taken, leaving nothing running', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as AddressInfo;
    try {
      const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        execFile(process.execPath, [CLI, 'dev', '--port', String(port), '--data', 'memory://'], { env: { ...process.env, LOG_LEVEL: 'silent' } }, (error, _stdout, stderr) =>
          resolve({ code: error ? (error.code as number) : 0, stderr }),
        );
      });
      assert.equal(result.code, 2);
      assert.match(result.stderr, new RegExp(`port ${port} .*already in use`));
    } finally {
      blocker.close();
    }
  });
});
