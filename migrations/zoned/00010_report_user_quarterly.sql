-- +goose NO TRANSACTION
-- Per-user rows by quarter (January, April, July, October in REPORT_TIMEZONE): one row per
-- quarter, room and user, an aggregate on presence_user_monthly. Reports count the unique users of
-- a year in progress from tiles of per-user rows (sql/report_recent_users.sql): its finished
-- quarters are one row per room and user each here instead of three monthly rows, so in December
-- a year is 3 quarterly + 2 monthly rows per room and user instead of 11 monthly ones, the part of
-- an every-room year report that grew most with rooms (docs/benchmarks.md, "Reports at 1,000
-- rooms"). Reports read it from the table TimescaleDB materializes it into, below its last
-- materialized bucket, as they read the weekly and monthly ones. Kept, as the monthly rows are.
-- A template like 00004: {{timezone}} is replaced by migrations.WithReportZone.

-- +goose Up
CREATE MATERIALIZED VIEW IF NOT EXISTS presence_user_quarterly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '3 months', bucket, {{timezone}}) AS bucket,
       room_id,
       user_id,
       sum(events)::bigint AS events
FROM presence_user_monthly
GROUP BY 1, 2, 3
WITH NO DATA;

-- Refreshed before its policy is added (the scheduler may start a policy at once); what the
-- monthly rows hold already, up to an hour ago.
CALL refresh_continuous_aggregate('presence_user_quarterly', NULL, now() - INTERVAL '1 hour');

-- The window covers the quarter just finished and the one before, as the monthly policy's
-- 6 months cover its months.
SELECT add_continuous_aggregate_policy('presence_user_quarterly',
    start_offset => INTERVAL '9 months', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 day', if_not_exists => true);

-- +goose Down
DROP MATERIALIZED VIEW IF EXISTS presence_user_quarterly;
