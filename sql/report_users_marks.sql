-- The last bucket materialized in each unique-user count aggregate of one granularity
-- ({{room_users_agg}}, {{all_users_agg}}: materialized-only, migration 8), from the report's first
-- bucket $1 on (earlier ones do not matter, and the bound spares planning every chunk). Buckets
-- after it are counted by report_recent_users.sql, which for month and year reports also needs the
-- last bucket materialized in the weekly and monthly per-user aggregates from the start $2 of the
-- month before the one in progress on ({{weekly_last}}, {{monthly_last}}: a max(bucket) over the
-- tables they are materialized into; for other granularities NULL, and no $2;
-- storage/reports.go fills them in). NULL when nothing is materialized there.
SELECT (SELECT max(bucket) FROM {{room_users_agg}} WHERE bucket >= $1::timestamptz) AS rooms_last,
       (SELECT max(bucket) FROM {{all_users_agg}} WHERE bucket >= $1::timestamptz) AS all_last,
       {{weekly_last}} AS weekly_last,
       {{monthly_last}} AS monthly_last
