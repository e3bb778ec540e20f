-- Outbound webhooks: signing secrets per tenant, registered endpoints, and the delivery outbox.

-- A job may name its own webhook at submit ({ "url": ..., "events": [...] }), and remember the
-- absolute status URL it was submitted under, so payloads can link to it.
ALTER TABLE jobs ADD COLUMN webhook jsonb;
ALTER TABLE jobs ADD COLUMN status_url text;

-- Signing secrets. Every unexpired secret of a tenant signs every delivery, so during a
-- rotation receivers see the old and the new signature side by side.
CREATE TABLE webhook_secrets (
  id         uuid PRIMARY KEY,
  tenant_id  text NOT NULL,
  secret     text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz
);
CREATE INDEX webhook_secrets_by_tenant ON webhook_secrets (tenant_id, created_at DESC);

CREATE TABLE webhook_endpoints (
  id              uuid PRIMARY KEY,
  tenant_id       text NOT NULL,
  url             text NOT NULL,
  events          text[] NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  disabled_at     timestamptz,
  disabled_reason text
);
CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant_id) WHERE disabled_at IS NULL;

-- One row per message to one destination. Its id is the `webhook-id` header: stable across
-- retries, so receivers can de-duplicate. Written in the statement that changes the job.
CREATE TABLE webhook_deliveries (
  id               uuid PRIMARY KEY,
  tenant_id        text NOT NULL,
  job_id           uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  endpoint_id      uuid REFERENCES webhook_endpoints (id) ON DELETE SET NULL,
  url              text NOT NULL,
  event_type       text NOT NULL,
  payload          text NOT NULL,
  status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivering', 'succeeded', 'failed')),
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  lease_token      uuid,
  lease_expires_at timestamptz,
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  delivered_at     timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_leases ON webhook_deliveries (lease_expires_at) WHERE status = 'delivering';
CREATE INDEX webhook_deliveries_by_job ON webhook_deliveries (tenant_id, job_id, created_at);

CREATE TABLE webhook_attempts (
  delivery_id      uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
  n                integer NOT NULL,
  tenant_id        text NOT NULL,
  started_at       timestamptz NOT NULL,
  status_code      integer,
  latency_ms       integer NOT NULL,
  response_excerpt text,
  error            text,
  PRIMARY KEY (delivery_id, n)
);

-- Dispatchers wake on this; the payload is the delivery id.
CREATE FUNCTION notify_webhook_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status = 'pending' AND NEW.next_attempt_at <= now() THEN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_webhooks', NEW.id::text);
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER webhook_deliveries_notify AFTER INSERT OR UPDATE OF status, next_attempt_at ON webhook_deliveries
  FOR EACH ROW EXECUTE FUNCTION notify_webhook_due();
