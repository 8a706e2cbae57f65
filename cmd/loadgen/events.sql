-- The presence events of a load generator run's rooms, as the collector wrote them: connected,
-- disconnected, and of those the ones expired by the server (reason timeout).
SELECT count(*) FILTER (WHERE event_type = 'connected')::int,
       count(*) FILTER (WHERE event_type = 'disconnected')::int,
       count(*) FILTER (WHERE event_type = 'disconnected' AND reason = 'timeout')::int
FROM presence_events
WHERE room_id = ANY ($1::uuid[]);
