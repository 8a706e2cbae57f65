-- How far TimescaleDB has materialized what a report reads past the aggregates' real-time parts:
--   rooms_last, all_last  the last bucket in each unique-user count aggregate of the report's
--       granularity ({{room_users_agg}}, {{all_users_agg}}: materialized-only, migration 8), from
--       the report's first bucket $1 on (earlier ones do not matter, and the bound spares planning
--       every chunk); buckets after it are counted by report_recent_users.sql;
--   user_weekly_last, user_monthly_last  for month and year reports, the last bucket in the tables
--       the weekly and monthly per-user aggregates are materialized into, from the start $2 of the
--       month before the one in progress on ({{weekly_last}}, {{monthly_last}}; for other
--       granularities NULL, and no $2), for report_recent_users.sql;
--   user_quarterly_last  for year reports, the same in the per-user quarterly aggregate's table
--       (migration 10), from the report's first bucket on ({{quarterly_last}}; NULL otherwise);
--   room_monthly_last, room_yearly_last  the same for the room monthly and yearly aggregates, for
--       report_online_start.sql.
-- storage/reports.go fills in the names. NULL when nothing is materialized there.
SELECT (SELECT max(bucket) FROM {{room_users_agg}} WHERE bucket >= $1::timestamptz) AS rooms_last,
       (SELECT max(bucket) FROM {{all_users_agg}} WHERE bucket >= $1::timestamptz) AS all_last,
       {{weekly_last}} AS user_weekly_last,
       {{monthly_last}} AS user_monthly_last,
       {{quarterly_last}} AS user_quarterly_last,
       (SELECT max(bucket) FROM {{room_monthly_materialized}}) AS room_monthly_last,
       (SELECT max(bucket) FROM {{room_yearly_materialized}}) AS room_yearly_last
