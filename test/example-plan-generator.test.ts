/**
 * The plan-generator example (examples/plan-generator) as a user runs it: Purple is
 * `waitless serve` on PostgreSQL with a key from `waitless keys create`, Green is the example
 * app, each a real process on a free loopback port. Green's status checks run 60 times faster
 * than the seed's schedule (1 s, 1 s, 2 s, 4 s, 8 s…) so the safety net acts within seconds.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { dropSchema, eventually, freshSchema, POSTGRES_URL } from './helpers.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = 'src/cli/main.ts';

interface Plan {
  id: string;
  jobId: string | null;
  state: 'submitting' | 'pending' | 'applied' | 'stale' | 'failed';
  settledBy: 'webhook' | 'poll' | 'give_up' | null;
  message: string | null;
  tasks: string[] | null;
  applyCount: number;
}

/** Spawns a node process and resolves with what `ready` finds in a line of its stdout (its URL). */
function start(args: string[], env: NodeJS.ProcessEnv, ready: (line: string) => string | undefined, children: ChildProcess[]): Promise<string> {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const output: string[] = [];
  child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${args.join(' ')} not ready in 15 s:\n${output.join('')}`)), 15_000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      output.push(`${line}\n`);
      const url = ready(line);
      if (url) {
        clearTimeout(timer);
        resolve(url);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${args.join(' ')} exited with ${code}:\n${output.join('')}`));
    });
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

test('plan-generator example: Purple serves, Green applies each plan once, by webhook or by poll', { timeout: 60_000 }, async (t) => {
  const children: ChildProcess[] = [];
  const purpleSchema = freshSchema();
  const greenSchema = freshSchema();
  t.after(async () => {
    await Promise.all(children.map(stop));
    await dropSchema(purpleSchema);
    await dropSchema(greenSchema);
  });

  const { stdout } = await promisify(execFile)(process.execPath, [CLI, 'keys', 'create', '--tenant', 'green', '--database', POSTGRES_URL, '--schema', purpleSchema], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'warn' },
    timeout: 30_000,
    killSignal: 'SIGKILL',
  });
  const apiKey = /wl_\S+/.exec(stdout)?.[0];
  assert.ok(apiKey, `keys create printed a key: ${stdout}`);

  const purpleArgs = [CLI, 'serve', '--jobs', 'examples/plan-generator/purple/jobs.ts', '--port', '0', '--host', '127.0.0.1'];
  const purpleFlags = ['--database', POSTGRES_URL, '--schema', purpleSchema, '--webhook-allow', '127.0.0.1', '--webhook-retry', '1s,5s'];
  // Purple logs JSON (pino); its "listening" line carries the URL.
  const listening = (line: string) => (line.includes('"msg":"listening"') ? (JSON.parse(line) as { url: string }).url : undefined);
  const purpleUrl = await start([...purpleArgs, ...purpleFlags], { LOG_LEVEL: 'info' }, listening, children);
  const green = await start(
    ['examples/plan-generator/green/app.ts'],
    { PURPLE_URL: purpleUrl, PURPLE_API_KEY: apiKey, PORT: '0', GREEN_DATABASE: POSTGRES_URL, GREEN_SCHEMA: greenSchema, CADENCE_DIVISOR: '60' },
    (line) => /^green listening on (http:\/\/\S+)/.exec(line)?.[1],
    children,
  );

  const submit = async (body: { clickId: string; prd: string; minutes: number }): Promise<Plan> => {
    const response = await fetch(`${green}/plans`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal(response.status, 202, await response.clone().text());
    return (await response.json()) as Plan;
  };
  const plan = async (id: string) => (await (await fetch(`${green}/plans/${id}`)).json()) as Plan;
  const settled = (id: string, what: string) =>
    eventually(async () => {
      const p = await plan(id);
      return p.state !== 'pending' && p.state !== 'submitting' && p;
    }, what);

  await t.test('with webhooks working, the plan is applied once, by the webhook; a double click is one job', async () => {
    // A double click: the same click id is the same Idempotency-Key, so the same job.
    const [first, second] = await Promise.all([
      // 5.4 s: it ends midway between the checks at 4 s and 8 s, so the webhook has seconds to win.
      submit({ clickId: 'click-1', prd: 'Add a wishlist. Email when a price drops', minutes: 0.09 }),
      submit({ clickId: 'click-1', prd: 'Add a wishlist. Email when a price drops', minutes: 0.09 }),
    ]);
    assert.ok(first.jobId);
    assert.equal(second.jobId, first.jobId);
    // The user asks again for the same PRD: the first answer, when it comes, is stale.
    const older = await submit({ clickId: 'search-1', prd: 'Search', minutes: 0.04 });
    const newer = await submit({ clickId: 'search-2', prd: 'Search', minutes: 0.01 });

    const applied = await settled('click-1', 'click-1 settled');
    assert.equal(applied.state, 'applied');
    assert.equal(applied.settledBy, 'webhook');
    assert.equal(applied.applyCount, 1);
    assert.deepEqual(applied.tasks, ['Implement: Add a wishlist (in acme/shop)', 'Implement: Email when a price drops (in acme/shop)', 'Write tests for the new behaviour', 'Update the docs']);

    assert.equal((await settled(newer.id, 'newer plan settled')).state, 'applied');
    const stale = await settled(older.id, 'older plan settled');
    assert.equal(stale.state, 'stale');
    assert.equal(stale.applyCount, 0);
    assert.equal(stale.tasks, null);
  });

  await t.test('with webhooks dropped, the reconciler polls and applies it; the late webhook changes nothing', async () => {
    const toggled = (await (await fetch(`${green}/toggle`, { method: 'POST' })).json()) as { dropWebhooks: boolean };
    assert.equal(toggled.dropWebhooks, true);
    const submitted = await submit({ clickId: 'click-2', prd: 'Dark mode', minutes: 0.02 });

    const applied = await settled('click-2', 'click-2 settled');
    assert.equal(applied.state, 'applied');
    assert.equal(applied.settledBy, 'poll');
    assert.equal(applied.applyCount, 1);

    // Purple did try: its first delivery got Green's 503.
    const deliveries = async () =>
      (
        (await (await fetch(`${purpleUrl}/v1/jobs/${submitted.jobId}/deliveries`, { headers: { authorization: `Bearer ${apiKey}` } })).json()) as {
          deliveries: Array<{ status: string; attempts: Array<{ statusCode?: number }> }>;
        }
      ).deliveries;
    const [tried] = await eventually(async () => {
      const list = await deliveries();
      return list[0]?.attempts.length && list;
    }, 'the first delivery recorded');
    assert.equal(tried!.attempts[0]!.statusCode, 503);

    // Webhooks back on: Purple's next retry (1 s or 5 s after the first try) gets through, and is a no-op.
    await fetch(`${green}/toggle`, { method: 'POST' });
    await eventually(async () => (await deliveries())[0]?.status === 'succeeded', 'the retried webhook delivered');
    const after = await plan('click-2');
    assert.equal(after.applyCount, 1);
    assert.equal(after.settledBy, 'poll');
  });
});
