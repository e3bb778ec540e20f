-- Fairness between tenants: claims take due jobs tenant by tenant (round robin), so one
-- tenant's backlog or priorities order only its own jobs; a key may be capped in the priority
-- it sets; webhook deliveries are claimed tenant by tenant too.

-- The unkeyed claim walks the tenants with queued jobs (one index probe each, in byte order,
-- hence COLLATE "C": the walk resumes after the tenant the last claim ended on) and takes each
-- one's jobs in priority and due order. It replaces jobs_claimable_unkeyed, which no query uses now.
CREATE INDEX jobs_claimable_by_tenant ON jobs (tenant_id COLLATE "C", priority DESC, run_at, id)
  WHERE status = 'queued' AND concurrency_key IS NULL;
DROP INDEX jobs_claimable_unkeyed;

-- The highest priority a key may give a job (NULL: any).
ALTER TABLE api_keys ADD COLUMN max_priority integer;

-- The delivery claim walks the tenants with due deliveries the same way.
CREATE INDEX webhook_deliveries_due_by_tenant ON webhook_deliveries (tenant_id COLLATE "C", next_attempt_at) WHERE status = 'pending';
