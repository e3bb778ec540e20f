/**
 * The load generator of bench/ai-load.ts, in a process of its own so that its CPU and memory
 * are measured apart from the server's. It talks to the API over HTTP only, as a user's
 * client would, and to its parent in lines: one JSON command per line on stdin, one JSON
 * answer per line on stdout. It exits when stdin closes.
 *
 *   {"cmd":"stream", url, key, jobs, tokens, rate, deadlineMs}
 *       submits `jobs` ai-stream jobs and watches each over SSE until its terminal status;
 *       answers with what arrived (lost, duplicated, latency of live tokens).
 *   {"cmd":"idle", url, key, ids, count, offset, sources}
 *       opens `count` SSE streams on the given queued jobs (stream i watches
 *       ids[(offset + i) % ids.length], from source address sources[i % sources.length]);
 *       answers once every stream is open or has failed.
 *   {"cmd":"status"}      how many of the idle streams are still open.
 *   {"cmd":"finish", deadlineMs}
 *       waits until every idle stream has ended (or the deadline) and answers with the epoch
 *       ms at which each received its terminal status (and which job it watched).
 */
import http from 'node:http';
import { createInterface } from 'node:readline';
import { createParser } from 'eventsource-parser';
import type { SseMessage } from '../src/contract/sse.ts';
import { isJobStatus, isTerminal } from '../src/contract/statuses.ts';
import { AI_STREAM, TOKEN_PATTERN } from './ai-load-jobs.ts';

const now = () => performance.timeOrigin + performance.now();

// keepAlive: submits reuse connections instead of opening one each. maxSockets is stated
// because a stream queued behind a per-host socket cap would wait for another stream to end.
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 256 });

const reply = (message: object) => void process.stdout.write(`${JSON.stringify(message)}\n`);

interface Target {
  host: string;
  port: number;
  key: string;
}

function target(url: string, key: string): Target {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port), key };
}

async function submit(t: Target, body: object): Promise<string> {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: t.host,
        port: t.port,
        agent,
        method: 'POST',
        path: `/v1/jobs/${AI_STREAM}`,
        headers: { authorization: `Bearer ${t.key}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          if (res.statusCode !== 202) return reject(new Error(`submit answered ${res.statusCode}: ${text.slice(0, 300)}`));
          resolve((JSON.parse(text) as { id: string }).id);
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

interface Stream {
  /** Resolves when the response headers arrived (the stream is open), rejects if it could not open. */
  opened: Promise<void>;
  /** Resolves when the stream has ended, however it ended. */
  ended: Promise<void>;
  readonly isOpen: boolean;
  /** Epoch ms at which the response headers arrived; Infinity until then. */
  readonly openedAt: number;
  close(): void;
}

/** One SSE stream of a job's events; `onMessage` gets every event with the time its chunk arrived. */
function openStream(t: Target, jobId: string, localAddress: string | undefined, onMessage: (message: SseMessage, at: number) => void): Stream {
  let open = false;
  let openedAt = Infinity;
  let req: http.ClientRequest | undefined;
  let markOpened: () => void = () => {};
  let failOpen: (error: Error) => void = () => {};
  let markEnded: () => void = () => {};
  const opened = new Promise<void>((resolve, reject) => {
    markOpened = resolve;
    failOpen = reject;
  });
  const ended = new Promise<void>((resolve) => (markEnded = resolve));
  const finish = (error?: Error) => {
    open = false;
    if (error) failOpen(error);
    markEnded();
  };
  req = http.request(
    {
      host: t.host,
      port: t.port,
      agent,
      ...(localAddress ? { localAddress } : {}),
      path: `/v1/jobs/${jobId}/events`,
      headers: { authorization: `Bearer ${t.key}`, accept: 'text/event-stream' },
    },
    (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return finish(new Error(`events answered ${res.statusCode}`));
      }
      open = true;
      openedAt = now();
      markOpened();
      let at = 0;
      const parser = createParser({ onEvent: (message) => onMessage({ event: message.event, data: message.data, id: message.id }, at) });
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        at = now();
        parser.feed(chunk);
      });
      res.on('end', () => finish());
      res.on('close', () => finish());
      res.on('error', (error) => finish(error));
    },
  );
  req.on('error', (error) => finish(error));
  req.end();
  return {
    opened,
    ended,
    get isOpen() {
      return open;
    },
    get openedAt() {
      return openedAt;
    },
    close() {
      req?.destroy();
      req = undefined;
    },
  };
}

const terminalStatus = (message: SseMessage): string | undefined => {
  if (message.event !== 'status') return undefined;
  const status = (JSON.parse(message.data) as { data?: { status?: unknown } }).data?.status;
  return typeof status === 'string' && isJobStatus(status) && isTerminal(status) ? status : undefined;
};

/** Runs `fn` for 0..count-1 with at most `limit` at once. */
async function pool(count: number, limit: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, count) }, async () => {
      while (next < count) await fn(next++);
    }),
  );
}

const errors: string[] = [];
const noteError = (error: unknown) => {
  if (errors.length < 5) errors.push(error instanceof Error ? error.message : String(error));
};

// ---------------------------------------------------------------- AI-shaped load

interface StreamCommand {
  url: string;
  key: string;
  jobs: number;
  tokens: number;
  rate: number;
  deadlineMs: number;
}

/** Latency histogram in 0.1 ms buckets: a flat memory footprint however many tokens arrive. */
class Histogram {
  readonly buckets = new Map<number, number>();
  n = 0;
  max = -Infinity;

  add(ms: number): void {
    const b = Math.round(ms * 10);
    this.buckets.set(b, (this.buckets.get(b) ?? 0) + 1);
    this.n++;
    if (ms > this.max) this.max = ms;
  }

  /** Nearest rank, as common.ts summarize(). */
  percentile(p: number): number {
    if (this.n === 0) return NaN;
    const rank = Math.max(1, Math.ceil((p / 100) * this.n));
    let seen = 0;
    for (const b of [...this.buckets.keys()].sort((x, y) => x - y)) {
      seen += this.buckets.get(b)!;
      if (seen >= rank) return b / 10;
    }
    return this.max;
  }
}

async function streamLoad(c: StreamCommand): Promise<object> {
  const t = target(c.url, c.key);
  const latency = new Histogram();
  let replayed = 0;
  let foreign = 0;
  const watchers: { counts: Uint8Array; status?: string; stream?: Stream }[] = Array.from({ length: c.jobs }, () => ({
    counts: new Uint8Array(c.tokens),
  }));
  const started = now();
  let submitsDone = 0;
  let lastOpen = 0;

  // Each client submits, then opens its stream, as an application showing the answer would;
  // the ramp is whatever the server's acknowledgement rate allows.
  await pool(c.jobs, 64, async (index) => {
    const w = watchers[index]!;
    let id: string;
    try {
      id = await submit(t, { input: { tokens: c.tokens, ratePerSecond: c.rate, index } });
    } catch (error) {
      return noteError(error);
    }
    submitsDone++;
    // Output text may in principle end inside a token; the rest waits for the next event.
    let carry = '';
    const stream = openStream(t, id, undefined, (message, at) => {
      if (message.event === 'output') {
        const text = carry + (JSON.parse(message.data) as { data: { text: string } }).data.text;
        let end = 0;
        for (const m of text.matchAll(TOKEN_PATTERN)) {
          end = m.index + m[0].length;
          const seq = Number(m[2]);
          const written = Number(m[3]);
          if (Number(m[1]) !== index || seq >= c.tokens) {
            foreign++;
            continue;
          }
          if (w.counts[seq]! < 255) w.counts[seq]!++;
          // The stream replays from the first event: what was written before it opened did not wait on it.
          if (written >= stream.openedAt) latency.add(at - written);
          else replayed++;
        }
        carry = text.slice(end);
        if (carry.length > 200) carry = carry.slice(-200);
      } else {
        w.status = terminalStatus(message) ?? w.status;
      }
    });
    w.stream = stream;
    try {
      await stream.opened;
      lastOpen = stream.openedAt;
    } catch (error) {
      noteError(error);
    }
  });
  const submitMs = now() - started;

  const remaining = c.deadlineMs - now();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all(watchers.flatMap((w) => (w.stream ? [w.stream.ended] : []))),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, remaining)))),
  ]);
  clearTimeout(timer);
  const unfinished = watchers.filter((w) => w.stream?.isOpen).length;
  for (const w of watchers) w.stream?.close();

  let lost = 0;
  let duplicated = 0;
  let received = 0;
  let jobsWithLoss = 0;
  const statuses: Record<string, number> = {};
  for (const w of watchers) {
    let missing = 0;
    for (const n of w.counts) {
      received += n;
      if (n === 0) missing++;
      else if (n > 1) duplicated += n - 1;
    }
    lost += missing;
    if (missing) jobsWithLoss++;
    const s = w.status ?? 'none';
    statuses[s] = (statuses[s] ?? 0) + 1;
  }
  return {
    type: 'streamed',
    submitted: submitsDone,
    submitMs,
    lastOpenMs: lastOpen ? lastOpen - started : NaN,
    expected: c.jobs * c.tokens,
    received,
    lost,
    duplicated,
    foreign,
    jobsWithLoss,
    replayed,
    unfinished,
    statuses,
    latency: { n: latency.n, p50: latency.percentile(50), p99: latency.percentile(99), max: latency.n ? latency.max : NaN },
    errors,
  };
}

// ---------------------------------------------------------------- idle watchers

interface IdleCommand {
  url: string;
  key: string;
  ids: string[];
  count: number;
  offset: number;
  sources: string[];
}

const idle: { job: number; stream: Stream; terminalAt?: number; status?: string }[] = [];

async function openIdle(c: IdleCommand): Promise<object> {
  const t = target(c.url, c.key);
  let opened = 0;
  let failed = 0;
  const started = now();
  await pool(c.count, 100, async (i) => {
    const job = (c.offset + i) % c.ids.length;
    const entry: (typeof idle)[number] = {
      job,
      stream: openStream(t, c.ids[job]!, c.sources[i % c.sources.length], (message, at) => {
        const status = terminalStatus(message);
        if (status) {
          entry.status = status;
          entry.terminalAt = at;
        }
      }),
    };
    idle.push(entry);
    try {
      await entry.stream.opened;
      opened++;
    } catch (error) {
      failed++;
      noteError(error);
    }
  });
  return { type: 'opened', opened, failed, openMs: now() - started, errors };
}

async function finishIdle(deadlineMs: number): Promise<object> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all(idle.map((e) => e.stream.ended)),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, deadlineMs - now())))),
  ]);
  clearTimeout(timer);
  const statuses: Record<string, number> = {};
  for (const e of idle) statuses[e.status ?? 'none'] = (statuses[e.status ?? 'none'] ?? 0) + 1;
  return {
    type: 'finished',
    // [index of the job in ids, epoch ms], so the parent can time each from its own cancel.
    terminalAt: idle.flatMap((e) => (e.terminalAt === undefined ? [] : [[e.job, e.terminalAt]])),
    statuses,
    stillOpen: idle.filter((e) => e.stream.isOpen).length,
    errors,
  };
}

// ---------------------------------------------------------------- commands

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const command = JSON.parse(line) as { cmd: string; deadlineMs?: number };
  const answer =
    command.cmd === 'stream'
      ? streamLoad(command as unknown as StreamCommand)
      : command.cmd === 'idle'
        ? openIdle(command as unknown as IdleCommand)
        : command.cmd === 'status'
          ? Promise.resolve({ type: 'status', open: idle.filter((e) => e.stream.isOpen).length, total: idle.length })
          : command.cmd === 'finish'
            ? finishIdle(command.deadlineMs ?? now() + 60_000)
            : Promise.reject(new Error(`unknown command ${command.cmd}`));
  answer.then(reply, (error: unknown) => reply({ type: 'error', message: error instanceof Error ? error.stack : String(error) }));
});
lines.on('close', () => {
  for (const e of idle) e.stream.close();
  agent.destroy();
  process.exit(0);
});
reply({ type: 'ready', pid: process.pid });
