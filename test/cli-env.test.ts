/**
 * The CLI configured from WAITLESS_* variables, as in a container, and a worker started before
 * its PostgreSQL answers. Real processes, a real PostgreSQL behind a TCP forwarder the test opens
 * when it chooses.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FLAGS } from '../src/cli/flags.ts';
import { createWaitless } from '../src/engine.ts';
import { whoRan } from './fixtures/deploy-jobs.ts';
import { dropSchema, eventually, finished, freshSchema, POSTGRES_URL, silentLogger } from './helpers.ts';
import { freePort, tcpProxy } from './tcp-proxy.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const CLI = join(ROOT, 'src/cli/main.ts');
const JOBS = join(ROOT, 'test/fixtures/deploy-jobs.ts');

/** Every process a test starts, killed when the file ends whatever happened. */
const children = new Set<ChildProcess>();
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const child of children) child.kill('SIGKILL');
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

/** The environment with no Waitless variable of the test runner's own leaking in. */
function cleanEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WAITLESS_') && k !== 'DATABASE_URL' && k !== 'PORT'));
  return { ...base, LOG_LEVEL: 'silent', ...env };
}

/** Runs the CLI to its end (killed after 60 s). */
function runCli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [CLI, ...args], { env: cleanEnv(env), timeout: 60_000, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      children.delete(child);
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr });
    });
    children.add(child);
  });
}

/** Starts a long-running CLI process; its JSON log lines are collected. */
function startCli(args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, [CLI, ...args], { env: cleanEnv({ LOG_LEVEL: 'info', LOG_FORMAT: 'json', ...env }), stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const lines = () =>
    output
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { msg: string; [key: string]: unknown });
  return { child, exited, output: () => output, lines };
}

/** Resolves with the exit code, or fails the test after `ms`. */
async function exitWithin(exited: Promise<number | null>, ms: number, what: string): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not exit within ${ms} ms`)), ms)));
  try {
    return await Promise.race([exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe('WAITLESS_* variables', () => {
  it('--help names the variable of every flag that has one', async () => {
    const { code, stdout } = await runCli(['--help'], {});
    assert.equal(code, 0);
    for (const [name, flag] of Object.entries(FLAGS)) {
      assert.match(stdout, new RegExp(`--${name}\\b`), `--${name} in the help`);
      if ('env' in flag) assert.match(stdout, new RegExp(`\\(env ${flag.env}\\)`), `${flag.env} in the help`);
    }
    // Every configuration flag has its variable; only help and the arguments of one keys create or prune do not.
    const without = Object.entries(FLAGS).filter(([, flag]) => !('env' in flag)).map(([name]) => name);
    assert.deepEqual(without.sort(), ['admin', 'dry-run', 'help', 'label', 'max-priority', 'older-than', 'tenant']);
  });

  it('a bad value in a variable is reported naming the variable', async () => {
    const concurrency = await runCli(['worker'], { WAITLESS_JOBS: JOBS, WAITLESS_CONCURRENCY: 'lots', DATABASE_URL: POSTGRES_URL });
    assert.equal(concurrency.code, 2);
    assert.match(concurrency.stderr, /WAITLESS_CONCURRENCY must be a whole number, got "lots"/);

    const flush = await runCli(['worker'], { WAITLESS_JOBS: JOBS, WAITLESS_FLUSH_INTERVAL: 'soon', DATABASE_URL: POSTGRES_URL });
    assert.equal(flush.code, 2);
    assert.match(flush.stderr, /WAITLESS_FLUSH_INTERVAL must be a duration/);

    const demo = await runCli(['worker'], { WAITLESS_JOBS: JOBS, WAITLESS_DEMO: 'maybe', DATABASE_URL: POSTGRES_URL });
    assert.equal(demo.code, 2);
    assert.match(demo.stderr, /WAITLESS_DEMO must be true or false, got "maybe"/);

    const cors = await runCli(['serve', '--jobs', JOBS], { WAITLESS_CORS_ORIGIN: 'https://app.example.com/path', DATABASE_URL: POSTGRES_URL });
    assert.equal(cors.code, 2);
    assert.match(cors.stderr, /WAITLESS_CORS_ORIGIN takes origins/);

    const flagged = await runCli(['worker', '--concurrency', 'lots'], { WAITLESS_JOBS: JOBS, DATABASE_URL: POSTGRES_URL });
    assert.match(flagged.stderr, /--concurrency must be a whole number/, 'a flag is named as the flag');
  });

  it('a flag wins over its variable', async () => {
    // From the variables alone the heartbeat is slower than the lease, which is refused…
    const env = { WAITLESS_JOBS: JOBS, WAITLESS_LEASE: '1s', WAITLESS_HEARTBEAT: '2s' };
    const refused = await runCli(['worker'], { ...env, DATABASE_URL: POSTGRES_URL });
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /WAITLESS_HEARTBEAT \(2000ms\) must be shorter than the lease \(1000ms\)/);
    // …the flag's lease is the one used: the check passes and the next problem (no database) is told.
    const overridden = await runCli(['worker', '--lease', '5s'], env);
    assert.equal(overridden.code, 2);
    assert.match(overridden.stderr, /set DATABASE_URL/);
  });
});

describe('a worker started while PostgreSQL is down', () => {
  it('waits with backoff, saying so, then starts when PostgreSQL answers and runs a job', async () => {
    const schema = freshSchema();
    cleanups.push(() => dropSchema(schema));
    const proxy = tcpProxy(await freePort());
    cleanups.push(() => proxy.close());
    const worker = startCli(['worker'], {
      DATABASE_URL: `postgres://postgres@127.0.0.1:${proxy.port}/test`,
      WAITLESS_SCHEMA: schema,
      WAITLESS_JOBS: JOBS,
      WAITLESS_CONCURRENCY: '2',
      WAITLESS_POLL_INTERVAL: '200ms',
    });
    const retries = () => worker.lines().filter((l) => /^PostgreSQL at 127\.0\.0\.1:\d+ is not reachable/.test(l.msg));
    await eventually(() => {
      if (worker.child.exitCode !== null) throw new Error(`the worker exited with ${worker.child.exitCode}:\n${worker.output()}`);
      return retries().length >= 2;
    }, 'two retry lines', 30_000);
    const [first, second] = retries();
    assert.equal(first!.msg, `PostgreSQL at 127.0.0.1:${proxy.port} is not reachable (ECONNREFUSED); retrying in 1 s`);
    assert.equal(second!.msg, `PostgreSQL at 127.0.0.1:${proxy.port} is not reachable (ECONNREFUSED); retrying in 2 s`, 'the delay doubles');

    await proxy.open();
    await eventually(() => worker.lines().some((l) => l.msg === 'worker started'), 'the worker starts once PostgreSQL answers', 60_000);

    const engine = await createWaitless({ jobs: [whoRan], database: POSTGRES_URL, schema, logger: silentLogger });
    cleanups.push(() => engine.close());
    const { job } = await engine.submit(whoRan, { n: 7 });
    const done = await finished(engine, job.id, 30_000);
    assert.equal(done.status, 'completed');
    assert.deepEqual(done.result, { n: 7, pid: worker.child.pid });

    worker.child.kill('SIGTERM');
    assert.equal(await exitWithin(worker.exited, 30_000, 'the worker'), 0);
  });

  it('serve, meanwhile, is live but not ready, and ready once PostgreSQL answers', async () => {
    const schema = freshSchema();
    cleanups.push(() => dropSchema(schema));
    const proxy = tcpProxy(await freePort());
    cleanups.push(() => proxy.close());
    const servePort = await freePort();
    const serve = startCli(['serve'], {
      DATABASE_URL: `postgres://postgres@127.0.0.1:${proxy.port}/test`,
      WAITLESS_SCHEMA: schema,
      WAITLESS_JOBS: JOBS,
      WAITLESS_PORT: String(servePort),
      WAITLESS_HOST: '127.0.0.1',
    });
    await eventually(() => {
      if (serve.child.exitCode !== null) throw new Error(`serve exited with ${serve.child.exitCode}:\n${serve.output()}`);
      return serve.lines().some((l) => /is not reachable/.test(l.msg));
    }, 'a retry line', 30_000);
    const url = `http://127.0.0.1:${servePort}`;
    assert.equal((await fetch(`${url}/livez`, { signal: AbortSignal.timeout(10_000) })).status, 200, 'live while it waits');
    const starting = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(10_000) });
    assert.equal(starting.status, 503, 'not ready while it waits');
    assert.match(starting.headers.get('content-type') ?? '', /application\/problem\+json/);

    await proxy.open();
    await eventually(async () => (await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(10_000) })).status === 200, 'ready once PostgreSQL answers', 60_000);
    serve.child.kill('SIGTERM');
    assert.equal(await exitWithin(serve.exited, 30_000, 'serve'), 0);
  });

  it('exits cleanly on SIGTERM while it waits', async () => {
    const port = await freePort();
    const worker = startCli(['worker'], { DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/test`, WAITLESS_JOBS: JOBS });
    await eventually(() => {
      if (worker.child.exitCode !== null) throw new Error(`the worker exited with ${worker.child.exitCode}:\n${worker.output()}`);
      return worker.lines().some((l) => /is not reachable/.test(l.msg));
    }, 'a retry line', 30_000);
    worker.child.kill('SIGTERM');
    assert.equal(await exitWithin(worker.exited, 30_000, 'the worker'), 0);
    assert.ok(worker.lines().some((l) => l.msg === 'stopped while waiting for PostgreSQL'));
  });
});
