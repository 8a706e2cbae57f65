-- +goose NO TRANSACTION
-- Every presence change, one row per event. The one table that is written; everything the
-- reports read is derived from it by continuous aggregates (later migrations).

-- +goose Up
-- The table and its conversion to a hypertable are one statement (a DO block): create_hypertable
-- refuses a table with rows, and in a migration without a transaction a collector already
-- retrying its inserts (another instance, or one started before the database was restored) could
-- otherwise write between the two.
-- Guarded, as every statement of this file: goose re-runs the whole file after an interruption.
-- +goose StatementBegin
DO $$
BEGIN
IF to_regclass('presence_events') IS NOT NULL THEN
    RETURN;
END IF;
CREATE TABLE presence_events (
    event_id        uuid             NOT NULL,
    ts              timestamptz      NOT NULL,
    room_id         uuid             NOT NULL,
    user_id         uuid             NOT NULL,
    session_id      uuid             NOT NULL,
    event_type      text             NOT NULL
        CONSTRAINT presence_events_event_type_check
        CHECK (event_type IN ('connected', 'disconnected', 'heartbeat')),
    -- distinct users online in the room right after the change
    online_after    integer          NOT NULL CHECK (online_after >= 0),
    -- +1 when the user's first session connected, -1 when its last ended, else 0
    online_delta    smallint         NOT NULL DEFAULT 0 CHECK (online_delta BETWEEN -1 AND 1),
    session_seconds double precision CHECK (session_seconds >= 0),
    reason          text,
    user_ip         inet,
    user_agent      text,
    -- A replayed event (same id and time) is a no-op: INSERT ... ON CONFLICT DO NOTHING.
    -- TimescaleDB requires the time column in every unique key.
    CONSTRAINT presence_events_event_key UNIQUE (event_id, ts)
);
PERFORM create_hypertable('presence_events', by_range('ts', INTERVAL '1 day'));
END
$$;
-- +goose StatementEnd

CREATE INDEX IF NOT EXISTS presence_events_room_ts_idx ON presence_events (room_id, ts DESC);

CREATE INDEX IF NOT EXISTS presence_events_user_session_idx ON presence_events (user_id, session_id);

-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM timescaledb_information.hypertables
               WHERE hypertable_schema = current_schema() AND hypertable_name = 'presence_events' AND compression_enabled) THEN
        ALTER TABLE presence_events SET (
            timescaledb.enable_columnstore,
            timescaledb.segmentby = 'room_id',
            timescaledb.orderby = 'ts DESC'
        );
    END IF;
END
$$;
-- +goose StatementEnd

CALL add_columnstore_policy('presence_events', after => INTERVAL '2 days', if_not_exists => true);

SELECT add_retention_policy('presence_events', drop_after => INTERVAL '30 days', if_not_exists => true);

-- +goose Down
DROP TABLE IF EXISTS presence_events;
