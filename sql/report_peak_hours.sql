-- Peak hours: per hour bucket of the range with any aggregate row, the selected rooms' changes
-- against the carried count, summed over rooms (sparse: quiet hours are not returned, and the
-- rooms without a row in an hour keep their count). With N0 a room's count at the hour's start
-- (the previous row's online_end, or $3's entry for its first row in the range):
--   d = sum(online_end - N0)             how the rooms' total count moved during the hour
--   p = sum(greatest(peak_in, N0) - N0)  the hour's summed peak above the carried total
--   a = sum(moment_part) / L             the hour's summed average above the carried total
-- storage/reports.go walks every hour of the range, carrying the total, and groups by hour of day.
--   $1 rooms uuid[]   $2 first hour   $3 online counts at $2, parallel to $1   $4 range end   $5 now
WITH starts AS (
    SELECT s.room_id, s.online_start
    FROM unnest($1::uuid[], $3::bigint[]) AS s(room_id, online_start)
), rows AS (
    SELECT h.bucket, h.peak_in, h.online_end, h.net_delta, h.delta_moment,
           coalesce(lag(h.online_end) OVER (PARTITION BY h.room_id ORDER BY h.bucket), s.online_start) AS n0,
           extract(epoch FROM least(h.bucket + INTERVAL '1 hour', $5::timestamptz)) AS bucket_end,
           extract(epoch FROM least(h.bucket + INTERVAL '1 hour', $5::timestamptz) - h.bucket) AS length
    FROM presence_room_hourly AS h
    JOIN starts AS s ON s.room_id = h.room_id
    WHERE h.room_id = ANY ($1::uuid[]) AND h.bucket >= $2::timestamptz AND h.bucket < $4::timestamptz
)
SELECT bucket,
       sum(online_end - n0)::bigint AS d,
       sum(greatest(peak_in, n0) - n0)::bigint AS p,
       CASE WHEN max(length) > 0 THEN (sum(net_delta * bucket_end - delta_moment) / max(length))::float8 ELSE 0 END AS a
FROM rows
GROUP BY bucket
ORDER BY bucket
