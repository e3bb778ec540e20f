/**
 * Installing the package as a user would, into fresh apps: from the tarball `npm pack` makes,
 * and from a git URL (npm clones it, installs its devDependencies, builds it on `prepare`, packs
 * it). Both from a snapshot of this working tree committed to a temporary repository. Then the
 * README's Next.js route handler, built with `next build` and served with `next start`, from the
 * same tarball. The registry is reached through npm's cache first (--prefer-offline): the
 * suite's `npm ci` has filled it with most of what these installs need.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { createWaitless } from '../src/engine.ts';
import { POSTGRES_URL, silentLogger } from './helpers.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const children = new Set<ChildProcess>();
let work = '';
/** Ends every child; Next's server runs in a process group of its own, so the whole group. */
function killChildren(): void {
  for (const child of children) {
    if (child.spawnargs.includes('start') && child.pid) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    child.kill('SIGKILL');
  }
}
// Its own group is out of reach of a kill aimed at the run's group (CI's overall bound sends
// SIGTERM to it): this file then ends Next's group itself before going.
process.once('SIGTERM', () => {
  killChildren();
  process.exit(143);
});
process.once('exit', killChildren);
let dropDatabase: (() => Promise<void>) | undefined;
after(async () => {
  killChildren();
  await dropDatabase?.();
  if (work) await rm(work, { recursive: true, force: true });
});

// npm and the scripts it runs use the Node running this test, not an older one on PATH.
const env: NodeJS.ProcessEnv = {
  ...process.env,
  PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`,
  npm_config_prefer_offline: 'true',
  npm_config_audit: 'false',
  npm_config_fund: 'false',
  npm_config_update_notifier: 'false',
  npm_config_loglevel: 'error',
};

/** Runs a command to its end within `timeoutMs` (then it is killed), answering its stdout. */
function run(file: string, args: string[], cwd: string, timeoutMs = 240_000, extraEnv: NodeJS.ProcessEnv = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { cwd, env: { ...env, ...extraEnv }, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      children.delete(child);
      if (error) reject(new Error(`${file} ${args.join(' ')} failed (${error.code ?? error.signal}):\n${stderr}\n${stdout}`));
      else resolve(stdout);
    });
    children.add(child);
  });
}

/** The package's subpaths, each with an export it must have. */
const SUBPATHS: Record<string, string> = {
  waitless: 'createWaitless',
  'waitless/client': 'WaitlessClient',
  'waitless/reconciler': 'createReconciler',
  'waitless/react': 'useJob',
  'waitless/llm': 'streamChat',
};

/** A fresh app with `spec` installed (and react, the optional peer `waitless/react` needs). */
async function appWith(name: string, spec: string): Promise<string> {
  const app = join(work, name);
  await mkdir(app);
  await writeFile(join(app, 'package.json'), JSON.stringify({ name, private: true, type: 'module' }));
  await run('npm', ['install', '--no-save', spec, 'react@19'], app);
  return app;
}

/** Imports every subpath in the app's own process, as its code would, and runs the bin. */
async function checkInstalled(app: string): Promise<void> {
  const pkg = join(app, 'node_modules/waitless');
  assert.ok(existsSync(join(pkg, 'LICENSE')), 'LICENSE is installed');
  assert.ok(!existsSync(join(pkg, 'src')), 'only the build is shipped');
  const map = JSON.parse(await readFile(join(pkg, 'dist/engine.js.map'), 'utf8')) as { sources: string[]; sourcesContent?: string[] };
  assert.equal(map.sourcesContent?.length, map.sources.length, 'source maps carry their sources');

  const script = join(app, 'check.js');
  await writeFile(
    script,
    `const expected = ${JSON.stringify(SUBPATHS)};\n` +
      'for (const [specifier, name] of Object.entries(expected)) {\n' +
      '  const module = await import(specifier);\n' +
      '  if (module[name] === undefined) throw new Error(`${specifier} has no export ${name}`);\n' +
      '}\n' +
      "process.stdout.write('imported ' + Object.keys(expected).join(' '));\n",
  );
  assert.equal(await run(process.execPath, [script], app, 60_000), `imported ${Object.keys(SUBPATHS).join(' ')}`);
  assert.match(await run(process.execPath, [join(app, 'node_modules/.bin/waitless'), '--help'], app, 60_000), /waitless dev/);
}

describe('installing waitless into a fresh app', { timeout: 600_000 }, () => {
  let snapshot = '';
  let tarball = '';

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'waitless-install-'));
    // The working tree as it is (tracked and new files, nothing ignored), committed to a
    // repository of its own.
    snapshot = join(work, 'repo');
    const files = (await run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], ROOT, 60_000)).split('\0').filter(Boolean);
    for (const file of files) {
      if (existsSync(join(ROOT, file))) await cp(join(ROOT, file), join(snapshot, file));
    }
    await run('git', ['init', '-q'], snapshot, 60_000);
    await run('git', ['add', '-A'], snapshot, 60_000);
    await run('git', ['-c', 'user.name=test', '-c', 'user.email=test@localhost', 'commit', '-qm', 'snapshot'], snapshot, 60_000);
    // One pack, built with the project's own devDependencies (npm pack runs `prepare`).
    await symlink(join(ROOT, 'node_modules'), join(snapshot, 'node_modules'), 'dir');
    const packed = JSON.parse(await run('npm', ['pack', '--json', '--pack-destination', work], snapshot)) as { filename: string; files: { path: string }[] }[];
    tarball = join(work, packed[0]!.filename);
    const shipped = packed[0]!.files.map((f) => f.path);
    assert.ok(shipped.includes('LICENSE') && shipped.includes('dist/index.js') && shipped.includes('bin/waitless.js'));
    assert.ok(!shipped.some((p) => p.startsWith('src/') || p.startsWith('test/')), 'no source or tests in the package');
  });

  it('from the tarball npm pack makes: every subpath imports, the bin runs', async () => {
    const app = await appWith('from-tarball', pathToFileURL(tarball).href);
    await checkInstalled(app);
    // `openai`, an optional peer, is not installed here: a demo configured to use a model says
    // so at start, not in every job it runs.
    const refused = await run(process.execPath, [join(app, 'node_modules/.bin/waitless'), 'dev', '--port', '0', '--data', 'memory://'], app, 60_000, {
      WAITLESS_DEMO_LLM_BASE_URL: 'http://127.0.0.1:9/v1',
    }).then(
      () => 'started',
      (error: Error) => error.message,
    );
    assert.match(refused, /WAITLESS_DEMO_LLM_BASE_URL is set, but the "openai" package is not installed: npm install openai/);
  });

  // Bounded apart from the suite's per-test default: npm installs the devDependencies and builds.
  it('from a git URL: npm builds it on prepare, every subpath imports, the bin runs', { timeout: 300_000 }, async () => {
    const app = await appWith('from-git', `git+${pathToFileURL(snapshot).href}`);
    await checkInstalled(app);
    assert.deepEqual(readdirSync(join(app, 'node_modules/waitless')).sort(), ['LICENSE', 'README.md', 'bin', 'dist', 'package.json']);
  });

  it("the README's Next.js route handler builds without opening the database, then serves every method", { timeout: 300_000 }, async () => {
    const app = join(work, 'next-app');
    await mkdir(join(app, 'app/jobs-api/[...path]'), { recursive: true });
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'next-app', private: true, type: 'module' }));
    await writeFile(join(app, 'next.config.mjs'), snippet(readme, '// next.config.mjs'));
    await writeFile(join(app, 'app/jobs-api/[...path]/route.ts'), snippet(readme, '// app/jobs-api/[...path]/route.ts'));
    await writeFile(
      join(app, 'jobs.ts'),
      "import { defineJob } from 'waitless';\nimport { z } from 'zod';\n\nexport const echo = defineJob({ name: 'echo', input: z.object({ text: z.string() }), run: async ({ text }) => ({ text }) });\n",
    );
    await writeFile(join(app, 'app/layout.tsx'), 'export default function RootLayout({ children }: { children: React.ReactNode }) {\n  return <html><body>{children}</body></html>;\n}\n');
    const typescript = (JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> }).devDependencies.typescript!;
    await run('npm', ['install', '--no-save', tarball, 'next@16', 'react@19', 'react-dom@19', `typescript@${typescript}`, '@types/react@19', '@types/node@24'], app, 300_000);

    const next = join(app, 'node_modules/next/dist/bin/next');
    const nextEnv: NodeJS.ProcessEnv = { ...env, NEXT_TELEMETRY_DISABLED: '1' };
    delete nextEnv.DATABASE_URL; // the default, ./.waitless (PGlite), shows whether it was opened
    await new Promise<void>((resolve, reject) => {
      const build = execFile(process.execPath, [next, 'build'], { cwd: app, env: nextEnv, timeout: 300_000, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
        children.delete(build);
        if (error) reject(new Error(`next build failed:\n${stdout}\n${stderr}`));
        else resolve();
      });
      children.add(build);
    });
    assert.equal(existsSync(join(app, '.waitless')), false, 'next build opened no database');

    // Served on a database of its own, where the test can make an API key first (the README's
    // route asks for one).
    const database = `waitless_next_${process.pid}`;
    const admin = new pg.Client({ connectionString: POSTGRES_URL });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${database}`);
    await admin.query(`CREATE DATABASE ${database}`);
    await admin.end();
    dropDatabase = async () => {
      const client = new pg.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      await client.end();
    };
    const databaseUrl = Object.assign(new URL(POSTGRES_URL), { pathname: `/${database}` }).href;
    const keys = await createWaitless({ jobs: [], database: databaseUrl, logger: silentLogger });
    const apiKey = (await keys.apiKeys.create('acme')).token;
    await keys.close();
    const authorization = { authorization: `Bearer ${apiKey}` };

    const port = await freePort();
    const server = spawn(process.execPath, [next, 'start', '-p', String(port), '-H', '127.0.0.1'], { cwd: app, env: { ...nextEnv, DATABASE_URL: databaseUrl }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    children.add(server);
    let output = '';
    server.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    server.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const url = `http://127.0.0.1:${port}/jobs-api`;
    await poll(async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.ok === true, `next start answers:\n${output}`);

    const submitted = await fetch(`${url}/v1/jobs/echo`, { method: 'POST', headers: { 'content-type': 'application/json', ...authorization }, body: JSON.stringify({ input: { text: 'from next' } }) });
    assert.equal(submitted.status, 202, await submitted.clone().text());
    const { id } = (await submitted.json()) as { id: string };
    await poll(
      async () => ((await (await fetch(`${url}/v1/jobs/${id}`, { headers: authorization })).json()) as { status: string }).status === 'completed',
      'the job completes in the worker started on the first request',
    );
    // DELETE and OPTIONS reach Waitless (its problem+json), not Next's 405.
    for (const method of ['DELETE', 'OPTIONS']) {
      const response = await fetch(`${url}/v1/webhooks/endpoints/00000000-0000-0000-0000-000000000000`, { method, headers: authorization });
      assert.equal(response.headers.get('content-type'), 'application/problem+json', `${method} reaches Waitless`);
    }
  });
});

/** The fenced block of the README whose first line is `marker`, its list indentation removed. */
function snippet(readme: string, marker: string): string {
  const lines = readme.split('\n');
  const start = lines.findIndex((line) => line.trim() === marker);
  assert.ok(start > 0 && /^\s*```/.test(lines[start - 1]!), `the README has a block starting with ${marker}`);
  const indent = /^\s*/.exec(lines[start]!)![0].length;
  const end = lines.findIndex((line, i) => i > start && /^\s*```\s*$/.test(line));
  return `${lines.slice(start, end).map((line) => line.slice(indent)).join('\n')}\n`;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** Checks until true, for at most a minute. */
async function poll(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
