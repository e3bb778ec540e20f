/** The environment variables through which the chaos scenario configures its worker processes. */

/** Where the steps' side effects go: the scenario's side-effect server. */
export const EFFECTS_URL_ENV = 'WAITLESS_CHAOS_EFFECTS_URL';
/** How long a webhook receiver may take (test/chaos/worker.ts; the CLI has no flag for it). */
export const WEBHOOK_TIMEOUT_ENV = 'WAITLESS_CHAOS_WEBHOOK_TIMEOUT';
/** Each worker's pool size (test/chaos/worker.ts). */
export const MAX_CONNECTIONS_ENV = 'WAITLESS_CHAOS_MAX_CONNECTIONS';
