-- +goose NO TRANSACTION
-- +goose Up
-- The console's record list of one repeater, by state, newest first, and the
-- bulk jobs' walk over a repeater's records of some states in id order: one
-- index range per (repeater, state), so a page reads its rows and no more,
-- however long the history. registered_at is included so a time-range filter
-- is judged in the index.
CREATE INDEX CONCURRENTLY IF NOT EXISTS repeat_records_repeater_state_idx
    ON repeat_records (repeater_id, state, id) INCLUDE (registered_at);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS repeat_records_repeater_state_idx;
