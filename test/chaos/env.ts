/** The environment variables through which the chaos scenario configures its worker processes. */

/** Where the steps' side effects go: the scenario's side-effect server. */
export const EFFECTS_URL_ENV = 'WAITLESS_CHAOS_EFFECTS_URL';
