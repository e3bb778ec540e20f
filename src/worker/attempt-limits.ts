import { LimitExceededError } from '../errors.ts';
import type { JobLimits } from '../job/definition.ts';

/**
 * One attempt's tally against its job's size limits, kept in memory, so no write costs a
 * statement to check. Events are counted from the job's `last_seq` at the claim: while a job
 * runs, only the holder of its lease appends its events (a cancel or a takeover ends the lease
 * first), so that number plus what this attempt wrote is the job's count. The first limit
 * passed is reported once, through `onExceeded` (which stops the handler and fails the job).
 */
export class AttemptLimits {
  readonly limits: Readonly<Required<JobLimits>>;
  /** The limit passed, once one was: every later write is refused with it. */
  exceeded: LimitExceededError | undefined;
  private events: number;
  private outputBytes = 0;
  private readonly onExceeded: (error: LimitExceededError) => void;

  constructor(limits: Required<JobLimits>, eventsSoFar: number, onExceeded: (error: LimitExceededError) => void) {
    this.limits = limits;
    this.events = eventsSoFar;
    this.onExceeded = onExceeded;
  }

  /** Counts `n` more events of the job; false (and the job fails) past `limits.events`. */
  event(n = 1): boolean {
    if (this.exceeded) return false;
    if (this.events + n > this.limits.events) return this.exceed(new LimitExceededError("The job's event log", 'limits.events', this.limits.events, 'events', 'Write output in fewer, larger chunks, or raise the limit.'));
    this.events += n;
    return true;
  }

  /** Counts a chunk of output (`bytes` of text; `newEvent` when it starts an event of its own); false past `limits.output`. */
  output(bytes: number, newEvent: boolean): boolean {
    if (this.exceeded) return false;
    if (this.outputBytes + bytes > this.limits.output) return this.exceed(new LimitExceededError("The job's output", 'limits.output', this.limits.output));
    if (newEvent && !this.event()) return false;
    this.outputBytes += bytes;
    return true;
  }

  /** Checks one progress report (`bytes` of JSON) and counts its event; false past `limits.progress` or `limits.events`. */
  progress(bytes: number): boolean {
    if (this.exceeded) return false;
    if (bytes > this.limits.progress) return this.exceed(new LimitExceededError('A progress report of the job', 'limits.progress', this.limits.progress));
    return this.event();
  }

  /** Checks a value held to `limits.result` (a step's result or checkpoint: `what` names it); false past it. */
  value(what: string, bytes: number): boolean {
    if (this.exceeded) return false;
    if (bytes > this.limits.result) return this.exceed(new LimitExceededError(what, 'limits.result', this.limits.result));
    return true;
  }

  private exceed(error: LimitExceededError): false {
    this.exceeded = error;
    this.onExceeded(error);
    return false;
  }
}
