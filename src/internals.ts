/**
 * The engine's fenced internals, for the HTTP layer, the CLI and tests: the database driver,
 * the job store, notifications, the event hub, job tokens, the webhook outbox and
 * housekeeping. Deliberately not exported from the package: these bypass the engine's checks
 * (input validation, SSRF guard, tenant defaults), so they are not public API.
 */
import type { JobTokens } from './access/job-tokens.ts';
import type { EventHub } from './events/hub.ts';
import type { Housekeeping } from './maintenance/housekeeping.ts';
import type { Driver } from './store/driver.ts';
import type { JobStore } from './store/job-store.ts';
import type { Notifier } from './store/notifications.ts';
import type { WebhookStore } from './store/webhook-store.ts';

export interface EngineInternals {
  readonly driver: Driver;
  /** The schema holding the engine's tables (readiness compares its migrations with the code's). */
  readonly schema: string;
  readonly store: JobStore;
  readonly notifier: Notifier;
  /** Feeds every SSE stream and long-poll of this process. */
  readonly hub: EventHub;
  readonly jobTokens: JobTokens;
  /** The webhook outbox, with the dispatcher's own operations (claim, record, reclaim). */
  readonly webhooks: WebhookStore;
  /** Periodic maintenance; runs once a worker is started. */
  readonly housekeeping: Housekeeping;
}

const registry = new WeakMap<object, EngineInternals>();

/** Called once by `createWaitless` for the engine it returns. */
export function registerInternals(engine: object, parts: EngineInternals): void {
  registry.set(engine, parts);
}

/** The internals of an engine made by `createWaitless`. */
export function internals(engine: object): EngineInternals {
  const parts = registry.get(engine);
  if (!parts) throw new TypeError('Not a Waitless engine: create one with createWaitless().');
  return parts;
}
