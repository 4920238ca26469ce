-- +goose NO TRANSACTION
-- +goose Up
-- The legacy path: ready records whose next_check is due.
CREATE INDEX CONCURRENTLY IF NOT EXISTS repeat_records_next_check_idx
    ON repeat_records (next_check) WHERE state IN (1, 2);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS repeat_records_next_check_idx;
