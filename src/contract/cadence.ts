/**
 * How long a poller should wait before asking again, by the job's age. Front-loaded: a person
 * watching a new job wants a sign of life at once, so early polls are tight; a job that has run
 * for many minutes is a slow one, and asking often buys nothing.
 */
const POLL_CADENCE: ReadonlyArray<{ untilAgeMs: number; everySeconds: number }> = [
  { untilAgeMs: 10_000, everySeconds: 1 },
  { untilAgeMs: 60_000, everySeconds: 2 },
  { untilAgeMs: 5 * 60_000, everySeconds: 5 },
  { untilAgeMs: 15 * 60_000, everySeconds: 15 },
];
const TAIL_SECONDS = 30;

/** The `Retry-After` value, in whole seconds, for a job that is `ageMs` old and not done. */
export function retryAfterSeconds(ageMs: number): number {
  return POLL_CADENCE.find((step) => ageMs < step.untilAgeMs)?.everySeconds ?? TAIL_SECONDS;
}
