-- Speed under load: output kept as its events (appending costs the chunk, not the whole
-- output), and wake-ups sent once per statement instead of once per row: submits, output and
-- finishes are written many jobs to a statement.

-- The current attempt's output is the `output` events after this sequence number (its claim's
-- `running` event), joined at read time. NULL on rows written before this migration: their
-- output is still the `partial_output` text, which is no longer appended to.
ALTER TABLE jobs ADD COLUMN output_from_seq integer;

-- One NOTIFY per statement instead of one per row, on two channels:
--   <schema>_events: the new events themselves, for event readers (SSE, long-poll), as a JSON
--     array of [job id, tenant, seq, type, data, at] entries, split so that a notification stays
--     under NOTIFY's 8000-byte limit. An event whose data is over 1500 bytes goes with null data:
--     readers read that one from the table. A reader that follows the job pushes the rest to its
--     clients without a read.
--   <schema>_status: status events only ("<job id> <seq>" entries, 100 a notification), for
--     workers watching for a cancel or a takeover of the jobs they run.
-- A worker writing the output of a thousand jobs in one statement sends a few dozen
-- notifications, and a process that reads no events (a worker) does not listen to them at all.
DROP TRIGGER job_events_notify ON job_events;
DROP FUNCTION notify_job_event();
CREATE FUNCTION notify_job_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  payload text;
BEGIN
  FOR payload IN
    -- An entry is at most ~2000 bytes (1500 of data, a tenant name, the rest); a notification
    -- takes the entries whose running total falls in one 5500-byte band, so it stays under 7600
    -- bytes with its commas.
    SELECT '[' || string_agg(entry, ',' ORDER BY n) || ']'
    FROM (
      SELECT entry, n, sum(octet_length(entry)) OVER (ORDER BY n) AS upto
      FROM (
        SELECT row_number() OVER (ORDER BY job_id, seq) AS n,
          json_build_array(job_id, tenant_id, seq, type,
            CASE WHEN octet_length(data::text) <= 1500 THEN data END,
            to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))::text AS entry
        FROM inserted
      ) entries
    ) sized
    GROUP BY upto / 5500
  LOOP
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_events', payload);
  END LOOP;
  FOR payload IN
    SELECT string_agg(job_id::text || ' ' || seq::text, ',')
    FROM (SELECT job_id, seq, row_number() OVER (ORDER BY job_id, seq) AS n FROM inserted WHERE type = 'status') numbered
    GROUP BY (n - 1) / 100
  LOOP
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_status', payload);
  END LOOP;
  RETURN NULL;
END
$$;
CREATE TRIGGER job_events_notify AFTER INSERT ON job_events
  REFERENCING NEW TABLE AS inserted
  FOR EACH STATEMENT EXECUTE FUNCTION notify_job_events();

-- New jobs wake the workers once per statement and payload ("<name>[ keyed][ later]"), however
-- many a statement inserts; a job queued again (retry, recovery, lease reclaim, hand-back) still
-- wakes them from the row trigger (a column list cannot take a transition table).
CREATE FUNCTION notify_jobs_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  payload text;
BEGIN
  FOR payload IN
    SELECT DISTINCT name
      || CASE WHEN concurrency_key IS NOT NULL THEN ' keyed' ELSE '' END
      || CASE WHEN run_at > now() THEN ' later' ELSE '' END
    FROM inserted WHERE status = 'queued'
  LOOP
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_queued', payload);
  END LOOP;
  RETURN NULL;
END
$$;
DROP TRIGGER jobs_notify_queued ON jobs;
-- The WHEN clauses are checked without calling the function: claims and finishes, most of the
-- status changes, cost no trigger call at all.
CREATE TRIGGER jobs_notify_queued AFTER UPDATE OF status ON jobs
  FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION notify_job_queued();
DROP TRIGGER jobs_notify_slot_freed ON jobs;
CREATE TRIGGER jobs_notify_slot_freed AFTER UPDATE OF status ON jobs
  FOR EACH ROW WHEN (OLD.status = 'running' AND NEW.status <> 'running' AND NEW.concurrency_key IS NOT NULL)
  EXECUTE FUNCTION notify_slot_freed();
CREATE TRIGGER jobs_notify_inserted AFTER INSERT ON jobs
  REFERENCING NEW TABLE AS inserted
  FOR EACH STATEMENT EXECUTE FUNCTION notify_jobs_inserted();
