-- The person's side: instant fallback answers, admin keys, and the secret that signs job tokens.

-- A deterministic answer computed at submit (the definition's `fallback(input)`), shown as
-- provisional until the real result lands.
ALTER TABLE jobs ADD COLUMN fallback jsonb;

-- Admin keys may also recover jobs (and open the dashboard in `waitless serve`).
ALTER TABLE api_keys ADD COLUMN role text NOT NULL DEFAULT 'service' CHECK (role IN ('service', 'admin'));

-- Secrets shared by every process on this database, created on first use: job tokens minted by
-- one API process are verified by any other.
CREATE TABLE server_secrets (
  name       text PRIMARY KEY,
  secret     text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- A redelivery asked for while an attempt is in flight runs right after that attempt, instead
-- of being lost when the attempt records its outcome.
ALTER TABLE webhook_deliveries ADD COLUMN redeliver_requested boolean NOT NULL DEFAULT false;
