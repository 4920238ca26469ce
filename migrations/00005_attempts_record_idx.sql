-- +goose NO TRANSACTION
-- +goose Up
-- A record's attempts, and the cascade when a record is purged.
CREATE INDEX CONCURRENTLY IF NOT EXISTS repeat_record_attempts_record_idx
    ON repeat_record_attempts (record_id, id);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS repeat_record_attempts_record_idx;
