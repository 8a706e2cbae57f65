-- Append one admin request to the audit trail. $4 is a JSON object of the request's parameters.
INSERT INTO admin_audit_log (at, admin_id, action, parameters, client_ip, user_agent, status, duration_ms)
VALUES ($1, $2, $3, $4::jsonb, $5::inet, $6, $7, $8)
RETURNING id;
