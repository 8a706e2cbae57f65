-- The last bucket materialized in each unique-user count aggregate of one granularity
-- ({{room_users_agg}}, {{all_users_agg}}: materialized-only, migration 8). Buckets after it are
-- counted by report_recent_users.sql. NULL when nothing is materialized yet.
SELECT (SELECT max(bucket) FROM {{room_users_agg}}) AS rooms_last,
       (SELECT max(bucket) FROM {{all_users_agg}}) AS all_last
