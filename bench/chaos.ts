/**
 * The chaos run, larger and longer than test/chaos.test.ts (same scenario:
 * test/chaos/scenario.ts): jobs with durable steps submitted over HTTP with Idempotency-Keys,
 * worker processes SIGKILLed every few seconds and replaced, the workers' PostgreSQL cut off
 * for a while (a TCP proxy that refuses) and their backends terminated, a webhook receiver
 * outage (503, then closed sockets), superseded jobs and, with --pause, a worker SIGSTOPped past
 * its lease. Prints what happened and what held; exits 1 if a guarantee broke.
 *
 *   node bench/chaos.ts [--seed N] [--jobs 2000] [--superseded 40] [--workers 4] [--concurrency 10]
 *                       [--steps 3] [--step-ms 200-1500] [--submit-over 60] [--chaos 120]
 *                       [--kill-every 3-6|none] [--pg-cut 10] [--outage 60] [--pause] [--lease 5s]
 *                       [--webhook-timeout 15s] [--drain 300]
 *
 * Times are seconds unless they carry a unit. Every flag may also be given as WAITLESS_CHAOS_<FLAG>
 * (e.g. WAITLESS_CHAOS_JOBS=500). PostgreSQL: WAITLESS_TEST_DATABASE_URL, else the local server.
 * The faults fall at fixed shares of the chaos phase: the cut at 1/4, the outage from 1/3,
 * the backends terminated at 3/5, the pause at 2/3, the supersede at 1/5.
 */
import { parseArgs } from 'node:util';
import { formatReport, runChaos } from '../test/chaos/scenario.ts';
import { POSTGRES_URL } from '../test/helpers.ts';
import { printMachine } from './common.ts';

const FLAGS = ['seed', 'jobs', 'superseded', 'workers', 'concurrency', 'steps', 'step-ms', 'submit-over', 'chaos', 'kill-every', 'pg-cut', 'outage', 'lease', 'webhook-timeout', 'drain'] as const;
const { values } = parseArgs({
  options: { ...Object.fromEntries(FLAGS.map((f) => [f, { type: 'string' as const }])), pause: { type: 'boolean' } },
});

/** The flag, else WAITLESS_CHAOS_<FLAG>, else the default. */
function option(name: (typeof FLAGS)[number], fallback: string): string {
  const env = process.env[`WAITLESS_CHAOS_${name.toUpperCase().replaceAll('-', '_')}`];
  return (values as Record<string, string | undefined>)[name] ?? (env || fallback);
}

function count(name: (typeof FLAGS)[number], fallback: number): number {
  const raw = option(name, String(fallback));
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name}: expected a whole number, got "${raw}"`);
  return n;
}

/** `200-1500` → [200, 1500]. */
function range(name: (typeof FLAGS)[number], fallback: string, scale = 1): [number, number] {
  const raw = option(name, fallback);
  const match = /^(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$/.exec(raw);
  if (!match || Number(match[1]) > Number(match[2])) throw new Error(`--${name}: expected MIN-MAX, got "${raw}"`);
  return [Number(match[1]) * scale, Number(match[2]) * scale];
}

const seconds = (name: (typeof FLAGS)[number], fallback: number) => count(name, fallback) * 1000;
const durationMs = (value: string) => {
  const match = /^(\d+)(ms|s)?$/.exec(value);
  if (!match) throw new Error(`expected a duration such as 5s or 500ms, got "${value}"`);
  return Number(match[1]) * (match[2] === 'ms' ? 1 : 1000);
};

const chaosMs = seconds('chaos', 120);
const lease = option('lease', '5s');
const leaseMs = durationMs(lease);
const pgCutMs = seconds('pg-cut', 10);
const outageMs = seconds('outage', 60);
const killEvery = option('kill-every', '3-6') === 'none' ? undefined : range('kill-every', '3-6', 1000);
const webhookTimeout = option('webhook-timeout', '15s');

await printMachine(POSTGRES_URL);
const started = Date.now();
const report = await runChaos({
  seed: count('seed', Math.floor(Math.random() * 2 ** 31)),
  jobs: count('jobs', 2000),
  superseded: count('superseded', 40),
  resubmitShare: 0.2,
  steps: count('steps', 3),
  stepMs: range('step-ms', '200-1500'),
  workers: count('workers', 4),
  concurrency: count('concurrency', 10),
  maxConnections: 5,
  submitOverMs: seconds('submit-over', 60),
  chaosMs,
  killEveryMs: killEvery,
  proxyCut: pgCutMs > 0 ? { atMs: Math.round(chaosMs / 4), forMs: pgCutMs } : undefined,
  terminateAtMs: Math.round((chaosMs * 3) / 5),
  outage: outageMs > 0 ? { atMs: Math.round(chaosMs / 3), forMs: outageMs } : undefined,
  pause: values.pause ? { atMs: Math.round((chaosMs * 2) / 3), forMs: leaseMs * 3 } : undefined,
  supersedeAtMs: Math.round(chaosMs / 5),
  lease,
  heartbeat: `${Math.max(100, Math.round(leaseMs / 4))}ms`,
  pollInterval: '1s',
  webhookTimeout,
  // Outlasts the outage: ~3 min of attempts.
  webhookRetry: '1s,2s,5s,10s,20s,30s,30s,30s,30s,30s',
  drainTimeoutMs: seconds('drain', 300),
  log: (line) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}`),
});

console.log(`\n${formatReport(report)}`);
if (report.unrecordedRepeats.length > 0) {
  console.log(`\nside effects repeated by attempts whose step was never recorded (first 10 of ${report.unrecordedRepeats.length}):`);
  for (const line of report.unrecordedRepeats.slice(0, 10)) console.log(`  ${line}`);
}
if (report.violations.length > 0) {
  console.log(`\nVIOLATIONS (seed ${report.seed}):\n  ${report.violations.join('\n  ')}`);
  for (const tail of report.workerTails.slice(0, 8)) console.log(tail);
  process.exitCode = 1;
} else {
  console.log(`\nevery guarantee held (seed ${report.seed})`);
}
