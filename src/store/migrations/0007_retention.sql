-- Retention: finished jobs past their retention are deleted in small batches (see
-- retention-queries.ts), found by when they finished, never by a scan of the table.

-- Only finished jobs are indexed, so the index costs nothing on the claim path (a job enters it
-- once, when it finishes). Built here, inside the migration's transaction: a plain CREATE INDEX
-- (CONCURRENTLY cannot run in a transaction), which makes writes to `jobs` wait while it is
-- built: a second or so per million rows. A database with many millions of jobs can build
-- `jobs_finished` with CREATE INDEX CONCURRENTLY before upgrading; this then finds it and
-- skips it.
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at)
  WHERE status IN ('completed', 'failed', 'cancelled', 'timed_out', 'stale');

-- Deliveries by their job alone: deleting a job cascades to its deliveries by `job_id`, and a
-- job with a delivery still due is kept. The index it replaces led with the tenant, which that
-- lookup does not know; listing a job's deliveries (tenant and job) is served as well by this one.
DROP INDEX webhook_deliveries_by_job;
CREATE INDEX webhook_deliveries_by_job ON webhook_deliveries (job_id, created_at);
