-- Final status and duration of a request whose row was written before its answer (downloads,
-- guarded endpoints); $4, when not NULL (a JSON object: rows sent, completeness), is kept under
-- parameters.result.
UPDATE admin_audit_log
SET status = $2,
    duration_ms = $3,
    parameters = CASE WHEN $4::jsonb IS NULL THEN parameters
                      ELSE parameters || jsonb_build_object('result', $4::jsonb) END
WHERE id = $1;
