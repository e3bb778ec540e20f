-- The trace a job belongs to: the W3C Trace Context of the span that submitted it
-- ({"traceparent": "00-…", "tracestate": "…"}), so the worker that runs it (any process, any
-- time later) and the dispatcher that delivers its webhooks continue the submitter's trace.
-- NULL when the job was submitted untraced (no OpenTelemetry SDK registered).
-- Adding a nullable column without a default only changes the catalog: no rewrite, no long lock.
ALTER TABLE jobs ADD COLUMN trace_context jsonb;
