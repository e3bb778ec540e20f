/** The webhook events sent by default: one per terminal status. */
export const TERMINAL_WEBHOOK_EVENTS = ['job.completed', 'job.failed', 'job.cancelled', 'job.timed_out', 'job.stale'] as const;

/** Every webhook event a job webhook or a registered endpoint can ask for. */
export const WEBHOOK_EVENTS = [...TERMINAL_WEBHOOK_EVENTS, 'job.progress'] as const;

export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];
