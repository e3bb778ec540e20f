-- Jobs, their event log, idempotency keys and API keys.
-- Runs with search_path set to the Waitless schema; names are unqualified on purpose.

CREATE TABLE jobs (
  id               uuid PRIMARY KEY,
  tenant_id        text NOT NULL,
  name             text NOT NULL,
  status           text NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled', 'timed_out')),
  input            jsonb NOT NULL,
  result           jsonb,
  error            jsonb,
  progress         jsonb,
  partial_output   text NOT NULL DEFAULT '',
  attempt          integer NOT NULL DEFAULT 0,
  max_attempts     integer NOT NULL,
  timeout_ms       integer NOT NULL,
  priority         integer NOT NULL DEFAULT 0,
  run_at           timestamptz NOT NULL DEFAULT now(),
  lease_token      uuid,
  lease_expires_at timestamptz,
  worker_id        text,
  last_seq         integer NOT NULL DEFAULT 1,
  idempotency_key  text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  started_at       timestamptz,
  finished_at      timestamptz,
  updated_at       timestamptz NOT NULL DEFAULT now()
);

-- The claim scans queued jobs in priority and due order; a partial index keeps it small.
CREATE INDEX jobs_claimable ON jobs (priority DESC, run_at, id) WHERE status = 'queued';
-- Lease reclaim looks only at running jobs.
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE status = 'running';
-- Listing is per tenant, newest first, with (created_at, id) as the cursor.
CREATE INDEX jobs_by_tenant ON jobs (tenant_id, created_at DESC, id DESC);

CREATE TABLE job_events (
  job_id     uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  seq        integer NOT NULL,
  tenant_id  text NOT NULL,
  type       text NOT NULL,
  data       jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (job_id, seq)
);

CREATE TABLE idempotency_keys (
  tenant_id   text NOT NULL,
  key         text NOT NULL,
  fingerprint text NOT NULL,
  job_id      uuid NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);

CREATE TABLE api_keys (
  id          text PRIMARY KEY,
  tenant_id   text NOT NULL,
  secret_hash text NOT NULL,
  label       text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz
);

-- Readers (SSE, long-poll, workers waiting for cancel) learn of new events by NOTIFY.
-- The payload is tiny ("<job id> <seq> <type>"): readers fetch the rows themselves.
CREATE FUNCTION notify_job_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify(TG_TABLE_SCHEMA || '_events', NEW.job_id::text || ' ' || NEW.seq::text || ' ' || NEW.type);
  RETURN NULL;
END
$$;
CREATE TRIGGER job_events_notify AFTER INSERT ON job_events
  FOR EACH ROW EXECUTE FUNCTION notify_job_event();

-- Workers wake on this when a job becomes claimable. Payload: the job name.
CREATE FUNCTION notify_job_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status = 'queued' AND NEW.run_at <= now() THEN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_queued', NEW.name);
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER jobs_notify_queued AFTER INSERT OR UPDATE OF status ON jobs
  FOR EACH ROW EXECUTE FUNCTION notify_job_queued();
