/**
 * The chaos scenario, shared by test/chaos.test.ts (CI-sized) and bench/chaos.ts (larger,
 * longer): jobs with durable steps submitted over HTTP with Idempotency-Keys, run by real worker
 * processes while the scenario SIGKILLs workers (and starts replacements), cuts the workers'
 * PostgreSQL connections (a TCP proxy that refuses for a while, and `pg_terminate_backend`),
 * takes the webhook receiver down (503, then closed sockets), supersedes waiting jobs and,
 * optionally, pauses a worker past its lease. Then it lets the queue drain and checks what a
 * user would: nothing lost, one job per key, no recorded step's side effect run twice, every
 * result applied once by an idempotent receiver and never for a superseded job, every webhook
 * delivered.
 *
 * Everything outside Waitless is real and on loopback (test/chaos/outside.ts): the side-effect
 * server the steps call (it counts every call by job, step and attempt) and the webhook
 * receiver (it verifies the signature, counts raw deliveries and applies results idempotently
 * by job id). Randomness comes from one seed; the report carries it.
 */
import { isDeepStrictEqual } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { internals } from '../../src/internals.ts';
import { chaosJobs, gated, pipeline, pipelineOutput, type PipelineResult } from './jobs.ts';
import { EFFECTS_URL_ENV } from './env.ts';
import { type EffectRecord, type RawDelivery, startEffects, startReceiver } from './outside.ts';
import { eventually, openEngine, POSTGRES_URL, startServer, type TestEngine, type TestServer } from '../helpers.ts';
import { freePort, tcpProxy, type TcpProxy } from '../tcp-proxy.ts';
import { killAll, WorkerProcess, within } from '../worker-process.ts';
import { prng } from '../prng.ts';

/** A fault at a moment of the chaos phase, for a while. */
export interface Window {
  /** Milliseconds after the chaos phase began. */
  atMs: number;
  forMs: number;
}

export interface ChaosOptions {
  /** Seeds every random choice: the plan of jobs and the moments and victims of the faults. */
  seed: number;
  /** Pipeline jobs, each with its own Idempotency-Key. */
  jobs: number;
  /** Jobs that wait on a gate and are superseded by a newer job under the same key. */
  superseded: number;
  /** Share of the keys submitted a second time (same key, same input), later. */
  resubmitShare: number;
  /** Durable steps per pipeline job. */
  steps: number;
  /** A step's duration, drawn in this range (ms); its side effect is in the middle. */
  stepMs: [number, number];
  /** Worker processes alive at once (a killed one is replaced at once). */
  workers: number;
  /** `--concurrency` of each worker. */
  concurrency: number;
  /** Pool size of each worker. */
  maxConnections: number;
  /** Submissions are spread over this (ms from the start of the chaos phase). */
  submitOverMs: number;
  /** How long faults are injected (ms). */
  chaosMs: number;
  /** A worker is SIGKILLed every so often, drawn in this range (ms); undefined: never. */
  killEveryMs: [number, number] | undefined;
  /** The workers' TCP proxy to PostgreSQL refuses and cuts every connection for this window. */
  proxyCut: Window | undefined;
  /** `pg_terminate_backend` on every worker connection at this moment (ms). */
  terminateAtMs: number | undefined;
  /** The webhook receiver answers 503 for the first half of this window, then closes sockets. */
  outage: Window | undefined;
  /** One worker is SIGSTOPped for this window (past its lease, to be fenced), then SIGCONTinued. */
  pause: Window | undefined;
  /** When the newer jobs supersede the gated ones (ms). */
  supersedeAtMs: number;
  /** Worker `--lease`, `--heartbeat`, `--poll-interval`. */
  lease: string;
  heartbeat: string;
  pollInterval: string;
  /** How long the receiver may take; a killed worker's delivery in flight comes back after 4 × this. */
  webhookTimeout: string;
  /** `--webhook-retry`: must outlast the outage. */
  webhookRetry: string;
  /** Longest wait for the queue and the outbox to drain after the chaos phase. */
  drainTimeoutMs: number;
  /** Progress lines (the bench prints them; the test keeps them for a failure's report). */
  log?: (line: string) => void;
}

/** What the run measured; `violations` empty means every guarantee held. */
export interface ChaosReport {
  seed: number;
  violations: string[];
  figures: Record<string, number | string>;
  /** Side effects repeated by attempts whose step record never committed: job/step → attempts. */
  unrecordedRepeats: string[];
  /** The workers' last lines, for a failure's report. */
  workerTails: string[];
}

// ---------------------------------------------------------------- seeded randomness

const between = (random: () => number, [low, high]: [number, number]) => Math.round(low + random() * (high - low));

// ---------------------------------------------------------------- the plan

interface Submission {
  key: string;
  name: string;
  input: unknown;
  atMs: number;
  supersede?: { key: string };
}

interface Plan {
  pipelines: Submission[];
  gatedJobs: Submission[];
  replacements: Submission[];
  /** Second submits of a key (same input), each at its own moment. */
  resubmits: Submission[];
}

function plan(o: ChaosOptions, random: () => number): Plan {
  const prefix = `chaos-${o.seed}`;
  const pipelines: Submission[] = [];
  for (let n = 0; n < o.jobs; n++) {
    const stepMs = Array.from({ length: o.steps }, () => between(random, o.stepMs));
    pipelines.push({ key: `${prefix}-${n}`, name: pipeline.name, input: { n, stepMs }, atMs: Math.round(random() * o.submitOverMs) });
  }
  const gatedJobs: Submission[] = [];
  const replacements: Submission[] = [];
  for (let i = 0; i < o.superseded; i++) {
    const about = `${prefix}-doc-${i}`;
    gatedJobs.push({ key: `${prefix}-g${i}`, name: gated.name, input: { gate: about }, atMs: 0, supersede: { key: about } });
    const stepMs = Array.from({ length: o.steps }, () => between(random, o.stepMs));
    replacements.push({ key: `${prefix}-r${i}`, name: pipeline.name, input: { n: o.jobs + i, stepMs }, atMs: o.supersedeAtMs, supersede: { key: about } });
  }
  // Half the repeats come right after the first (a client retrying at once), half later, while faults go on.
  const resubmits = [...pipelines, ...gatedJobs]
    .filter(() => random() < o.resubmitShare)
    .map((s) => ({ ...s, atMs: random() < 0.5 ? s.atMs : s.atMs + Math.round(random() * Math.max(0, o.chaosMs - s.atMs)) }));
  return { pipelines, gatedJobs, replacements, resubmits };
}

// ---------------------------------------------------------------- the run

interface Answer {
  status: number;
  id?: string;
  replayed: boolean;
}

/** Runs the scenario and checks it; every process and server it starts is gone when it returns. */
export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const log = o.log ?? (() => {});
  const planRandom = prng(o.seed);
  const faultRandom = prng(o.seed ^ 0x5bd1e995);
  const thePlan = plan(o, planRandom);
  const workers: WorkerProcess[] = [];
  const closers: Array<() => Promise<unknown>> = [];
  let engine: TestEngine | undefined;
  try {
    engine = await openEngine('postgres', { jobs: chaosJobs, maxConnections: 6, webhooks: { ssrf: { allow: ['127.0.0.1'] } } });
    const { waitless, schema } = engine;
    const { driver } = internals(waitless);
    const api: TestServer = await startServer(waitless);
    closers.push(() => api.close());
    const effects = await startEffects();
    closers.push(() => effects.close());
    // One secret, made now, before any worker signs with it.
    const secrets = ((await (await fetch(`${api.url}/v1/webhooks/secret`)).json()) as { secrets: Array<{ secret: string }> }).secrets.map((s) => s.secret);
    const receiver = await startReceiver(() => secrets);
    closers.push(() => receiver.close());

    // The workers reach PostgreSQL through a proxy the scenario cuts, under an application name
    // that lets it terminate their connections and no one else's.
    const proxy: TcpProxy = tcpProxy(await freePort(), { host: new URL(POSTGRES_URL).hostname, port: Number(new URL(POSTGRES_URL).port || 5432) });
    await proxy.open();
    closers.push(() => proxy.close());
    const appName = `waitless-chaos-${schema}`;
    const workerUrl = new URL(POSTGRES_URL);
    workerUrl.hostname = '127.0.0.1';
    workerUrl.port = String(proxy.port);
    workerUrl.searchParams.set('application_name', appName);

    const figures: Record<string, number> = { kills: 0, replacements: 0, proxyCuts: 0, backendsTerminated: 0, paused: 0, submitRetries: 0, replayedAnswers: 0, diedOnTheirOwn: 0 };
    let live: WorkerProcess[] = [];
    let stopping = false;
    const deaths: string[] = [];
    const spawnWorker = (): WorkerProcess => {
      const worker = new WorkerProcess({
        // `waitless worker` as shipped; info-level logs carry its readiness line.
        jobs: 'test/chaos/jobs.ts',
        database: workerUrl.toString(),
        schema,
        env: { [EFFECTS_URL_ENV]: effects.url, LOG_LEVEL: 'info' },
        args: [
          ...['--concurrency', String(o.concurrency), '--lease', o.lease, '--heartbeat', o.heartbeat, '--poll-interval', o.pollInterval],
          ...['--webhook-allow', '127.0.0.1', '--webhook-retry', o.webhookRetry, '--webhook-timeout', o.webhookTimeout],
          // Small pools: several workers and other tests share one PostgreSQL server.
          ...['--max-connections', String(o.maxConnections)],
        ],
      });
      workers.push(worker);
      // A worker that exits without being killed (it should not, whatever the faults) is
      // reported and replaced, so the run keeps its workers.
      void worker.exited.then(({ code, signal }) => {
        if (stopping || !live.includes(worker) || signal === 'SIGKILL') return;
        figures.diedOnTheirOwn!++;
        deaths.push(`worker ${worker.pid} exited (code ${code}, signal ${signal}):\n${worker.tail(10)}`);
        live = [...live.filter((w) => w !== worker), spawnWorker()];
      });
      return worker;
    };
    live = Array.from({ length: o.workers }, spawnWorker);
    await within(Promise.all(live.map((w) => w.ready)), 30_000, 'the workers to start');

    // ---------------------------------------------------------------- submissions
    const answers = new Map<string, Answer[]>();
    const submit = async (s: Submission): Promise<void> => {
      const body = JSON.stringify({ input: s.input, webhook: { url: receiver.url }, ...(s.supersede ? { supersede: s.supersede } : {}) });
      for (let tries = 0; ; tries++) {
        let answer: Answer;
        try {
          const response = await fetch(`${api.url}/v1/jobs/${s.name}`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': s.key }, body });
          const job = (await response.json()) as { id?: string };
          answer = { status: response.status, id: job.id, replayed: response.headers.get('idempotent-replayed') === 'true' };
        } catch {
          answer = { status: 0, replayed: false };
        }
        // A client retries an unanswered or unavailable submit with the same key: that is what the key is for.
        if ((answer.status === 0 || answer.status >= 500) && tries < 20) {
          figures.submitRetries!++;
          await sleep(250);
          continue;
        }
        if (answer.replayed) figures.replayedAnswers!++;
        answers.set(s.key, [...(answers.get(s.key) ?? []), answer]);
        return;
      }
    };

    const started = Date.now();
    const at = (ms: number) => sleep(Math.max(0, started + ms - Date.now()));
    const submissions = Promise.all([...thePlan.gatedJobs, ...thePlan.pipelines, ...thePlan.resubmits].map(async (s) => {
      await at(s.atMs);
      await submit(s);
    }));
    log(`seed ${o.seed}: ${thePlan.pipelines.length} pipeline jobs, ${thePlan.gatedJobs.length} to supersede, ${thePlan.resubmits.length} keys sent twice; ${o.workers} workers × ${o.concurrency}`);

    // ---------------------------------------------------------------- faults
    const faults: Promise<void>[] = [];
    const pick = () => live[Math.floor(faultRandom() * live.length)]!;
    let pausedWorker: WorkerProcess | undefined;
    if (o.killEveryMs) {
      const every = o.killEveryMs;
      faults.push((async () => {
        for (let t = between(faultRandom, every); t < o.chaosMs; t += between(faultRandom, every)) {
          await at(t);
          const victim = pick();
          victim.signal('SIGKILL');
          await within(victim.exited, 5000, `worker ${victim.pid} to die of SIGKILL`);
          figures.kills!++;
          live = [...live.filter((w) => w !== victim), spawnWorker()];
          figures.replacements!++;
          log(`${((Date.now() - started) / 1000).toFixed(1)} s: SIGKILLed worker ${victim.pid}, started another`);
        }
      })());
    }
    if (o.proxyCut) {
      const cut = o.proxyCut;
      faults.push((async () => {
        await at(cut.atMs);
        await proxy.close();
        figures.proxyCuts!++;
        log(`${((Date.now() - started) / 1000).toFixed(1)} s: PostgreSQL cut off from the workers for ${cut.forMs} ms`);
        await at(cut.atMs + cut.forMs);
        await proxy.open();
      })());
    }
    if (o.terminateAtMs !== undefined) {
      const when = o.terminateAtMs;
      faults.push((async () => {
        await at(when);
        const client = new pg.Client({ connectionString: POSTGRES_URL });
        await client.connect();
        try {
          const { rows } = await client.query<{ terminated: boolean }>('SELECT pg_terminate_backend(pid) AS terminated FROM pg_stat_activity WHERE application_name = $1', [appName]);
          figures.backendsTerminated! += rows.filter((r) => r.terminated).length;
        } finally {
          await client.end();
        }
        log(`${((Date.now() - started) / 1000).toFixed(1)} s: terminated ${figures.backendsTerminated} worker backends`);
      })());
    }
    if (o.outage) {
      const outage = o.outage;
      faults.push((async () => {
        await at(outage.atMs);
        receiver.setMode('503');
        log(`${((Date.now() - started) / 1000).toFixed(1)} s: webhook receiver down (503) for ${outage.forMs / 2} ms, then closing sockets`);
        await at(outage.atMs + outage.forMs / 2);
        receiver.setMode('close');
        await at(outage.atMs + outage.forMs);
        receiver.setMode('up');
        log(`${((Date.now() - started) / 1000).toFixed(1)} s: webhook receiver up`);
      })());
    }
    if (o.pause) {
      const pause = o.pause;
      faults.push((async () => {
        await at(pause.atMs);
        pausedWorker = pick();
        live = live.filter((w) => w !== pausedWorker);
        pausedWorker.signal('SIGSTOP');
        figures.paused!++;
        log(`${((Date.now() - started) / 1000).toFixed(1)} s: SIGSTOPped worker ${pausedWorker.pid} for ${pause.forMs} ms`);
        await at(pause.atMs + pause.forMs);
        pausedWorker.signal('SIGCONT');
        live.push(pausedWorker);
        pausedWorker = undefined;
      })());
    }
    const gatedStatusAtSupersede = new Map<string, string>();
    faults.push((async () => {
      await at(o.supersedeAtMs);
      // The gated jobs must exist (their first submit answered) before newer ones can supersede them.
      await eventually(() => thePlan.gatedJobs.every((g) => answers.has(g.key)), 'the gated jobs to be submitted', 30_000);
      for (const g of thePlan.gatedJobs) {
        const id = answers.get(g.key)![0]!.id;
        if (id) gatedStatusAtSupersede.set(id, (await waitless.get(id))?.status ?? 'missing');
      }
      await Promise.all(thePlan.replacements.map(submit));
      // Let the superseded handlers return their result now: it must be thrown away.
      effects.openGates();
      log(`${((Date.now() - started) / 1000).toFixed(1)} s: superseded ${thePlan.replacements.length} waiting jobs (${[...gatedStatusAtSupersede.values()].filter((s) => s === 'running').length} of them running)`);
    })());

    await Promise.all([submissions, ...faults]);
    // The chaos phase is over when its last fault has ended and every submit was answered.
    await at(o.chaosMs);
    receiver.setMode('up');
    const chaosEnded = Date.now();
    log(`${((chaosEnded - started) / 1000).toFixed(1)} s: faults over; draining`);

    // ---------------------------------------------------------------- drain
    const outstanding = async () => {
      const [row] = await driver.query<{ jobs: number; deliveries: number }>({
        text: `SELECT (SELECT count(*)::int FROM jobs WHERE status IN ('queued', 'running')) AS jobs,
          (SELECT count(*)::int FROM webhook_deliveries WHERE status IN ('pending', 'delivering')) AS deliveries`,
        values: [],
      });
      return row!;
    };
    const atFaultsEnd = await outstanding();
    let drainedIn: number | undefined;
    /** When the last job finished (the deliveries may take longer: retries, a dead worker's lease). */
    let jobsDrainedIn: number | undefined;
    try {
      await eventually(async () => {
        const left = await outstanding();
        if (left.jobs === 0) jobsDrainedIn ??= Date.now() - chaosEnded;
        return left.jobs === 0 && left.deliveries === 0;
      }, 'jobs and webhook deliveries to drain', o.drainTimeoutMs);
      drainedIn = Date.now() - chaosEnded;
    } catch {
      // Reported below: what was left is a violation, named job by job.
    }
    const left = await outstanding();
    log(drainedIn === undefined ? `not drained after ${o.drainTimeoutMs} ms: ${left.jobs} jobs, ${left.deliveries} deliveries left` : `drained in ${(drainedIn / 1000).toFixed(1)} s`);
    // Frozen from here: no process changes anything while the outcome is read.
    stopping = true;
    await killAll(workers);

    // ---------------------------------------------------------------- facts
    const jobs = await driver.query<{ id: string; name: string; status: string; attempt: number; input: { n?: number; gate?: string }; result: unknown; error: unknown; idempotency_key: string | null }>({
      text: 'SELECT id, name, status, attempt, input, result, error, idempotency_key FROM jobs',
      values: [],
    });
    const steps = await driver.query<{ job_id: string; name: string; status: string; attempt: number; result: unknown }>({
      text: `SELECT job_id, name, status, attempt, result FROM job_steps`,
      values: [],
    });
    const stepEvents = await driver.query<{ job_id: string; name: string; attempt: number }>({
      text: `SELECT job_id, data->>'name' AS name, (data->>'attempt')::int AS attempt FROM job_events
        WHERE type = 'step' AND data->>'status' = 'completed' ORDER BY job_id, seq`,
      values: [],
    });
    // How each attempt that was taken back or retried ended: why a side effect ran again.
    const requeues = await driver.query<{ job_id: string; attempt: number; reason: string; error: string | null }>({
      text: `SELECT job_id, (data->>'attempt')::int AS attempt, data->>'reason' AS reason,
          nullif(concat_ws(' ', data->'error'->>'code', data->'error'->>'name'), '') AS error
        FROM job_events WHERE type = 'status' AND data->>'status' = 'queued' AND data ? 'reason'`,
      values: [],
    });
    const endedBy = new Map(requeues.map((r) => [`${r.job_id}#${r.attempt}`, `${r.reason}${r.error ? ` (${r.error})` : ''}`]));
    const deliveries = await driver.query<{ id: string; job_id: string; event_type: string; status: string; attempts: number; last_error: string | null }>({
      text: 'SELECT id, job_id, event_type, status, attempts, last_error FROM webhook_deliveries',
      values: [],
    });
    const [attemptRow] = await driver.query<{ total: number; failed: number }>({
      text: `SELECT count(*)::int AS total, count(*) FILTER (WHERE status_code IS NULL OR status_code NOT BETWEEN 200 AND 299)::int AS failed FROM webhook_attempts`,
      values: [],
    });

    // ---------------------------------------------------------------- checks
    const violations: string[] = [];
    const fail = (what: string, examples: string[]) => {
      if (examples.length > 0) violations.push(`${what} (${examples.length}): ${examples.slice(0, 5).join('; ')}${examples.length > 5 ? '; …' : ''}`);
    };
    const byId = new Map(jobs.map((j) => [j.id, j]));

    // Submits: every key answered with one job, however often it was sent.
    const allSubmissions = [...thePlan.pipelines, ...thePlan.gatedJobs, ...thePlan.replacements];
    fail('keys never accepted', allSubmissions.filter((s) => !(answers.get(s.key) ?? []).some((a) => a.status === 202 && a.id)).map((s) => s.key));
    fail('keys answered with an error', [...answers].flatMap(([key, list]) => list.filter((a) => a.status !== 202).map((a) => `${key}: ${a.status}`)));
    fail('keys answered with two jobs', [...answers].filter(([, list]) => new Set(list.map((a) => a.id)).size > 1).map(([key, list]) => `${key}: ${[...new Set(list.map((a) => a.id))].join(', ')}`));
    const perKey = new Map<string, number>();
    for (const j of jobs) if (j.idempotency_key) perKey.set(j.idempotency_key, (perKey.get(j.idempotency_key) ?? 0) + 1);
    fail('keys with more than one job in the database', [...perKey].filter(([, n]) => n > 1).map(([key, n]) => `${key}: ${n} jobs`));
    fail('jobs without a key, or not of this run', jobs.filter((j) => !j.idempotency_key?.startsWith(`chaos-${o.seed}-`)).map((j) => j.id));

    // Nothing lost: every pipeline job completed; every gated job was superseded (cancelled).
    const idOf = (s: Submission) => answers.get(s.key)?.find((a) => a.id)?.id;
    const pipelineSubs = [...thePlan.pipelines, ...thePlan.replacements];
    const pipelineIds = pipelineSubs.map(idOf).filter((id): id is string => id !== undefined);
    const gatedIds = thePlan.gatedJobs.map(idOf).filter((id): id is string => id !== undefined);
    const describe = (id: string) => {
      const j = byId.get(id);
      return j ? `${id} ${j.status} after ${j.attempt} attempts${j.error ? `: ${JSON.stringify(j.error).slice(0, 160)}` : ''}` : `${id} missing`;
    };
    fail('jobs lost (not finished)', pipelineIds.filter((id) => !['completed', 'failed', 'cancelled', 'timed_out', 'stale'].includes(byId.get(id)?.status ?? '')).map(describe));
    fail('jobs finished but not completed', pipelineIds.filter((id) => byId.get(id) && byId.get(id)!.status !== 'completed' && ['failed', 'cancelled', 'timed_out', 'stale'].includes(byId.get(id)!.status)).map(describe));
    fail('superseded jobs not cancelled', gatedIds.filter((id) => byId.get(id)?.status !== 'cancelled').map(describe));
    const completed = pipelineIds.filter((id) => byId.get(id)?.status === 'completed');

    // Steps: a recorded step ran its side effect once, on the attempt that recorded it, never
    // after. "Recorded" is read from the job's event log (append-only: a record overwritten by a
    // later run would hide in job_steps, which keeps the last one), and job_steps must agree.
    const callsByStep = new Map<string, EffectRecord[]>();
    for (const call of effects.calls) {
      const key = `${call.jobId}/${call.step}`;
      callsByStep.set(key, [...(callsByStep.get(key) ?? []), call]);
    }
    const recordedSteps = steps.filter((s) => s.status === 'completed');
    const recorded = new Map(recordedSteps.map((s) => [`${s.job_id}/${s.name}`, s]));
    const recordings = new Map<string, number[]>();
    for (const e of stepEvents) recordings.set(`${e.job_id}/${e.name}`, [...(recordings.get(`${e.job_id}/${e.name}`) ?? []), e.attempt]);
    // On two attempts: the step ran again after it was recorded. Twice on one attempt (a write
    // retried after an answer lost in a cut) repeats no side effect: counted, not a violation.
    fail('steps recorded on more than one attempt', [...recordings].filter(([, list]) => new Set(list).size > 1).map(([key, list]) => `${key} on attempts ${list.join(',')}`));
    const recordedTwiceByOneAttempt = [...recordings.values()].filter((list) => list.length > new Set(list).size).length;
    fail('steps whose record disagrees with their event', recordedSteps.filter((s) => recordings.get(`${s.job_id}/${s.name}`)?.[0] !== s.attempt).map((s) => `${s.job_id}/${s.name}: row says attempt ${s.attempt}, events ${JSON.stringify(recordings.get(`${s.job_id}/${s.name}`))}`));
    const repeatedAfterRecord: string[] = [];
    const sameAttemptTwice: string[] = [];
    const unrecordedRepeats: string[] = [];
    let unrecordedRepeatCount = 0;
    /** How the attempts whose side effect ran again had ended (a requeue's reason and error). */
    const repeatCauses = new Map<string, number>();
    const countCause = (call: EffectRecord) => {
      const cause = endedBy.get(`${call.jobId}#${call.attempt}`) ?? 'unknown';
      repeatCauses.set(cause, (repeatCauses.get(cause) ?? 0) + 1);
    };
    const receiptMismatch: string[] = [];
    for (const [key, calls] of callsByStep) {
      const first = recordings.get(key)?.[0];
      if (first === undefined) {
        if (calls.length > 1) unrecordedRepeats.push(`${key}: attempts ${calls.map((c) => c.attempt).join(',')} (never recorded)`);
        unrecordedRepeatCount += Math.max(0, calls.length - 1);
        calls.slice(0, -1).forEach(countCause);
        continue;
      }
      const onRecorded = calls.filter((c) => c.attempt === first);
      const after = calls.filter((c) => c.attempt > first);
      const before = calls.filter((c) => c.attempt < first);
      if (after.length > 0) repeatedAfterRecord.push(`${key} recorded on attempt ${first}, run again on ${after.map((c) => c.attempt).join(',')}`);
      if (onRecorded.length !== 1) sameAttemptTwice.push(`${key} recorded on attempt ${first}, side effect ${onRecorded.length} times on it`);
      unrecordedRepeatCount += before.length;
      before.forEach(countCause);
      if (before.length > 0) unrecordedRepeats.push(`${key}: attempts ${before.map((c) => c.attempt).join(',')} before the one recorded (${first})`);
      const step = recorded.get(key);
      if (onRecorded.length === 1 && step?.result !== onRecorded[0]!.receipt) receiptMismatch.push(`${key}: recorded ${JSON.stringify(step?.result)}, made ${onRecorded[0]!.receipt}`);
    }
    fail('recorded steps whose side effect ran again afterwards', repeatedAfterRecord);
    fail('recorded steps whose side effect ran other than once on the recording attempt', sameAttemptTwice);
    fail('recorded step results that are not what their side effect returned', receiptMismatch);
    fail('recorded steps with no side effect at all', recordedSteps.filter((s) => !callsByStep.has(`${s.job_id}/${s.name}`)).map((s) => `${s.job_id}/${s.name}`));

    // Results: made of the recorded steps' results (replayed, not recomputed); the output streamed matches.
    const stepNames = Array.from({ length: o.steps }, (_, i) => `s${i}`);
    const badResults: string[] = [];
    const badOutputs: string[] = [];
    for (const id of completed) {
      const job = byId.get(id)!;
      const expected: PipelineResult = { n: job.input.n!, receipts: stepNames.map((name) => recorded.get(`${id}/${name}`)?.result as string) };
      if (!isDeepStrictEqual(job.result, expected)) badResults.push(`${id}: ${JSON.stringify(job.result)} ≠ ${JSON.stringify(expected)}`);
    }
    // Read through the engine: the output shown is the last attempt's.
    await Promise.all(completed.map(async (id) => {
      const job = await waitless.get(id);
      const receipts = stepNames.map((name) => recorded.get(`${id}/${name}`)?.result as string);
      if (job?.output !== pipelineOutput(receipts)) badOutputs.push(`${id}: ${JSON.stringify(job?.output)}`);
    }));
    fail('results not made of the recorded step results', badResults);
    fail('streamed output not what the completing attempt wrote', badOutputs);

    // Webhooks: one delivery per terminal job, all delivered, each result applied once, never a superseded one.
    fail('webhook deliveries not delivered', deliveries.filter((d) => d.status !== 'succeeded').map((d) => `${d.id} (${d.event_type}, job ${d.job_id}) ${d.status} after ${d.attempts} attempts: ${d.last_error ?? ''}`));
    const deliveriesOf = (id: string, type: string) => deliveries.filter((d) => d.job_id === id && d.event_type === type);
    fail('completed jobs without exactly one job.completed delivery', completed.filter((id) => deliveriesOf(id, 'job.completed').length !== 1).map((id) => `${id}: ${deliveriesOf(id, 'job.completed').length}`));
    fail('superseded jobs with a job.completed delivery', gatedIds.filter((id) => deliveriesOf(id, 'job.completed').length > 0));
    fail('superseded jobs without exactly one job.cancelled delivery', gatedIds.filter((id) => deliveriesOf(id, 'job.cancelled').length !== 1));
    fail('completed jobs whose result the receiver never applied', completed.filter((id) => !receiver.applied.has(id)));
    fail('results applied that differ from the stored result', completed.filter((id) => receiver.applied.has(id) && !isDeepStrictEqual(receiver.applied.get(id)!.result, byId.get(id)!.result)));
    fail('results applied for jobs that did not complete', [...receiver.applied.keys()].filter((id) => byId.get(id)?.status !== 'completed').map(describe));
    fail('deliveries recorded as delivered that the receiver never acknowledged', deliveries.filter((d) => d.status === 'succeeded' && !receiver.acked.has(d.id)).map((d) => d.id));
    fail('deliveries the receiver could not verify', receiver.raw.filter((r) => r.outcome === 'unverified').map((r) => r.webhookId));
    fail('jobs still queued or running after the drain', left.jobs > 0 ? [`${left.jobs} jobs`] : []);
    fail('webhook deliveries still pending after the drain', left.deliveries > 0 ? [`${left.deliveries} deliveries`] : []);

    const attempts = jobs.filter((j) => j.name === pipeline.name).map((j) => j.attempt);
    const count = (outcome: RawDelivery['outcome']) => receiver.raw.filter((r) => r.outcome === outcome).length;
    const report: ChaosReport = {
      seed: o.seed,
      violations,
      unrecordedRepeats,
      workerTails: [...deaths, ...workers.filter((w) => w.lines.length > 0).map(troubleSummary)],
      figures: {
        'jobs submitted (pipeline + superseded)': `${pipelineIds.length} + ${gatedIds.length}`,
        'submit requests (second sends of a key)': `${[...answers.values()].reduce((n, list) => n + list.length, 0)} (${thePlan.resubmits.length})`,
        'answers replayed for a key already used': figures.replayedAnswers!,
        'submits retried after a 5xx or no answer': figures.submitRetries!,
        'jobs in the database': jobs.length,
        completed: completed.length,
        'lost (not finished)': pipelineIds.filter((id) => !['completed', 'failed', 'cancelled', 'timed_out', 'stale'].includes(byId.get(id)?.status ?? '')).length,
        'finished otherwise (failed, timed out)': pipelineIds.filter((id) => ['failed', 'timed_out', 'stale', 'cancelled'].includes(byId.get(id)?.status ?? '')).length,
        'superseded jobs cancelled (running when superseded)': `${gatedIds.filter((id) => byId.get(id)?.status === 'cancelled').length} (${[...gatedStatusAtSupersede.values()].filter((s) => s === 'running').length})`,
        'duplicate jobs for a key': [...perKey.values()].filter((n) => n > 1).length,
        'jobs that needed more than one attempt': attempts.filter((a) => a > 1).length,
        'attempts (most for one job)': `${attempts.reduce((a, b) => a + b, 0)} (${Math.max(0, ...attempts)})`,
        'workers SIGKILLed': figures.kills!,
        'worker SIGSTOPped past its lease': figures.paused!,
        'PostgreSQL cuts (proxy)': figures.proxyCuts!,
        'worker backends terminated': figures.backendsTerminated!,
        'workers that exited on their own': figures.diedOnTheirOwn!,
        'error lines logged by workers': workers.reduce((n, w) => n + w.troubles().length, 0),
        'steps recorded': recordedSteps.length,
        'side effects performed': effects.calls.length,
        'side effects repeated by attempts whose step was never recorded': unrecordedRepeatCount,
        '… by how their attempt ended': [...repeatCauses].sort((a, b) => b[1] - a[1]).map(([cause, n]) => `${cause}: ${n}`).join(', ') || '-',
        'side effects repeated after their step was recorded': repeatedAfterRecord.length + sameAttemptTwice.length,
        'steps whose record was written twice by one attempt': recordedTwiceByOneAttempt,
        'webhook deliveries (all delivered)': `${deliveries.length} (${deliveries.filter((d) => d.status === 'succeeded').length})`,
        'webhook attempts (failed)': `${attemptRow?.total ?? 0} (${attemptRow?.failed ?? 0})`,
        'requests at the receiver: 503 / closed / applied / duplicate / other events': `${count('503')} / ${count('closed')} / ${count('applied')} / ${count('duplicate')} / ${count('other-event')}`,
        'deliveries sent again after a 2xx': [...receiver.acked.values()].reduce((n, k) => n + k - 1, 0),
        'results applied': receiver.applied.size,
        'left when the faults ended: jobs / deliveries': `${atFaultsEnd.jobs} / ${atFaultsEnd.deliveries}`,
        'drain after the faults, jobs / deliveries (s)': `${jobsDrainedIn === undefined ? '-' : (jobsDrainedIn / 1000).toFixed(1)} / ${drainedIn === undefined ? `not drained in ${o.drainTimeoutMs / 1000}` : (drainedIn / 1000).toFixed(1)}`,
        'whole run (s)': ((Date.now() - started) / 1000).toFixed(1),
      },
    };
    if (violations.length > 0) log(`violations:\n  ${violations.join('\n  ')}`);
    return report;
  } finally {
    await killAll(workers);
    for (const close of closers.reverse()) await close().catch(() => {});
    await engine?.close().catch(() => {});
  }
}

/** What a worker logged as trouble, one line per kind with its count: its raw lines carry whole stacks. */
function troubleSummary(worker: WorkerProcess): string {
  const counts = new Map<string, number>();
  for (const line of worker.troubles()) counts.set(line.slice(0, 200), (counts.get(line.slice(0, 200)) ?? 0) + 1);
  return `worker ${worker.pid}${worker.exitedAlready ? '' : ' (alive)'}:\n${[...counts].map(([line, n]) => `  ${n} × ${line}`).join('\n')}`;
}

/** The report as lines of `name: value`, for the bench's output and a failing test's message. */
export function formatReport(report: ChaosReport): string {
  const width = Math.max(...Object.keys(report.figures).map((k) => k.length));
  return [`seed ${report.seed}`, ...Object.entries(report.figures).map(([k, v]) => `${k.padEnd(width)}  ${v}`)].join('\n');
}
