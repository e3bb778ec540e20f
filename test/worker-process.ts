/**
 * A real `waitless worker` OS process for the multi-process tests, with its output kept for
 * assertions and for what a failing test shows.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Resolves with `promise`, or rejects saying `what` timed out after `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms}ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** One pino line of a worker's output. */
export interface LogLine {
  level?: number;
  msg?: string;
  err?: { message?: string; code?: string };
  [key: string]: unknown;
}

export const parseLogLine = (line: string): LogLine | undefined => {
  try {
    return JSON.parse(line) as LogLine;
  } catch {
    return undefined;
  }
};

export interface WorkerProcessOptions {
  /** Module with the job definitions (`--jobs`), relative to the repository. */
  jobs: string;
  /** `--database`: a PostgreSQL URL or a PGlite folder. */
  database: string;
  /** `--schema`. Default: the CLI's. */
  schema?: string;
  /** Extra environment. */
  env?: Record<string, string>;
  /** Extra CLI flags (`--concurrency 10`, `--lease 1s`, …). */
  args?: string[];
}

/** SIGKILLs every worker (a SIGSTOPped one too) and waits for the exits, so none outlives its test. */
export async function killAll(workers: WorkerProcess[]): Promise<void> {
  for (const worker of workers) worker.signal('SIGKILL');
  await within(Promise.all(workers.map((w) => w.exited)), 5000, 'killed workers to exit').catch(() => {});
}

export class WorkerProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly lines: string[] = [];
  readonly ready: Promise<void>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exitedAlready = false;

  constructor(o: WorkerProcessOptions) {
    const args = ['src/cli/main.ts', 'worker', '--jobs', o.jobs, '--database', o.database, ...(o.schema ? ['--schema', o.schema] : []), ...(o.args ?? [])];
    this.child = spawn(process.execPath, args, {
      cwd: ROOT,
      // `info`, not `silent`: "worker started" is the readiness signal, and the log is what a
      // failing test shows.
      env: { ...process.env, LOG_LEVEL: 'info', ...o.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    if (this.child.pid === undefined) throw new Error('could not spawn a worker process');
    this.pid = this.child.pid;
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exitedAlready = true;
        resolve({ code, signal });
      });
    });
    let markReady: () => void = () => {};
    this.ready = new Promise<void>((resolve, reject) => {
      markReady = resolve;
      void this.exited.then(({ code, signal }) => reject(new Error(`worker ${this.pid} exited before it was ready (code ${code}, signal ${signal})`)));
    });
    // Awaited by the test that spawned it; this only keeps an early exit from being "unhandled".
    this.ready.catch(() => {});
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.lines.push(line);
      if (parseLogLine(line)?.msg === 'worker started') markReady();
    });
    createInterface({ input: this.child.stderr! }).on('line', (line) => this.lines.push(`[stderr] ${line}`));
  }

  logs(): LogLine[] {
    return this.lines.map(parseLogLine).filter((entry): entry is LogLine => entry !== undefined);
  }

  /**
   * Error-level log lines and anything on stderr, one short line each ("heartbeat failed:
   * deadlock detected (40P01)"): what an operator would see as trouble.
   */
  troubles(): string[] {
    const found: string[] = [];
    for (const line of this.lines) {
      if (line.startsWith('[stderr]')) {
        found.push(line);
        continue;
      }
      const entry = parseLogLine(line);
      if ((entry?.level ?? 0) < 50) continue;
      const err = entry?.err;
      found.push(`${entry?.msg ?? '?'}${err ? `: ${err.message ?? '?'}${err.code ? ` (${err.code})` : ''}` : ''}`);
    }
    return found;
  }

  signal(signal: NodeJS.Signals): void {
    if (!this.exitedAlready) this.child.kill(signal);
  }

  /** Graceful stop, as an operator's SIGTERM: resolves with the exit code. */
  async stop(timeoutMs = 15_000): Promise<number | null> {
    this.signal('SIGTERM');
    return (await within(this.exited, timeoutMs, `worker ${this.pid} to exit after SIGTERM`)).code;
  }

  /** The last lines worth reading: one "job completed" per job would drown everything else. */
  tail(n: number): string {
    return this.lines
      .filter((line) => parseLogLine(line)?.msg !== 'job completed')
      .slice(-n)
      .join('\n');
  }
}
