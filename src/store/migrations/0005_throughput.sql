-- Speed under load: output kept as its events (appending costs the chunk, not the whole
-- output), event wake-ups sent once per statement, and a submit's wake-ups sent after it commits.

-- The current attempt's output is the `output` events after this sequence number (its claim's
-- `running` event), joined at read time. NULL on rows written before this migration: their
-- output is still the `partial_output` text, which is no longer appended to.
ALTER TABLE jobs ADD COLUMN output_from_seq integer;

-- One NOTIFY per statement instead of one per row: a worker writing the output of a thousand
-- jobs in one statement sends a handful of notifications, not a thousand. The payload lists
-- "<job id> <seq> <type>" entries separated by commas, at most 100 per notification (well under
-- NOTIFY's 8000-byte limit). A job's first event (seq 1, written by submit) is announced by the
-- submitting process after its commit instead, so the commit does not wait on the NOTIFY queue.
DROP TRIGGER job_events_notify ON job_events;
DROP FUNCTION notify_job_event();
CREATE FUNCTION notify_job_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  payload text;
BEGIN
  FOR payload IN
    SELECT string_agg(job_id::text || ' ' || seq::text || ' ' || type, ',' ORDER BY n)
    FROM (SELECT job_id, seq, type, row_number() OVER (ORDER BY job_id, seq) AS n FROM inserted WHERE seq > 1) numbered
    GROUP BY (n - 1) / 100
  LOOP
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_events', payload);
  END LOOP;
  RETURN NULL;
END
$$;
CREATE TRIGGER job_events_notify AFTER INSERT ON job_events
  REFERENCING NEW TABLE AS inserted
  FOR EACH STATEMENT EXECUTE FUNCTION notify_job_events();

-- A new job wakes the workers from the submitting process, after the commit (see above); a job
-- queued again (retry, recovery, lease reclaim, hand-back) still wakes them from here.
CREATE OR REPLACE FUNCTION notify_job_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status = 'queued' AND TG_OP = 'UPDATE' THEN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_queued', NEW.name
      || CASE WHEN NEW.concurrency_key IS NOT NULL THEN ' keyed' ELSE '' END
      || CASE WHEN NEW.run_at > now() THEN ' later' ELSE '' END);
  END IF;
  RETURN NULL;
END
$$;
DROP TRIGGER jobs_notify_queued ON jobs;
CREATE TRIGGER jobs_notify_queued AFTER UPDATE OF status ON jobs
  FOR EACH ROW EXECUTE FUNCTION notify_job_queued();
