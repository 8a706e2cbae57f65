-- +goose NO TRANSACTION
-- Every room together, per bucket: what a report over all rooms needs for its totals and its peak
-- hours, kept by TimescaleDB so that such a report reads one row per bucket instead of one per
-- room and bucket (and peak hours one row per hour instead of one per room and hour). Each is an
-- aggregate on the room aggregate of the same width (migration 4), so it is exact at every level.
-- A template like 00004: {{timezone}} is replaced by migrations.WithReportZone.
--
-- Why sums over rooms are enough: rooms without a row in a bucket keep their count, so for the
-- summed count T of all rooms with T0 = T at the bucket start [b0, b1):
--   T at the end        = T0 + net_delta
--   integral of T dt    = T0 * (b1 - b0) + net_delta * b1 - delta_moment   (epoch seconds; sums are linear)
--   summed room peaks   = T0 + peak_rise
-- where peak_rise adds up how far each room with events rose above its count at the bucket start
-- (online_end - net_delta: exact because each room's events form a chain, online_after of one
-- event = the next's online_after - online_delta, which the presence scripts guarantee).
-- storage/reports.go carries T0 from the rooms' counts at the start of the range.

-- +goose Up
CREATE MATERIALIZED VIEW IF NOT EXISTS presence_total_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', bucket, {{timezone}}) AS bucket,
       sum(net_delta)::bigint                                              AS net_delta,
       sum(delta_moment)                                                   AS delta_moment,
       sum(greatest(peak_in - (online_end - net_delta), 0))::bigint        AS peak_rise,
       sum(connections)::bigint                                            AS connections,
       sum(sessions_ended)::bigint                                         AS sessions_ended,
       sum(session_seconds_sum)                                            AS session_seconds_sum,
       count(*)                                                            AS active_rooms
FROM presence_room_hourly
GROUP BY 1
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_total_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', bucket, {{timezone}}) AS bucket,
       sum(net_delta)::bigint                                              AS net_delta,
       sum(delta_moment)                                                   AS delta_moment,
       sum(greatest(peak_in - (online_end - net_delta), 0))::bigint        AS peak_rise,
       sum(connections)::bigint                                            AS connections,
       sum(sessions_ended)::bigint                                         AS sessions_ended,
       sum(session_seconds_sum)                                            AS session_seconds_sum,
       count(*)                                                            AS active_rooms
FROM presence_room_daily
GROUP BY 1
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_total_weekly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 week', bucket, {{timezone}}) AS bucket,
       sum(net_delta)::bigint                                              AS net_delta,
       sum(delta_moment)                                                   AS delta_moment,
       sum(greatest(peak_in - (online_end - net_delta), 0))::bigint        AS peak_rise,
       sum(connections)::bigint                                            AS connections,
       sum(sessions_ended)::bigint                                         AS sessions_ended,
       sum(session_seconds_sum)                                            AS session_seconds_sum,
       count(*)                                                            AS active_rooms
FROM presence_room_weekly
GROUP BY 1
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_total_monthly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 month', bucket, {{timezone}}) AS bucket,
       sum(net_delta)::bigint                                              AS net_delta,
       sum(delta_moment)                                                   AS delta_moment,
       sum(greatest(peak_in - (online_end - net_delta), 0))::bigint        AS peak_rise,
       sum(connections)::bigint                                            AS connections,
       sum(sessions_ended)::bigint                                         AS sessions_ended,
       sum(session_seconds_sum)                                            AS session_seconds_sum,
       count(*)                                                            AS active_rooms
FROM presence_room_monthly
GROUP BY 1
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_total_yearly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 year', bucket, {{timezone}}) AS bucket,
       sum(net_delta)::bigint                                              AS net_delta,
       sum(delta_moment)                                                   AS delta_moment,
       sum(greatest(peak_in - (online_end - net_delta), 0))::bigint        AS peak_rise,
       sum(connections)::bigint                                            AS connections,
       sum(sessions_ended)::bigint                                         AS sessions_ended,
       sum(session_seconds_sum)                                            AS session_seconds_sum,
       count(*)                                                            AS active_rooms
FROM presence_room_yearly
GROUP BY 1
WITH NO DATA;

-- Refresh windows as their sources' (migration 4); retention as the room aggregates.
SELECT add_continuous_aggregate_policy('presence_total_hourly',
    start_offset => INTERVAL '28 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_total_daily',
    start_offset => INTERVAL '60 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 hour', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_total_weekly',
    start_offset => INTERVAL '90 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 day', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_total_monthly',
    start_offset => INTERVAL '6 months', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 day', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_total_yearly',
    start_offset => INTERVAL '3 years', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 day', if_not_exists => true);

SELECT add_retention_policy('presence_total_hourly', drop_after => INTERVAL '6 months', if_not_exists => true);

SELECT add_retention_policy('presence_total_daily', drop_after => INTERVAL '2 years', if_not_exists => true);

-- +goose Down
DROP MATERIALIZED VIEW IF EXISTS presence_total_yearly;

DROP MATERIALIZED VIEW IF EXISTS presence_total_monthly;

DROP MATERIALIZED VIEW IF EXISTS presence_total_weekly;

DROP MATERIALIZED VIEW IF EXISTS presence_total_daily;

DROP MATERIALIZED VIEW IF EXISTS presence_total_hourly;
