-- The consumer's side: remote jobs it waits for, and how each was settled.
CREATE TABLE tracked_jobs (
  job_id        text PRIMARY KEY,
  state         text NOT NULL CHECK (state IN ('pending', 'applied', 'stale', 'failed')),
  context       jsonb,
  checks        integer NOT NULL DEFAULT 0,
  next_check_at timestamptz NOT NULL,
  tracked_at    timestamptz NOT NULL DEFAULT now(),
  settled_at    timestamptz,
  settled_by    text CHECK (settled_by IN ('webhook', 'poll', 'give_up')),
  remote_status text,
  message       text
);
CREATE INDEX tracked_jobs_due ON tracked_jobs (next_check_at) WHERE state = 'pending';

-- Webhook ids already handled, so a redelivered message is a no-op even across restarts.
CREATE TABLE seen_webhooks (
  webhook_id text PRIMARY KEY,
  seen_at    timestamptz NOT NULL DEFAULT now()
);
