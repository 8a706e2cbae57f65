-- How far back the hourly aggregates still reach: $1 (now) minus the retention of
-- presence_room_hourly (migration 4; presence_total_hourly keeps the same). Retention drops only
-- chunks wholly older than that, so every hour after it is there. No row without a retention policy.
SELECT $1::timestamptz - (j.config ->> 'drop_after')::interval
FROM timescaledb_information.jobs AS j
WHERE j.proc_name = 'policy_retention' AND j.hypertable_name = 'presence_room_hourly'
