import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { nodeVersionProblem } from '../bin/check-node.js';
import { formatLogLine } from '../src/cli/log-format.ts';
import { sourceEntries } from '../src/cli/source-entries.ts';
import type { Job } from '../src/job/model.ts';
import { eventually } from './helpers.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const CLI = join(ROOT, 'src/cli/main.ts');
/** The command people run: checks the Node version, and in a clone maps 'waitless' to src/. */
const BIN = join(ROOT, 'bin/waitless.js');

/** Every process a test starts, killed when the file ends whatever happened. */
const children = new Set<ChildProcess>();
after(() => {
  for (const child of children) child.kill('SIGKILL');
});

interface DevProcess {
  child: ChildProcess;
  url: string;
  output: () => string;
  exited: Promise<number | null>;
}

/**
 * Starts `waitless dev` on a free port and waits for the URL it prints. The child is registered
 * for cleanup before anything is awaited, so a start that fails leaves nothing running.
 */
async function startDev(dataDir: string, flags: string[] = [], entry = CLI): Promise<DevProcess> {
  const child = spawn(process.execPath, [entry, 'dev', '--port', '0', '--data', dataDir, ...flags], {
    env: { ...process.env, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await eventually(
    () => {
      if (child.exitCode !== null) throw new Error(`waitless dev exited with ${child.exitCode}:\n${output}`);
      return /API:\s+(http:\/\/127\.0\.0\.1:\d+)\/v1\/jobs/.exec(output)?.[1];
    },
    'dev prints its URL',
    30_000,
  );
  return { child, url, output: () => output, exited };
}

/** Runs the CLI to its end (killed after 60 s); answers its exit code and output. */
function runCli(args: string[], options: { entry?: string; node?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      options.node ?? process.execPath,
      [options.entry ?? CLI, ...args],
      { env: { ...process.env, LOG_LEVEL: 'silent', ...options.env }, timeout: 60_000, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => {
        children.delete(child);
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr });
      },
    );
    children.add(child);
  });
}

const submit = (url: string, name: string, input: unknown) =>
  fetch(`${url}/v1/jobs/${name}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input }) });

describe('waitless dev', () => {
  let dataDir = '';
  after(async () => {
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('serves the demo job, shuts down gracefully on Ctrl-C, and the job survives the restart', async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'waitless-dev-'));
    // A short grace period, so Ctrl-C hands the running job back instead of waiting for it.
    const first = await startDev(dataDir, ['--shutdown-grace', '200ms']);
    assert.match(first.output(), /analyze-document/);
    assert.match(first.output(), /--jobs/, 'the banner says how to bring jobs of your own');
    assert.match(first.output(), /curl -i -X POST/);

    const response = await submit(first.url, 'analyze-document', { text: 'Incident report: the payment service was slow for an hour', seconds: 6 });
    assert.equal(response.status, 202);
    const { id, fallback } = (await response.json()) as Job;
    assert.match(String((fallback?.result as { summary?: string } | undefined)?.summary), /Incident report: the payment service was slow for an hour/, 'the demo job answers at once with its fallback');
    assert.match(first.output(), /Dashboard: http:\/\/127\.0\.0\.1:\d+\/dashboard/);
    const dashboard = await fetch(`${first.url}/dashboard/`);
    assert.equal(dashboard.status, 200);
    assert.match(dashboard.headers.get('content-type') ?? '', /text\/html/);
    const root = await fetch(`${first.url}/`, { redirect: 'manual' });
    assert.equal(root.status, 302, 'GET / sends a person to the dashboard');
    assert.equal(root.headers.get('location'), '/dashboard');
    await eventually(async () => {
      const job = (await (await fetch(`${first.url}/v1/jobs/${id}`)).json()) as Job;
      return job.status === 'running' && job.progress;
    }, 'the demo job reports progress');

    // Ctrl-C mid-job: the demo job honours its signal, so it is handed back to the queue.
    first.child.kill('SIGINT');
    assert.equal(await first.exited, 0);

    const second = await startDev(dataDir);
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

  it('says so and exits when its port is taken, before it opens the database', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as AddressInfo;
    const data = join(tmpdir(), `waitless-never-${process.pid}-${port}`);
    try {
      const result = await runCli(['dev', '--port', String(port), '--data', data]);
      assert.equal(result.code, 2);
      assert.match(result.stderr, new RegExp(`port ${port} .*already in use`));
      assert.equal(existsSync(data), false, 'no database folder was created');
    } finally {
      blocker.close();
      await rm(data, { recursive: true, force: true });
    }
  });
});

describe('a jobs module of your own, inside the clone', () => {
  let dir = '';
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const [how, entry] of [
    ['npx waitless', BIN],
    ['node src/cli/main.ts', CLI],
  ] as const) {
    it(`imports 'waitless' without a build, and a NonRetryableError fails the job after one attempt (${how})`, async () => {
      // Inside the clone, where 'waitless' resolves to the package itself (dist/ if built): the
      // CLI run from source maps it to the same source files, so the error class is one class.
      dir ||= await mkdtemp(join(ROOT, '.waitless-jobs-'));
      const module = join(dir, 'jobs.ts');
      await writeFile(
        module,
        [
          "import { defineJob, NonRetryableError } from 'waitless';",
          "import { z } from 'zod';",
          'export const refuse = defineJob({',
          "  name: 'refuse',",
          '  input: z.object({}),',
          '  retry: { attempts: 5, initialDelay: 10 },',
          "  async run() { throw new NonRetryableError('not worth another try'); },",
          '});',
          '',
        ].join('\n'),
      );
      const dev = await startDev('memory://', ['--jobs', module], entry);
      assert.match(dev.output(), /Jobs:\s+refuse \(from .*jobs\.ts\)/, 'the banner names the module and its jobs');
      const response = await submit(dev.url, 'refuse', {});
      assert.equal(response.status, 202);
      const { id } = (await response.json()) as Job;
      const done = await eventually(async () => {
        const job = (await (await fetch(`${dev.url}/v1/jobs/${id}`)).json()) as Job;
        return job.done && job;
      }, 'the job ends', 30_000);
      assert.equal(done.status, 'failed');
      assert.equal(done.attempt, 1, 'not retried: the worker recognised NonRetryableError');
      assert.equal(done.error?.name, 'NonRetryableError');
      dev.child.kill('SIGTERM');
      assert.equal(await dev.exited, 0);
    });
  }

  it('names the module when it does not load', async () => {
    const broken = join(await mkdtemp(join(tmpdir(), 'waitless-broken-')), 'broken-jobs.ts');
    await writeFile(broken, 'export const oops = (;\n');
    const result = await runCli(['dev', '--port', '0', '--data', 'memory://', '--jobs', broken], { entry: BIN });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /the jobs module .*broken-jobs\.ts failed to load: SyntaxError/);
    await rm(join(broken, '..'), { recursive: true, force: true });
  });
});

describe('waitless keys', () => {
  it('revoke of an unknown key says so and exits non-zero', async () => {
    const result = await runCli(['keys', 'revoke', '00000000-0000-0000-0000-000000000000', '--database', 'memory://']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /no active key 00000000-0000-0000-0000-000000000000/);
  });
});

describe('the Node version check', () => {
  it('names the version needed and the one running', () => {
    assert.equal(nodeVersionProblem('24.1.0', '22.18'), undefined);
    assert.equal(nodeVersionProblem('22.18.0', '22.18'), undefined);
    assert.equal(nodeVersionProblem('v23.0.0', '22.18'), undefined);
    assert.match(nodeVersionProblem('22.17.1', '22.18') ?? '', /needs Node\.js 22\.18 or newer .*this is Node\.js 22\.17\.1/);
    assert.match(nodeVersionProblem('v20.19.0', '22.18') ?? '', /this is Node\.js 20\.19\.0/);
  });

  const oldNode = '/usr/bin/node';
  const oldVersion = existsSync(oldNode) ? /^v(\S+)/.exec(versionOf(oldNode))?.[1] : undefined;
  it('stops an older Node before it fails on TypeScript', { skip: oldVersion && nodeVersionProblem(oldVersion) ? false : `no Node older than required at ${oldNode}` }, async () => {
    const result = await runCli(['dev', '--port', '0', '--data', 'memory://'], { entry: BIN, node: oldNode });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /needs Node\.js 22\.18 or newer/);
    assert.doesNotMatch(result.stderr, /ERR_UNKNOWN_FILE_EXTENSION/);
  });
});

describe('running from the source', () => {
  it("maps 'waitless' and each subpath to the file its export is compiled from", () => {
    const root = new URL('../', import.meta.url);
    const entries = sourceEntries(root);
    assert.equal(entries.get('waitless'), new URL('src/index.ts', root).href);
    assert.equal(entries.get('waitless/client'), new URL('src/client/index.ts', root).href);
    assert.deepEqual([...entries.keys()].sort(), ['waitless', 'waitless/client', 'waitless/llm', 'waitless/react', 'waitless/reconciler']);
    for (const url of entries.values()) assert.ok(existsSync(new URL(url)), `${url} exists`);
  });
});

describe('logs', () => {
  it('are JSON when piped, readable in a terminal', () => {
    const line = JSON.stringify({ level: 50, time: Date.UTC(2026, 0, 2, 3, 4, 5, 6), pid: 1, hostname: 'h', jobId: 'j-1', msg: 'job failed', err: { stack: 'Error: boom\n    at run' } });
    assert.equal(formatLogLine(line, false), '03:04:05.006 ERROR job failed  jobId=j-1\n    Error: boom\n        at run\n');
    assert.match(formatLogLine(line, true), /\x1b\[31mERROR\x1b\[0m/);
    assert.equal(formatLogLine('not json', false), 'not json');
  });

  for (const [format, expected] of [
    ['json', /^\{"level":30,.*"url":"http:\/\/127\.0\.0\.1:\d+","msg":"listening"\}$/m],
    ['pretty', /^\d\d:\d\d:\d\d\.\d{3} INFO  listening {2}url=http:\/\/127\.0\.0\.1:\d+$/m],
  ] as const) {
    it(`the CLI writes ${format} logs with LOG_FORMAT=${format} (JSON is the default when not a terminal)`, async () => {
      const child = spawn(process.execPath, [CLI, 'dev', '--port', '0', '--data', 'memory://'], {
        env: { ...process.env, LOG_LEVEL: 'info', LOG_FORMAT: format === 'json' ? '' : format },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.add(child);
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      await eventually(() => expected.test(output), `a ${format} "listening" line in:\n${output}`, 30_000);
      child.kill('SIGKILL');
    });
  }
});

/** The version string of another node binary, synchronously, for a skip decision. */
function versionOf(node: string): string {
  try {
    return execFileSync(node, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  } catch {
    return '';
  }
}
