import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import pg from 'pg';
import { pino } from 'pino';
import { createWaitless, type Waitless, type WaitlessOptions } from '../src/engine.ts';
import { internals } from '../src/internals.ts';
import { createHttpApp, type HttpOptions } from '../src/http/app.ts';
import type { Job } from '../src/job/model.ts';
import { readSse as readSseStream } from '../src/contract/sse.ts';

export type Backend = 'pglite' | 'postgres';

/** PostgreSQL used by the tests. Default: the local server CI starts. */
export const POSTGRES_URL = process.env.WAITLESS_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Backends to run each test on. `WAITLESS_TEST_BACKENDS=pglite` narrows it while developing. */
export const BACKENDS: Backend[] = (process.env.WAITLESS_TEST_BACKENDS?.split(',') as Backend[] | undefined) ?? ['pglite', 'postgres'];

export const silentLogger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

/** A schema of its own for every PostgreSQL engine, so tests never see each other's rows. */
export const freshSchema = () => `t_${randomBytes(6).toString('hex')}`;

export interface TestEngine {
  waitless: Waitless;
  /** The schema (PostgreSQL) so another process can join the same tables. */
  schema: string;
  databaseUrl: string;
  close(): Promise<void>;
}

/** Opens an engine on the backend: in-memory PGlite, or PostgreSQL in a fresh schema dropped at close. */
export async function openEngine(backend: Backend, options: Omit<WaitlessOptions, 'database' | 'logger'>): Promise<TestEngine> {
  const schema = options.schema ?? freshSchema();
  const databaseUrl = backend === 'postgres' ? POSTGRES_URL : 'memory://';
  const waitless = await createWaitless({ ...options, schema, database: databaseUrl, logger: silentLogger });
  return {
    waitless,
    schema,
    databaseUrl,
    async close() {
      await waitless.close();
      if (backend === 'postgres') await dropSchema(schema);
    },
  };
}

export async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}

export interface TestServer {
  url: string;
  close(): Promise<void>;
}

/** Serves the HTTP API on a free loopback port, as `waitless serve` does; open (one tenant, `default`) unless `auth` says otherwise. */
export async function startServer(waitless: Waitless, options: Omit<HttpOptions, 'auth'> & Partial<Pick<HttpOptions, 'auth'>> = {}): Promise<TestServer> {
  const app = createHttpApp(waitless, { auth: { mode: 'none', tenant: 'default' }, ...options });
  const server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        if ('closeAllConnections' in server) server.closeAllConnections();
      }),
  };
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes (then throws with `what`). */
type Truthy<T> = Exclude<T, false | null | undefined | 0 | ''>;

export async function eventually<T>(check: () => Promise<T> | T, what: string, timeoutMs = 15_000): Promise<Truthy<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as Truthy<T>;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Gates by key, for handlers a test releases when it chooses: `gate(key).promise` in the
 * handler, `gate(key).resolve()` in the test, `releaseAll()` in `after`.
 */
export function createGates(): { gate: (key: string) => ReturnType<typeof deferred<void>>; releaseAll: () => void } {
  const gates = new Map<string, ReturnType<typeof deferred<void>>>();
  return {
    gate(key) {
      let g = gates.get(key);
      if (!g) gates.set(key, (g = deferred()));
      return g;
    },
    releaseAll: () => gates.forEach((g) => g.resolve()),
  };
}

/** A promise plus its resolve function, for gating handlers from a test. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

export interface SseEvent {
  id?: string;
  event?: string;
  data: string;
}

/**
 * Reads an SSE response into events, with the project's stream reader (no EventSource in Node).
 * Stops after `stopAfter` returns true for an event, or at the end of the stream.
 */
export async function readSse(response: Response, stopAfter: (event: SseEvent) => boolean = () => false): Promise<{ events: SseEvent[]; comments: string[] }> {
  const events: SseEvent[] = [];
  const comments: string[] = [];
  for await (const message of readSseStream(response.body!, { onComment: (comment) => comments.push(comment) })) {
    const event: SseEvent = { data: message.data };
    if (message.id !== undefined) event.id = message.id;
    if (message.event !== undefined) event.event = message.event;
    events.push(event);
    if (stopAfter(event)) break;
  }
  return { events, comments };
}

/** Waits until no job is queued or running, whatever its tenant (not until all completed: a failure shows fast). */
export async function drained(waitless: Waitless, what: string, timeoutMs = 30_000): Promise<void> {
  await eventually(
    async () => {
      const [row] = await internals(waitless).driver.query<{ n: number }>({ text: `SELECT count(*)::int AS n FROM jobs WHERE status IN ('queued', 'running')`, values: [] });
      return row?.n === 0;
    },
    what,
    timeoutMs,
  );
}

/** Waits until the job is done (terminal) and answers it. */
export async function finished(waitless: Waitless, id: string, timeoutMs = 15_000, tenant?: string): Promise<Job> {
  return eventually(async () => {
    const job = await waitless.get(id, { tenant });
    return job?.done && job;
  }, `job ${id} done`, timeoutMs);
}
