/**
 * `waitless/reconciler`: the consumer's missed-webhook safety net (Node; keeps its state in
 * PostgreSQL or embedded PGlite).
 * @packageDocumentation
 */
export { createReconciler, DEFAULT_CADENCE } from './reconciler.ts';
export type { JobSource, Reconciler, ReconcilerOptions, ReconcilerPruneCounts, TrackedJob } from './reconciler.ts';
