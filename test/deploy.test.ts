/**
 * The Dockerfile and docker-compose.yml cannot be run here (no Docker), so they are checked
 * against what they name: the CLI's commands, flags and variables, the packed package's files,
 * and the build context. Then each compose service's command runs as a real process with the
 * service's environment (only the database address changed), in the compose file's order.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { FLAGS } from '../src/cli/flags.ts';
import { dropSchema, eventually, freshSchema, POSTGRES_URL } from './helpers.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const CLI = join(ROOT, 'src/cli/main.ts');
const IMAGE_PACKAGE = '/app/node_modules/waitless/';

const children = new Set<ChildProcess>();
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const child of children) child.kill('SIGKILL');
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

function run(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(command, args, { cwd: ROOT, env, timeout: 60_000, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      children.delete(child);
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr });
    });
    children.add(child);
  });
}

interface Service {
  image?: string;
  build?: string;
  command?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test?: string[]; disable?: boolean };
  depends_on?: Record<string, { condition: string }>;
}
const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, Service> };
const waitlessServices = Object.entries(compose.services).filter(([, s]) => s.image === 'waitless');

/** The Dockerfile's instructions, continuation lines joined, comments dropped. */
const instructions = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
  .replace(/\\\n/g, ' ')
  .split('\n')
  .filter((line) => line.trim() && !line.trimStart().startsWith('#'))
  .map((line) => {
    const [, op, rest] = /^\s*(\w+)\s+(.*)$/.exec(line)!;
    return { op: op!.toUpperCase(), rest: rest!.trim() };
  });
const stages = instructions.reduce<(typeof instructions)[]>((all, i) => (i.op === 'FROM' ? [...all, [i]] : (all.at(-1)!.push(i), all)), []);
const runStage = stages.at(-1)!;
const exec = (op: string) => JSON.parse(runStage.find((i) => i.op === op)!.rest) as string[];

const help = (await run(process.execPath, [CLI, '--help'])).stdout;
const COMMANDS = [...help.matchAll(/^ {2}waitless (\w+)/gm)].map((m) => m[1]!);

/** A command line (after the entrypoint) names a CLI command and only flags the CLI has. */
function assertCommand(args: string[], where: string): void {
  assert.ok(COMMANDS.includes(args[0]!), `${where}: "${args[0]}" is a waitless command (${COMMANDS.join(', ')})`);
  for (const arg of args.filter((a) => a.startsWith('--'))) {
    assert.ok(arg.slice(2) in FLAGS, `${where}: ${arg} is a flag of the CLI`);
  }
}

describe('the Dockerfile', () => {
  it('runs the bin of the packed package, built in a stage of its own', async () => {
    assert.ok(stages.length >= 2, 'multi-stage: the devDependencies stay in the build stage');
    const entrypoint = exec('ENTRYPOINT');
    assert.equal(entrypoint[0], 'node');
    assert.ok(entrypoint[1]!.startsWith(IMAGE_PACKAGE), `the entrypoint runs the installed package: ${entrypoint[1]}`);
    const file = entrypoint[1]!.slice(IMAGE_PACKAGE.length);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    assert.equal(`./${file}`, pkg.bin.waitless, 'the file is the package bin');
    const packed = JSON.parse((await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'])).stdout) as { files: { path: string }[] }[];
    assert.ok(packed[0]!.files.some((f) => f.path === file), `${file} is in the packed package`);
    assertCommand(exec('CMD'), 'CMD');
  });

  it('runs as a non-root user in production mode, with a health check on /livez', () => {
    const user = runStage.filter((i) => i.op === 'USER').at(-1);
    assert.ok(user && !/^(root|0)(:|$)/.test(user.rest), 'USER is not root');
    assert.ok(runStage.some((i) => i.op === 'ENV' && /\bNODE_ENV=production\b/.test(i.rest)));
    const check = runStage.find((i) => i.op === 'HEALTHCHECK');
    assert.match(check?.rest ?? '', /\/livez/);
    assert.match(runStage.find((i) => i.op === 'RUN' && /npm install/.test(i.rest))!.rest, /--omit=dev/);
  });

  it('copies files that exist and that .dockerignore keeps in the context', () => {
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    const copies = stages[0]!.filter((i) => i.op === 'COPY' && !i.rest.startsWith('--from'));
    assert.ok(copies.length > 0);
    for (const copy of copies) {
      const sources = copy.rest.split(/\s+/).slice(0, -1);
      for (const source of sources) {
        assert.ok(existsSync(join(ROOT, source)), `${source} exists`);
        assert.ok(!ignored.includes(source), `${source} is not in .dockerignore`);
      }
    }
    // What the build runs is in the context: the build script and its tsconfig.
    for (const needed of ['scripts/build.ts', 'tsconfig.build.json', 'src', 'bin', 'package-lock.json']) {
      assert.ok(copies.some((c) => c.rest.split(/\s+/).slice(0, -1).some((s) => needed === s || needed.startsWith(`${s}/`))), `${needed} is copied`);
    }
  });
});

describe('docker-compose.yml', () => {
  it('has PostgreSQL, a one-shot migrate, serve and two workers, each with a health check', () => {
    const commands = waitlessServices.map(([, s]) => s.command?.[0]);
    assert.ok(compose.services.postgres, 'a postgres service');
    assert.deepEqual(commands.filter((c) => c === 'migrate').length, 1);
    assert.deepEqual(commands.filter((c) => c === 'serve').length, 1);
    assert.deepEqual(commands.filter((c) => c === 'worker').length, 2);
    for (const [name, service] of waitlessServices) {
      if (service.command?.[0] === 'migrate') continue;
      assert.match(service.healthcheck?.test?.join(' ') ?? '', /\/(livez|readyz)/, `${name} has a health check`);
      assert.equal(service.depends_on?.migrate?.condition, 'service_completed_successfully', `${name} starts after the migration`);
    }
  });

  it('names only commands and flags the CLI has, and only variables it reads', () => {
    for (const [name, service] of waitlessServices) {
      assertCommand(service.command ?? [], name);
      for (const variable of Object.keys(service.environment ?? {})) {
        assert.ok(help.includes(variable), `${name}: ${variable} is read by the CLI (it is in --help)`);
      }
    }
  });

  it("each service's command starts with its environment: migrate, then serve and a worker on the migrated schema", async () => {
    const schema = freshSchema();
    cleanups.push(() => dropSchema(schema));
    const envOf = (service: Service): NodeJS.ProcessEnv => {
      const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WAITLESS_') && k !== 'DATABASE_URL' && k !== 'PORT'));
      // Only where the database is and which port: the rest exactly as the compose file says.
      return { ...base, ...service.environment, DATABASE_URL: POSTGRES_URL, WAITLESS_SCHEMA: schema, WAITLESS_PORT: '0', WAITLESS_HOST: '127.0.0.1', LOG_FORMAT: 'json' };
    };
    const byCommand = (command: string) => waitlessServices.find(([, s]) => s.command?.[0] === command)![1];

    // Before the migration, a process with WAITLESS_NO_MIGRATE refuses the empty schema.
    const early = await run(process.execPath, [CLI, ...byCommand('worker').command!], envOf(byCommand('worker')));
    assert.equal(early.code, 1);
    assert.match(early.stderr, /Migrations are off/);

    const migrated = await run(process.execPath, [CLI, ...byCommand('migrate').command!], envOf(byCommand('migrate')));
    assert.equal(migrated.code, 0, migrated.stderr);

    for (const command of ['serve', 'worker']) {
      const service = byCommand(command);
      const child = spawn(process.execPath, [CLI, ...service.command!], { env: envOf(service), stdio: ['ignore', 'pipe', 'pipe'] });
      children.add(child);
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
      const url = await eventually(() => {
        if (child.exitCode !== null) throw new Error(`${command} exited with ${child.exitCode}:\n${output}`);
        return /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(output)?.[1];
      }, `${command} listens`, 30_000);
      const ready = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(20_000) });
      assert.equal(ready.status, 200, `${command} is ready`);
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const code = await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, 30_000, 'still running')))]);
      clearTimeout(timer);
      assert.equal(code, 0, `${command} stops cleanly`);
    }
  });
});
