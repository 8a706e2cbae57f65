-- +goose Up
CREATE EXTENSION IF NOT EXISTS timescaledb;

-- +goose Down
-- The extension stays: other databases objects may use it, and dropping it from a running
-- session is not possible on every build. Later migrations' downs remove every object they made.
SELECT 1;
