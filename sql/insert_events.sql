-- One batch of presence events in one statement (the WebAssembly TimescaleDB has no COPY).
-- ON CONFLICT DO NOTHING on (event_id, ts) makes a replayed batch (retry, spool replay) a no-op.
-- Parameters are parallel arrays, one element per event; NULLs where a field is not set.
INSERT INTO presence_events (
    event_id, ts, room_id, user_id, session_id, event_type,
    online_after, online_delta, session_seconds, reason, user_ip, user_agent
)
SELECT e.event_id, e.ts, e.room_id, e.user_id, e.session_id, e.event_type,
       e.online_after, e.online_delta, e.session_seconds, e.reason, e.user_ip::inet, e.user_agent
FROM unnest(
    $1::uuid[], $2::timestamptz[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[],
    $7::int[], $8::smallint[], $9::float8[], $10::text[], $11::text[], $12::text[]
) AS e(event_id, ts, room_id, user_id, session_id, event_type,
       online_after, online_delta, session_seconds, reason, user_ip, user_agent)
ON CONFLICT DO NOTHING
