-- +goose Up
-- Adaptive pacing (repeaters/pacing.go): the request rate an endpoint was
-- found to sustain, learned by update_repeater from its answers. A refusal
-- (429/503) right after successes means "too fast": the repeater is paced,
-- not backed off; clean batches probe the pace upwards until it is dropped.
ALTER TABLE repeaters
    ADD COLUMN pace_per_s double precision NOT NULL DEFAULT 0 CHECK (pace_per_s >= 0),
    ADD COLUMN pace_clean integer NOT NULL DEFAULT 0 CHECK (pace_clean >= 0),
    ADD COLUMN flowing boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN repeaters.pace_per_s IS
    'learned sustainable requests per second; 0 = not paced';
COMMENT ON COLUMN repeaters.pace_clean IS
    'clean batches in a row while paced: how fast the pace is probed upwards';
COMMENT ON COLUMN repeaters.flowing IS
    'the last batch that reached the endpoint had a success: a refusal next means too fast, not dead';

-- +goose Down
ALTER TABLE repeaters DROP COLUMN pace_per_s, DROP COLUMN pace_clean, DROP COLUMN flowing;
