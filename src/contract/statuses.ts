/** Every status a job can be in. */
export const JOB_STATUSES = ['queued', 'running', 'completed', 'failed', 'cancelled', 'timed_out', 'stale'] as const;

export type JobStatus = (typeof JOB_STATUSES)[number];

/** Statuses a job never leaves once written. */
export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set(['completed', 'failed', 'cancelled', 'timed_out', 'stale']);

/** Statuses the admin's recovery takes back to `queued`: an unsuccessful end, or a job stuck in `running`. */
export const RECOVERABLE_STATUSES = ['failed', 'timed_out', 'cancelled', 'running'] as const satisfies readonly JobStatus[];

export function isTerminal(status: JobStatus): boolean {
  return TERMINAL_STATUSES.has(status);
}

export function isJobStatus(value: string): value is JobStatus {
  return (JOB_STATUSES as readonly string[]).includes(value);
}

/**
 * The legal transitions. The store enforces them in SQL (every update names the status it
 * expects to find); this table is the readable statement of the same rules.
 */
export const TRANSITIONS: Readonly<Record<JobStatus, readonly JobStatus[]>> = {
  // claimed by a worker, or cancelled before it started
  queued: ['running', 'cancelled'],
  // finished, or back to queued for a retry / after a lost lease / on graceful shutdown
  // (stale: the result came, but its context no longer matched: kept, not delivered)
  running: ['completed', 'failed', 'cancelled', 'timed_out', 'stale', 'queued'],
  completed: [],
  stale: [],
  failed: [],
  cancelled: [],
  timed_out: [],
};

export function canTransition(from: JobStatus, to: JobStatus): boolean {
  return TRANSITIONS[from].includes(to);
}
