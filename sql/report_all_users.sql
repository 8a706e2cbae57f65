-- Distinct users per bucket across every room (a user in two rooms counts once), kept by the
-- aggregate {{all_users_agg}} (migration 6).   $1 first bucket start   $2 range end (exclusive)
SELECT bucket, unique_users
FROM {{all_users_agg}}
WHERE bucket >= $1::timestamptz AND bucket < $2::timestamptz
