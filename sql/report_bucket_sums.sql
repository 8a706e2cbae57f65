-- The selected rooms together, per bucket of one granularity ({{room_agg}}), for Totals and (hourly)
-- PeakHours over a selection of rooms (every room: report_total_sums.sql): only buckets with
-- aggregate rows are returned, summed over rooms as changes against the carried total count (rooms
-- without a row in a bucket keep their count). With N0 a room's count at the bucket's start (the
-- previous row's online_end, or $7's entry for its first row in the range):
--   d = sum(online_end - N0)             how the rooms' total count moved during the bucket
--   p = sum(greatest(peak_in, N0) - N0)  the bucket's summed peak above the carried total
--   a = sum(moment_part) / L             the bucket's summed average above the carried total
-- storage/reports.go walks every bucket of the range, carrying the total.
--   $1 first bucket   $2 range end   $3 now   $4 bucket width interval   $5 zone text
--   $6 rooms uuid[]   $7 online counts at $1, parallel to $6
-- bucket_end: as in report_total_sums.sql (plain + for a width under a day).
WITH starts AS (
    SELECT s.room_id, s.online_start
    FROM unnest($6::uuid[], $7::bigint[]) AS s(room_id, online_start)
), rows AS (
    SELECT h.bucket, h.peak_in, h.online_end, h.net_delta, h.delta_moment,
           h.connections, h.sessions_ended, h.session_seconds_sum,
           coalesce(lag(h.online_end) OVER (PARTITION BY h.room_id ORDER BY h.bucket), s.online_start) AS n0,
           least(CASE WHEN $4::interval < interval '1 day' THEN h.bucket + $4::interval
                       ELSE ((h.bucket AT TIME ZONE $5::text) + $4::interval) AT TIME ZONE $5::text END, $3::timestamptz) AS bucket_end
    FROM {{room_agg}} AS h
    JOIN starts AS s ON s.room_id = h.room_id
    WHERE h.room_id = ANY ($6::uuid[]) AND h.bucket >= $1::timestamptz AND h.bucket < $2::timestamptz
)
SELECT bucket,
       sum(online_end - n0)::bigint AS d,
       sum(greatest(peak_in, n0) - n0)::bigint AS p,
       CASE WHEN max(bucket_end) > bucket
            THEN (sum(net_delta * extract(epoch FROM bucket_end) - delta_moment)
                  / extract(epoch FROM max(bucket_end) - bucket))::float8
            ELSE 0 END AS a,
       sum(connections)::bigint AS connections,
       sum(sessions_ended)::bigint AS sessions_ended,
       coalesce(sum(session_seconds_sum), 0)::float8 AS session_seconds_sum
FROM rows
GROUP BY bucket
ORDER BY bucket
