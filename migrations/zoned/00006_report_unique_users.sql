-- +goose NO TRANSACTION
-- Distinct users per room and per bucket, and across all rooms per bucket, kept by TimescaleDB so
-- that reports look them up instead of counting the per-user rows at query time (the expensive
-- part of a report over many rooms). Each is an aggregate on the per-user aggregate of the same
-- width (presence_user_*: one row per bucket, room and user), so the counts stay exact at every
-- level. A template like 00004: {{timezone}} is replaced by migrations.WithReportZone.

-- +goose Up
CREATE MATERIALIZED VIEW IF NOT EXISTS presence_room_users_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', bucket, {{timezone}}) AS bucket,
       room_id,
       count(*) AS unique_users
FROM presence_user_hourly
GROUP BY 1, 2
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_all_users_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', bucket, {{timezone}}) AS bucket,
       count(DISTINCT user_id) AS unique_users
FROM presence_user_hourly
GROUP BY 1
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_room_users_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', bucket, {{timezone}}) AS bucket,
       room_id,
       count(*) AS unique_users
FROM presence_user_daily
GROUP BY 1, 2
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_all_users_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', bucket, {{timezone}}) AS bucket,
       count(DISTINCT user_id) AS unique_users
FROM presence_user_daily
GROUP BY 1
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_room_users_weekly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 week', bucket, {{timezone}}) AS bucket,
       room_id,
       count(*) AS unique_users
FROM presence_user_weekly
GROUP BY 1, 2
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_all_users_weekly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 week', bucket, {{timezone}}) AS bucket,
       count(DISTINCT user_id) AS unique_users
FROM presence_user_weekly
GROUP BY 1
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_room_users_monthly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 month', bucket, {{timezone}}) AS bucket,
       room_id,
       count(*) AS unique_users
FROM presence_user_monthly
GROUP BY 1, 2
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_all_users_monthly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 month', bucket, {{timezone}}) AS bucket,
       count(DISTINCT user_id) AS unique_users
FROM presence_user_monthly
GROUP BY 1
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_room_users_yearly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 year', bucket, {{timezone}}) AS bucket,
       room_id,
       count(*) AS unique_users
FROM presence_user_yearly
GROUP BY 1, 2
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_all_users_yearly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 year', bucket, {{timezone}}) AS bucket,
       count(DISTINCT user_id) AS unique_users
FROM presence_user_yearly
GROUP BY 1
WITH NO DATA;

-- Refresh windows as their sources' (migration 4); retention as the per-user aggregates.
SELECT add_continuous_aggregate_policy('presence_room_users_hourly',
    start_offset => INTERVAL '28 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_room_users_daily',
    start_offset => INTERVAL '60 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 hour', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_room_users_weekly',
    start_offset => INTERVAL '90 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 day', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_room_users_monthly',
    start_offset => INTERVAL '6 months', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 day', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_room_users_yearly',
    start_offset => INTERVAL '3 years', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 day', if_not_exists => true);

SELECT add_retention_policy('presence_room_users_hourly', drop_after => INTERVAL '6 months', if_not_exists => true);

SELECT add_retention_policy('presence_room_users_daily', drop_after => INTERVAL '2 years', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_all_users_hourly',
    start_offset => INTERVAL '28 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_all_users_daily',
    start_offset => INTERVAL '60 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 hour', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_all_users_weekly',
    start_offset => INTERVAL '90 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 day', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_all_users_monthly',
    start_offset => INTERVAL '6 months', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 day', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_all_users_yearly',
    start_offset => INTERVAL '3 years', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 day', if_not_exists => true);

SELECT add_retention_policy('presence_all_users_hourly', drop_after => INTERVAL '6 months', if_not_exists => true);

SELECT add_retention_policy('presence_all_users_daily', drop_after => INTERVAL '2 years', if_not_exists => true);

-- +goose Down
DROP MATERIALIZED VIEW IF EXISTS presence_all_users_yearly;

DROP MATERIALIZED VIEW IF EXISTS presence_all_users_monthly;

DROP MATERIALIZED VIEW IF EXISTS presence_all_users_weekly;

DROP MATERIALIZED VIEW IF EXISTS presence_all_users_daily;

DROP MATERIALIZED VIEW IF EXISTS presence_all_users_hourly;

DROP MATERIALIZED VIEW IF EXISTS presence_room_users_yearly;

DROP MATERIALIZED VIEW IF EXISTS presence_room_users_monthly;

DROP MATERIALIZED VIEW IF EXISTS presence_room_users_weekly;

DROP MATERIALIZED VIEW IF EXISTS presence_room_users_daily;

DROP MATERIALIZED VIEW IF EXISTS presence_room_users_hourly;
