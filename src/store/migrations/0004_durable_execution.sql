-- Durable execution inside a job (steps), latest-wins keys, relevance at delivery, flow
-- control and token usage.

-- `stale`: the result came, but the job's context no longer matched; kept, never delivered as completed.
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
  CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled', 'timed_out', 'stale'));

-- A step's recorded result (or, while unfinished, its checkpoint). Written fenced by the
-- job's lease, in the statement that also appends the step's event.
CREATE TABLE job_steps (
  job_id      uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  name        text NOT NULL,
  tenant_id   text NOT NULL,
  status      text NOT NULL CHECK (status IN ('running', 'completed')),
  result      jsonb,
  checkpoint  jsonb,
  attempt     integer NOT NULL,
  started_at  timestamptz NOT NULL,
  finished_at timestamptz,
  PRIMARY KEY (job_id, name)
);

-- Per-step summary ({ name: { status, attempt, startedAt, finishedAt, durationMs } }) for readers.
ALTER TABLE jobs ADD COLUMN steps jsonb;
-- Latest wins: in-flight jobs of a tenant sharing a key.
ALTER TABLE jobs ADD COLUMN supersede_key text;
-- What the job was asked about (e.g. a document's version), checked by `relevant()` at delivery.
ALTER TABLE jobs ADD COLUMN context jsonb;
-- Flow control: at most `concurrency_limit` running jobs per (tenant, key).
ALTER TABLE jobs ADD COLUMN concurrency_key text;
ALTER TABLE jobs ADD COLUMN concurrency_limit integer;
-- Token usage of the job's model calls: totals and per model.
ALTER TABLE jobs ADD COLUMN usage jsonb;

-- Workers with nothing due ask when the next delayed job falls due.
CREATE INDEX jobs_queued_by_run_at ON jobs (run_at) WHERE status = 'queued';

-- A job queued for later (a delay, a retry backing off) wakes the workers too: finding nothing
-- due, they set a timer for it instead of leaving it to the next poll. The payload says which
-- claim paths may find it ("<name>[ keyed][ later]"), so workers skip the queries that cannot.
CREATE OR REPLACE FUNCTION notify_job_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status = 'queued' THEN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_queued', NEW.name
      || CASE WHEN NEW.concurrency_key IS NOT NULL THEN ' keyed' ELSE '' END
      || CASE WHEN NEW.run_at > now() THEN ' later' ELSE '' END);
  END IF;
  RETURN NULL;
END
$$;

-- The two claim paths: jobs without a key in one scan, keyed jobs key by key. (The first
-- replaces jobs_claimable: every claim of unkeyed jobs now says so.)
DROP INDEX jobs_claimable;
CREATE INDEX jobs_claimable_unkeyed ON jobs (priority DESC, run_at, id) WHERE status = 'queued' AND concurrency_key IS NULL;
CREATE INDEX jobs_claimable_keyed ON jobs (tenant_id, concurrency_key, priority DESC, run_at, id)
  WHERE status = 'queued' AND concurrency_key IS NOT NULL;

CREATE INDEX jobs_in_flight_by_supersede_key ON jobs (tenant_id, supersede_key)
  WHERE supersede_key IS NOT NULL AND status IN ('queued', 'running');
CREATE INDEX jobs_in_flight_by_concurrency_key ON jobs (tenant_id, concurrency_key, status)
  WHERE concurrency_key IS NOT NULL AND status IN ('queued', 'running');

-- A keyed job leaving `running` frees a slot: wake the workers, since the jobs waiting for it
-- were queued long ago and their own NOTIFY is spent.
CREATE FUNCTION notify_slot_freed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status = 'running' AND NEW.status <> 'running' AND NEW.concurrency_key IS NOT NULL THEN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_queued', NEW.name || ' keyed');
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER jobs_notify_slot_freed AFTER UPDATE OF status ON jobs
  FOR EACH ROW EXECUTE FUNCTION notify_slot_freed();
