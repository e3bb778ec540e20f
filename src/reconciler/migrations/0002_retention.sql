-- Retention: settled jobs and handled webhook ids are forgotten after the reconciler's
-- `retention`, in small batches found by these indexes (pending jobs are never deleted).
CREATE INDEX tracked_jobs_settled ON tracked_jobs (settled_at) WHERE state <> 'pending';
CREATE INDEX seen_webhooks_age ON seen_webhooks (seen_at);
