-- The audit trail newest first, at most $1 rows, older than the time $2 or after the entry $3 in
-- this order (keyset paging on the (at DESC, id DESC) index). A NULL cursor means "from the top".
SELECT id, at, admin_id, action, parameters, host(client_ip), user_agent, status, duration_ms
FROM admin_audit_log
WHERE ($2::timestamptz IS NULL OR at < $2::timestamptz)
  AND ($3::bigint IS NULL OR (at, id) < (SELECT a.at, a.id FROM admin_audit_log a WHERE a.id = $3::bigint))
ORDER BY at DESC, id DESC
LIMIT $1;
