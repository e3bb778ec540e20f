-- Writes a worker retries after a dropped connection are applied once. A statement whose
-- connection dropped may have committed before its answer was lost; the retry carries the same
-- id, and a job row that already holds it answers "written" without applying it again.
--   last_write_id: the last direct write of the running attempt (a step's start, result or
--     failure, token usage); they go one at a time, so the last one is the only one in doubt.
--   last_round_id: the last round of buffered writes (output, progress, log lines); rounds go
--     one at a time too, and a round in doubt is sent again, unchanged, before anything newer.
-- Nullable columns without a default: adding them rewrites nothing.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS last_write_id uuid, ADD COLUMN IF NOT EXISTS last_round_id uuid;
