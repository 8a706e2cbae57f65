-- Final status and duration of a streamed download, written when the stream ends; $4 (a JSON
-- object: rows sent, completeness) is kept under parameters.result.
UPDATE admin_audit_log
SET status = $2,
    duration_ms = $3,
    parameters = parameters || jsonb_build_object('result', $4::jsonb)
WHERE id = $1;
