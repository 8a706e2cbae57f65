-- +goose Up
-- One row per admin request (reports, downloads, audit reads). Written before the answer is sent:
-- a request whose audit row cannot be written fails with 503.
CREATE TABLE admin_audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz      NOT NULL DEFAULT now(),
    admin_id    uuid             NOT NULL,
    action      text             NOT NULL,
    parameters  jsonb            NOT NULL DEFAULT '{}'::jsonb,
    client_ip   inet,
    user_agent  text,
    status      integer          NOT NULL,
    duration_ms double precision NOT NULL
);

CREATE INDEX admin_audit_log_at_idx ON admin_audit_log (at DESC, id DESC);

-- +goose Down
DROP TABLE IF EXISTS admin_audit_log;
