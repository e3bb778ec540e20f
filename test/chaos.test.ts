/**
 * The chaos run, CI-sized (test/chaos/scenario.ts has the scenario; bench/chaos.ts runs it
 * larger and longer): a few hundred jobs with durable steps, submitted over HTTP with
 * Idempotency-Keys (some sent twice), run by three worker processes while workers are SIGKILLed
 * and replaced, their PostgreSQL connections are cut (a TCP proxy that refuses for a while, then
 * `pg_terminate_backend`), the webhook receiver is down (503, then closed sockets), one worker
 * is paused (SIGSTOP) past its lease and waiting jobs are superseded. After a bounded drain: nothing lost, one job per key, no recorded step's
 * side effect run twice, every result applied once and never a superseded job's, every webhook
 * delivered. PostgreSQL only: several processes share the database.
 *
 * The seed is random unless WAITLESS_CHAOS_SEED sets it, and is printed on failure, so a failing
 * run can be replayed with the same plan and the same fault moments.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatReport, runChaos } from './chaos/scenario.ts';

const seed = Number(process.env.WAITLESS_CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));

test(`chaos: 300 jobs through worker kills, a paused worker, connection cuts and a webhook outage (seed ${seed})`, async (t) => {
  const lines: string[] = [];
  const report = await runChaos({
    seed,
    jobs: 300,
    superseded: 6,
    resubmitShare: 0.2,
    steps: 3,
    stepMs: [60, 300],
    workers: 3,
    concurrency: 8,
    maxConnections: 4,
    submitOverMs: 8000,
    chaosMs: 14_000,
    killEveryMs: [1500, 3000],
    proxyCut: { atMs: 4000, forMs: 2500 },
    terminateAtMs: 9000,
    outage: { atMs: 3000, forMs: 6000 },
    pause: { atMs: 10_000, forMs: 5000 },
    supersedeAtMs: 5000,
    lease: '2s',
    heartbeat: '500ms',
    pollInterval: '300ms',
    webhookTimeout: '2s',
    webhookRetry: '250ms,500ms,1s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s',
    drainTimeoutMs: 40_000,
    log: (line) => lines.push(line),
  });
  t.diagnostic(formatReport(report));
  if (report.violations.length > 0) {
    for (const tail of report.workerTails.slice(0, 6)) t.diagnostic(tail);
    t.diagnostic(lines.join('\n'));
  }
  assert.deepEqual(report.violations, [], `chaos run with seed ${seed} (replay: WAITLESS_CHAOS_SEED=${seed})`);
  // The faults did happen: a run where nothing was killed or cut proves nothing.
  assert.ok(Number(report.figures['workers SIGKILLed']) >= 3, `seed ${seed}: too few kills`);
  assert.equal(report.figures['PostgreSQL cuts (proxy)'], 1, `seed ${seed}`);
  assert.equal(report.figures['worker SIGSTOPped past its lease'], 1, `seed ${seed}`);
  assert.ok(Number(report.figures['worker backends terminated']) > 0, `seed ${seed}: no worker backend was terminated`);
  assert.match(String(report.figures['requests at the receiver: 503 / closed / applied / duplicate / other events']), /^[1-9]\d* \/ [1-9]\d* \//, `seed ${seed}: the receiver's outage turned nothing away`);
});
