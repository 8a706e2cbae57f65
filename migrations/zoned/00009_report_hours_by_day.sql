-- +goose NO TRANSACTION
-- A room's hours, one row per room and day: the rows of presence_room_hourly and of
-- presence_room_users_hourly of each day, kept by TimescaleDB packed in hour order. An hourly
-- report over every room and 7 days reads 700 of these rows instead of 16,800 hourly ones; on the
-- WebAssembly build a report costs mostly by the rows it reads and returns, and the hourly form
-- made the seed design's "hour < 100 ms" out of reach (README, "Report query benchmark").
-- For reports only (storage/reports.go, sql/report_stats_hours.sql), not one of the analysts'
-- views: the hourly aggregates hold the same numbers, one row per hour.
-- Each is an aggregate on an hourly aggregate (hierarchical), so TimescaleDB refreshes it from
-- there and a late event reaches it through the hourly one. presence_room_hours_daily is
-- real-time, as presence_room_hourly; presence_room_users_hours_daily is real-time on the
-- materialized-only presence_room_users_hourly (migration 8), so it has what that has, and
-- reports count the hours after it apart (sql/report_recent_users.sql), as they do for the hourly one.
-- A template like 00004: {{timezone}} is replaced by migrations.WithReportZone.

-- +goose Up
-- The packed forms, one place for both these aggregates and sql/report_stats_hours.sql (which packs
-- today's hours the same way; storage/reports.go reads them). Per hour, all big-endian:
--   report_pack_hour, 64 bytes: bucket (timestamptz_send: microseconds since 2000-01-01 UTC),
--     peak_in, online_end, net_delta (int8send), delta_moment (float8send), connections,
--     sessions_ended (int8send), session_seconds_sum (float8send, 0 for none);
--   report_pack_users, 16 bytes: bucket (timestamptz_send), unique_users (int8send).
-- Packed rather than arrays: reading 7 days of 100 rooms took 29 ms as eight arrays per row (each
-- element is sent on its own) and 3 ms packed, on the WebAssembly build. A day of 25 hours is
-- 1,600 bytes, under the size PostgreSQL would compress a row at. Plain SQL expressions:
-- PostgreSQL inlines them into the queries that call them.
CREATE OR REPLACE FUNCTION report_pack_hour(bucket timestamptz, peak_in bigint, online_end bigint, net_delta bigint,
                                 delta_moment float8, connections bigint, sessions_ended bigint,
                                 session_seconds_sum float8)
RETURNS bytea IMMUTABLE PARALLEL SAFE LANGUAGE sql
RETURN timestamptz_send(bucket) || int8send(peak_in) || int8send(online_end) || int8send(net_delta)
       || float8send(delta_moment) || int8send(connections) || int8send(sessions_ended)
       || float8send(coalesce(session_seconds_sum, 0));

CREATE OR REPLACE FUNCTION report_pack_users(bucket timestamptz, unique_users bigint)
RETURNS bytea IMMUTABLE PARALLEL SAFE LANGUAGE sql
RETURN timestamptz_send(bucket) || int8send(unique_users);

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_room_hours_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', bucket, {{timezone}}) AS bucket,
       room_id,
       string_agg(report_pack_hour(bucket, peak_in, online_end, net_delta, delta_moment::float8, connections,
                                   sessions_ended, session_seconds_sum),
                  ''::bytea ORDER BY bucket) AS hours
FROM presence_room_hourly
GROUP BY 1, 2
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_room_users_hours_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', bucket, {{timezone}}) AS bucket,
       room_id,
       string_agg(report_pack_users(bucket, unique_users), ''::bytea ORDER BY bucket) AS users
FROM presence_room_users_hourly
GROUP BY 1, 2
WITH NO DATA;

-- Materialize what the hourly aggregates already hold (a database migrated with data), before the
-- policies exist: with them the scheduler may start their jobs at once, and a refresh of the same
-- aggregate at that moment fails (SQLSTATE 55P03).
CALL refresh_continuous_aggregate('presence_room_hours_daily', NULL, now() - INTERVAL '1 hour');

CALL refresh_continuous_aggregate('presence_room_users_hours_daily', NULL, now() - INTERVAL '1 hour');

-- Refresh windows as presence_room_daily's (they read the same hours), run as often as the hourly
-- aggregates' (a late event reaches an hour report within two of their runs); retention as the
-- hourly aggregates': an hour report does not reach further back than them.
SELECT add_continuous_aggregate_policy('presence_room_hours_daily',
    start_offset => INTERVAL '60 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_room_users_hours_daily',
    start_offset => INTERVAL '60 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes', if_not_exists => true);

SELECT add_retention_policy('presence_room_hours_daily', drop_after => INTERVAL '6 months', if_not_exists => true);

SELECT add_retention_policy('presence_room_users_hours_daily', drop_after => INTERVAL '6 months', if_not_exists => true);

-- Columnstore after 7 days, as the hourly aggregates: half the size (27 against 13 MB for a year of
-- 100 rooms), and 7 days of 100 rooms read in 6 instead of 4 ms when compressed.
-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM timescaledb_information.continuous_aggregates
               WHERE view_schema = current_schema() AND view_name = 'presence_room_hours_daily' AND compression_enabled) THEN
        ALTER MATERIALIZED VIEW presence_room_hours_daily SET (
            timescaledb.enable_columnstore = true,
            timescaledb.segmentby = 'room_id',
            timescaledb.orderby = 'bucket DESC'
        );
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM timescaledb_information.continuous_aggregates
               WHERE view_schema = current_schema() AND view_name = 'presence_room_users_hours_daily' AND compression_enabled) THEN
        ALTER MATERIALIZED VIEW presence_room_users_hours_daily SET (
            timescaledb.enable_columnstore = true,
            timescaledb.segmentby = 'room_id',
            timescaledb.orderby = 'bucket DESC'
        );
    END IF;
END
$$;
-- +goose StatementEnd

CALL add_columnstore_policy('presence_room_hours_daily', after => INTERVAL '7 days', if_not_exists => true);

CALL add_columnstore_policy('presence_room_users_hours_daily', after => INTERVAL '7 days', if_not_exists => true);

-- +goose Down
DROP MATERIALIZED VIEW IF EXISTS presence_room_users_hours_daily;

DROP MATERIALIZED VIEW IF EXISTS presence_room_hours_daily;

DROP FUNCTION IF EXISTS report_pack_users(timestamptz, bigint);

DROP FUNCTION IF EXISTS report_pack_hour(timestamptz, bigint, bigint, bigint, float8, bigint, bigint, float8);
